// cloudfilm portal: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  var placeholder = "data:image/svg+xml," + encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 96 96"><rect width="96" height="96" fill="#1d2733"/>' +
    '<rect x="28" y="20" width="40" height="56" rx="3" fill="#e3eefa"/>' +
    '<path d="M36 36h24M36 46h24M36 56h16" stroke="#0b5394" stroke-width="4"/></svg>');
  // A picture that cannot be drawn (a document, a report) gets a neutral placeholder.
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img && img.tagName === "IMG" && img.src.indexOf("data:") !== 0) {
      img.src = placeholder;
    }
  }, true);
  // Times (access history) in the reader's own time zone and language.
  var lang = document.documentElement.lang || "en";
  Array.prototype.forEach.call(document.querySelectorAll("time.local[datetime]"), function (el) {
    var moment = new Date(el.getAttribute("datetime"));
    if (!isNaN(moment.getTime())) {
      el.textContent = moment.toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
    }
  });
  // "Copy the link" buttons (shown only where the browser can copy): one tap, then a
  // message saying what to do next.
  Array.prototype.forEach.call(document.querySelectorAll("button.copy-link[data-copy]"), function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input || !navigator.clipboard || !window.isSecureContext) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(input.value).then(function () {
        button.textContent = button.getAttribute("data-done");
      }, function () {
        input.select();
      });
    });
  });
  // A share link is selected in one tap, ready to copy.
  document.addEventListener("focusin", function (event) {
    var input = event.target;
    if (input && input.classList && input.classList.contains("share-url")) {
      input.select();
    }
  });
})();
