/* Audiences pages: the segment editor's live count and the import job's progress bar. */
(function () {
  "use strict";

  function liveCount(form) {
    var output = document.getElementById("segment-count");
    var status = document.getElementById("segment-count-status");
    var url = form.getAttribute("data-count-url");
    var timer = null;
    var sequence = 0;

    function refresh() {
      var mine = ++sequence;
      status.textContent = status.getAttribute("data-counting") || "…";
      fetch(url, { method: "POST", body: new FormData(form), credentials: "same-origin",
                   headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (mine !== sequence) { return; }  // a newer request is on its way
          if (data.count === null || data.count === undefined) {
            output.textContent = "—";
            status.textContent = "?";
          } else {
            output.textContent = String(data.count);
            status.textContent = "";
          }
          form.setAttribute("data-counted", String(mine));
        })
        .catch(function () { if (mine === sequence) { status.textContent = "!"; } });
    }

    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 300);
    }

    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    refresh();
  }

  function progress(section) {
    var url = section.getAttribute("data-progress-url");
    var bar = document.getElementById("import-progress");
    function poll() {
      fetch(url, { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          bar.value = data.percent;
          bar.parentNode.setAttribute("aria-valuenow", String(data.percent));
          document.getElementById("import-state").textContent = data.state_label;
          document.getElementById("import-processed").textContent = String(data.processed);
          document.getElementById("import-total").textContent = String(data.total);
          if (data.finished) { window.location.reload(); } else { window.setTimeout(poll, 1000); }
        });
    }
    if (section.getAttribute("data-finished") !== "1") { window.setTimeout(poll, 1000); }
  }

  var form = document.getElementById("segment-form");
  if (form) { liveCount(form); }
  var job = document.getElementById("import-job");
  if (job) { progress(job); }
})();
