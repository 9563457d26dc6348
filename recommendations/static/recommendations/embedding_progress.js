// Live embedding progress on the embedding spaces list: polls the JSON counts while a space is unfinished and
// reloads once every space is done (so that states and actions are current). Without JavaScript the counts are
// those of the page load.
// The admin loads this in <head>: wait for the list.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var bars = document.querySelectorAll(".embedding-progress[data-space]");
  var unfinished = Array.prototype.some.call(bars, function (bar) { return bar.dataset.finished !== "1"; });
  if (!unfinished) return;
  var url = window.location.pathname.replace(/\/?$/, "/") + "progress/";
  var timer = window.setInterval(function () {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var allDone = true;
        data.spaces.forEach(function (space) {
          var bar = document.querySelector('.embedding-progress[data-space="' + space.id + '"]');
          if (space.done < space.total) allDone = false;
          if (!bar) return;
          var meter = bar.querySelector("progress");
          meter.value = space.done;
          meter.max = space.total;
          ["done", "total", "failed"].forEach(function (name) {
            var field = bar.querySelector('[data-field="' + name + '"]');
            if (field) field.textContent = space[name].toLocaleString();
          });
        });
        if (allDone) {
          window.clearInterval(timer);
          window.location.reload();
        }
      })
      .catch(function () { /* the next poll tries again */ });
  }, 2000);
});
