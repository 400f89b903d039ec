// Live delivery dashboard: polls the notice's status JSON and redraws the bar, figures and curve.
(function () {
  "use strict";
  var box = document.getElementById("delivery-dashboard");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "—" : String(value); }
  }
  function width(id, value) {
    var el = document.getElementById(id);
    if (el) { el.setAttribute("width", String(value)); }
  }
  function rows(id, items, cells) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) { return; }
    while (body.firstChild) { body.removeChild(body.firstChild); }
    items.forEach(function (item) {
      var tr = document.createElement("tr");
      cells(item).forEach(function (value) {
        var td = document.createElement("td");
        td.textContent = value === null || value === undefined ? "" : String(value);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function when(iso) { return iso ? new Date(iso).toLocaleTimeString() : null; }

  function show(data) {
    text("delivery-status", data.status_label);
    text("fig-planned", data.planned);
    text("fig-accepted", data.accepted);
    text("fig-read", data.read);
    text("fig-confirmed", data.confirmed);
    text("fig-queued", data.queued);
    text("fig-eta", data.eta_s ? data.eta_s + " s" : null);
    text("fig-delivery-rate", data.delivery_rate === null ? "—" : data.delivery_rate + "%");
    text("fig-reach-rate", data.reach_rate === null ? "—" : data.reach_rate + "%");
    text("fig-median", data.curve.median_first_read_min);
    text("fig-avg", data.curve.avg_first_read_min);
    text("fig-reach", data.reach);
    text("fig-last-poll", when(data.last_poll_at));
    text("fig-next-poll", when(data.next_poll_at));
    if (data.send_progress) {
      text("fig-send-progress", data.send_progress.percent === null ? null : data.send_progress.percent + "%");
    }
    text("fig-outreach", data.outreach_open);
    text("curve-minutes", data.curve.minutes);
    width("bar-accepted", data.bars.accepted);
    width("bar-read", data.bars.read);
    width("bar-confirmed", data.bars.confirmed);
    var curve = document.getElementById("curve-line");
    if (curve) { curve.setAttribute("points", data.curve.points); }
    var ticks = document.querySelectorAll("#curve-x-ticks text");
    (data.curve.x_ticks || []).forEach(function (tick, i) {
      if (ticks[i]) { ticks[i].textContent = String(tick.minute); }
    });
    if (data.curve.table && data.curve.table.length) {
      rows("delivery-curve-table", data.curve.table, function (r) {
        return [r.minute, r.read, r.share === null ? "—" : r.share + "%"];
      });
    }
    var pause = document.getElementById("delivery-pause");
    pause.hidden = !data.pause_reason;
    text("delivery-pause-reason", data.pause_reason);
    rows("delivery-districts", data.districts, function (r) {
      // Broadcasts have no per-person reads: no read columns rather than 0%.
      return data.per_person_reads
        ? [r.district, r.planned, r.read, r.reach === null ? "—" : r.reach + "%"]
        : [r.district, r.planned];
    });
    rows("delivery-failures", data.failures, function (r) { return [r.state, r.code, r.count]; });
    text("delivery-updated", new Date(data.updated_at).toLocaleTimeString());
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { show(data); } })
      .catch(function () { /* keep the last figures; the next poll retries */ })
      .then(function () { window.setTimeout(poll, 2000); });
  }
  ["fig-last-poll", "fig-next-poll"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el && el.getAttribute("data-at")) { el.textContent = when(el.getAttribute("data-at")); }
  });
  window.setTimeout(poll, 2000);
})();
