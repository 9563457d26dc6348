// Live counters on an import job's admin page: polls the JSON status and reloads once the job is done.
// Without JavaScript the page refreshes itself instead (a <noscript> meta refresh).
(function () {
  "use strict";
  var box = document.getElementById("import-status");
  if (!box || box.dataset.finished === "1") return;
  var timer = window.setInterval(function () {
    fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        box.querySelectorAll("[data-field]").forEach(function (element) {
          var value = data[element.dataset.field];
          if (value !== undefined) element.textContent = typeof value === "number" ? value.toLocaleString() : value;
        });
        if (data.finished) {
          window.clearInterval(timer);
          window.location.reload();
        }
      })
      .catch(function () { /* the next poll tries again */ });
  }, 2000);
})();
