// Uploads with a progress bar and per-file results, posting to the JSON API.
// Folders (CD/USB) are sent in batches so a poor connection loses at most one batch.
(function () {
  "use strict";
  var root = document.getElementById("upload");
  if (!root) { return; }
  var strings = JSON.parse(document.getElementById("upload-strings").textContent);
  var person = root.getAttribute("data-person");
  var section = document.getElementById("progress-section");
  var bar = document.getElementById("upload-progress");
  var statusLine = document.getElementById("upload-status");
  var list = document.getElementById("upload-results");
  var BATCH_BYTES = 64 * 1024 * 1024;
  var BATCH_FILES = 400;

  function t(key, values) {
    var text = strings[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("%(" + name + ")s").join(String(values[name]));
    });
    return text;
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)cf_csrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
  }

  function post(url, form, onProgress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) { onProgress(event.loaded, event.total); }
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        resolve({ status: xhr.status, body: body });
      });
      xhr.addEventListener("error", function () { resolve({ status: 0, body: null }); });
      xhr.send(form);
    });
  }

  function show(name, status, reason) {
    var item = document.createElement("li");
    item.className = status;
    var strong = document.createElement("strong");
    strong.textContent = t(status) || status;
    item.appendChild(strong);
    item.appendChild(document.createTextNode(" — " + name + (reason ? " (" + reason + ")" : "")));
    list.appendChild(item);
  }

  // One line per outcome and reason over all batches: "120 images: ...", not 120 lines.
  function tally(lines, status, reason, count) {
    var found = lines.filter(function (l) { return l.status === status && l.reason === reason; });
    if (found.length) { found[0].count += count; } else {
      lines.push({ status: status, reason: reason, count: count });
    }
  }

  function showLines(lines) {
    list.textContent = "";
    lines.forEach(function (l) {
      var item = document.createElement("li");
      item.className = l.status;
      item.textContent = t(l.count === 1 ? "group_one" : "group_many",
        { num: l.count, reason: l.reason });
      list.appendChild(item);
    });
  }

  function problem(response) {
    if (response.status === 0) { return t("network"); }
    if (response.status === 401) { return t("login"); }
    if (response.status === 413) { return t("too_large"); }
    var reason = response.body && (response.body.error || response.body.detail);
    return t("error", { reason: reason || ("HTTP " + response.status) });
  }

  function batches(files) {
    var out = [], current = [], size = 0;
    files.forEach(function (file) {
      if (current.length && (size + file.size > BATCH_BYTES || current.length >= BATCH_FILES)) {
        out.push(current); current = []; size = 0;
      }
      current.push(file); size += file.size;
    });
    if (current.length) { out.push(current); }
    return out;
  }

  function start() {
    section.hidden = false;
    list.textContent = "";
    bar.value = 0;
    section.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function sendImages(files) {
    start();
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0) || 1;
    var done = 0;
    var counts = { stored: 0, duplicate: 0, failed: 0 };
    var lines = [];
    var groups = batches(files);
    for (var i = 0; i < groups.length; i++) {
      var form = new FormData();
      form.append("csrf", csrfToken());
      groups[i].forEach(function (file) {
        form.append("file", file, file.webkitRelativePath || file.name);
      });
      var groupSize = groups[i].reduce(function (sum, f) { return sum + f.size; }, 0);
      var response = null;
      for (var attempt = 0; attempt < 2; attempt++) {
        response = await post("/api/uploads?person=" + encodeURIComponent(person), form,
          function (loaded) {
            var sent = done + Math.min(loaded, groupSize);
            bar.value = Math.round(100 * sent / total);
            statusLine.textContent = sent >= total ? t("processing") :
              t("sending", { done: megabytes(sent), total: megabytes(total) });
          });
        if (response.status !== 0) { break; }
      }
      done += groupSize;
      bar.value = Math.round(100 * done / total);
      if (response.body && response.body.summary) {
        response.body.summary.forEach(function (g) {
          tally(lines, g.status, g.reason, g.count);
          if (counts[g.status] !== undefined) { counts[g.status] += g.count; }
        });
      } else {
        statusLine.textContent = problem(response);
        counts.failed += groups[i].length;
        tally(lines, "failed", problem(response), groups[i].length);
        if (response.status === 401) { showLines(lines); return; }
      }
      showLines(lines);
    }
    bar.value = 100;
    statusLine.textContent = t("finished") + " " + t("summary", counts);
  }

  var images = document.getElementById("images-form");
  if (images) {
    images.addEventListener("submit", function (event) {
      event.preventDefault();
      var files = [];
      ["zip-file", "folder"].forEach(function (id) {
        var input = document.getElementById(id);
        Array.prototype.forEach.call(input.files || [], function (f) { files.push(f); });
      });
      if (!files.length) { window.alert(t("choose")); return; }
      sendImages(files);
    });
  }

  var documentForm = document.getElementById("document-form");
  if (documentForm) {
    documentForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      var input = document.getElementById("doc-file");
      var study = document.getElementById("doc-study").value;
      if (!input.files.length) { window.alert(t("choose")); return; }
      if (!study) { window.alert(t("pick_study")); return; }
      start();
      var form = new FormData();
      form.append("csrf", csrfToken());
      form.append("title", document.getElementById("doc-title").value);
      form.append("file", input.files[0], input.files[0].name);
      var response = await post("/api/studies/" + encodeURIComponent(study) + "/documents", form,
        function (loaded, total) {
          bar.value = Math.round(100 * loaded / total);
          statusLine.textContent = t("sending", { done: megabytes(loaded), total: megabytes(total) });
        });
      bar.value = 100;
      if (response.status === 201) {
        statusLine.textContent = t("document_done");
        show(input.files[0].name, "stored", "");
      } else {
        statusLine.textContent = problem(response);
        show(input.files[0].name, "failed", "");
      }
    });
  }
})();
