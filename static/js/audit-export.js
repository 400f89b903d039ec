// Polls an audit export's progress and reveals the download link when the file is ready.
(function () {
  "use strict";
  var box = document.getElementById("audit-export");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  var bar = document.getElementById("audit-export-progress");
  var status = document.getElementById("audit-export-status");
  var rows = document.getElementById("audit-export-rows");
  var link = document.getElementById("audit-export-download");
  var error = document.getElementById("audit-export-error");

  function show(data) {
    bar.value = data.percent;
    bar.textContent = data.percent + "%";
    status.textContent = data.status_label;
    rows.textContent = data.rows_written + (data.total_rows !== null ? " / " + data.total_rows : "");
    if (data.download_url) {
      link.href = data.download_url;
      link.hidden = false;
    }
    if (data.error) {
      error.textContent = data.error;
      error.hidden = false;
    }
    return data.status === "done" || data.status === "failed";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) { if (!show(data)) { window.setTimeout(poll, 1000); } })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  poll();
})();
