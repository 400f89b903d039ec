// Polls a chain verification's progress on the Chain page and shows its outcome.
(function () {
  "use strict";
  var box = document.getElementById("chain-run");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  if (!url) { return; }
  var bar = document.getElementById("chain-run-progress");
  var status = document.getElementById("chain-run-status");
  var checked = document.getElementById("chain-run-checked");
  var outcome = document.getElementById("chain-run-outcome");

  function show(data) {
    bar.value = data.percent;
    bar.textContent = data.percent + "%";
    status.textContent = data.status_label;
    checked.textContent = data.checked + (data.total !== null ? " / " + data.total : "");
    if (data.outcome) {
      outcome.textContent = data.outcome;
      outcome.className = data.ok ? "ok" : "bad";
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
