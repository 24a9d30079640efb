// cloudfilm glossary: a tap on an underlined word shows what it means (iOS does not focus
// buttons on tap, so CSS :focus alone is not enough); Escape or a tap elsewhere closes it.
// Hover and keyboard focus work from glossary.css alone; web/glossary.py makes the markup.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("glossary-js");

  function termOf(node) {
    return node && node.closest ? node.closest(".term") : null;
  }

  function keepOnScreen(term) {
    var tip = term.querySelector(".term-tip");
    if (!tip) { return; }
    tip.style.left = "";
    var rect = tip.getBoundingClientRect();
    var room = document.documentElement.clientWidth - 8;
    if (rect.right > room) {
      tip.style.left = Math.max(room - rect.right, -rect.left + 8) + "px";
    }
  }

  function closeAll(except) {
    Array.prototype.forEach.call(document.querySelectorAll(".term[data-open]"), function (t) {
      if (t !== except) { t.removeAttribute("data-open"); }
    });
  }

  document.addEventListener("click", function (event) {
    var word = event.target.closest ? event.target.closest(".term-word") : null;
    var term = termOf(word);
    if (!term) {
      if (!termOf(event.target)) { closeAll(null); }
      return;
    }
    event.preventDefault();
    closeAll(term);
    term.removeAttribute("data-closed");
    if (term.hasAttribute("data-open")) {
      term.removeAttribute("data-open");
    } else {
      term.setAttribute("data-open", "");
      keepOnScreen(term);
    }
  });

  // Keyboard focus shows the definition (CSS :focus-visible); keep it on screen too.
  document.addEventListener("focusin", function (event) {
    var term = termOf(event.target);
    if (term) { keepOnScreen(term); }
  });

  document.addEventListener("focusout", function (event) {
    var term = termOf(event.target);
    if (term) {
      term.removeAttribute("data-open");
      term.removeAttribute("data-closed");
    }
  });

  // WCAG 1.4.13: a definition can be dismissed without moving focus or the pointer.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    Array.prototype.forEach.call(
      document.querySelectorAll(".term[data-open], .term:hover, .term:focus-within"),
      function (t) { t.removeAttribute("data-open"); t.setAttribute("data-closed", ""); });
  });

  document.addEventListener("mouseout", function (event) {
    var term = termOf(event.target);
    if (term && !term.contains(event.relatedTarget)) { term.removeAttribute("data-closed"); }
  });
})();
