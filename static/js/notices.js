/* Compose page: live DingTalk preview, counters and pre-flight figures (notices app). */
(function () {
  "use strict";

  var form = document.getElementById("notice-form");
  if (!form) { return; }
  var strings = document.getElementById("i18n-strings").dataset;
  var previewUrl = form.dataset.previewUrl;
  var timer = null;
  var inFlight = null;
  var pending = false;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  /* A small, safe subset of DingTalk markdown: headings, bold, links, paragraphs. */
  function inline(parent, text) {
    var pattern = /(\*\*([^*]+)\*\*)|(\[([^\]]+)\]\(([^)\s]+)\))/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      if (match.index > last) { parent.appendChild(document.createTextNode(text.slice(last, match.index))); }
      if (match[2]) {
        parent.appendChild(el("strong", "", match[2]));
      } else {
        var a = el("a", "", match[4]);
        if (/^(https?:|dingtalk:)/.test(match[5])) { a.href = match[5]; }
        a.rel = "noopener";
        parent.appendChild(a);
      }
      last = pattern.lastIndex;
    }
    if (last < text.length) { parent.appendChild(document.createTextNode(text.slice(last))); }
  }

  function markdown(text) {
    var box = el("div", "bubble-markdown");
    (text || "").split(/\n{2,}/).forEach(function (block) {
      var heading = /^(#{1,6})\s+(.*)$/.exec(block);
      var node = heading ? el("h4") : el("p");
      var lines = (heading ? heading[2] : block).split("\n");
      lines.forEach(function (line, i) {
        if (i > 0) { node.appendChild(el("br")); }
        inline(node, line);
      });
      box.appendChild(node);
    });
    return box;
  }

  function bubble(msg) {
    var type = msg.msgtype;
    var body = msg[type] || {};
    var b = el("div", "bubble bubble-" + type);
    if (type === "text") {
      b.appendChild(el("p", "bubble-text", body.content));
    } else if (type === "markdown") {
      b.appendChild(el("p", "bubble-title", body.title));
      b.appendChild(markdown(body.text));
    } else if (type === "action_card") {
      b.appendChild(el("p", "bubble-title", body.title));
      b.appendChild(markdown(body.markdown));
      var list = el("div", "bubble-buttons");
      (body.btn_json_list || []).forEach(function (btn) {
        var button = el("span", "bubble-button", btn.title || "—");
        button.title = btn.action_url || "";
        list.appendChild(button);
      });
      b.appendChild(list);
    } else if (type === "link") {
      b.appendChild(el("p", "bubble-title", body.title));
      b.appendChild(el("p", "bubble-text", body.text));
      b.appendChild(el("p", "bubble-url", body.messageUrl));
    } else {
      b.appendChild(el("p", "bubble-media", "[" + type + "]"));
    }
    return b;
  }

  function counter(id, value, limit, unit) {
    var node = document.getElementById(id);
    if (!node) { return; }
    if (value === null || value === undefined) { node.textContent = ""; return; }
    node.textContent = limit ? value + " " + strings.of + " " + limit + " " + unit : value + " " + unit;
    node.classList.toggle("over", Boolean(limit) && value > limit);
  }

  function showKindFields() {
    var kind = form.elements.kind.value;
    form.querySelectorAll(".compose-kind").forEach(function (set) {
      set.hidden = !set.classList.contains("compose-kind-" + kind);
    });
    var audience = form.querySelector(".compose-audience");
    if (audience) { audience.classList.toggle("citywide", form.elements.tier.value === "citywide"); }
  }

  function render(data) {
    ["en", "zh"].forEach(function (lang) {
      var box = document.getElementById("preview-" + lang);
      box.replaceChildren();
      var stats = data.languages[lang];
      if (stats) {
        box.appendChild(bubble(stats.message));
        counter("counter-title_" + lang, stats.title_chars, stats.title_limit, strings.chars);
        counter("counter-body_" + lang, stats.body_chars, stats.body_limit, strings.chars);
        counter("counter-bytes-" + lang, stats.bytes, stats.byte_limit, strings.bytes);
      } else {
        counter("counter-title_" + lang, null);
        counter("counter-body_" + lang, null);
        counter("counter-bytes-" + lang, null);
      }
    });
    var problems = document.getElementById("preview-problems");
    problems.replaceChildren();
    form.querySelectorAll("[aria-invalid]").forEach(function (f) { f.removeAttribute("aria-invalid"); });
    Object.keys(data.errors).forEach(function (name) {
      var field = form.elements[name];
      if (field && field.setAttribute) { field.setAttribute("aria-invalid", "true"); }
      data.errors[name].forEach(function (message) { problems.appendChild(el("li", "field-error", message)); });
    });
    var pf = data.preflight;
    var age = pf.recipients_cached ? strings.cached.replace("%s", pf.recipients_age_s) : strings.fresh;
    document.getElementById("pf-recipients").textContent = pf.recipients.toLocaleString() + " (" + age + ")";
    document.getElementById("pf-calls").textContent = pf.calls.toLocaleString() + " (" + (pf.strategy_label || pf.strategy) + ")";
    var scope = (strings["scope" + pf.reach_scope.charAt(0).toUpperCase() + pf.reach_scope.slice(1)] || "")
      .replace("%s", pf.reach_counted_at ? new Date(pf.reach_counted_at).toLocaleString() : "");
    document.getElementById("pf-scope").textContent = scope + (pf.all_members_policy ? " " + strings.policy : "");
    var f = pf.forecast;
    document.getElementById("pf-forecast").textContent = f.total.toLocaleString() + " (" + strings.forecast
      .replace("%1", f.sends).replace("%2", f.companion_cards).replace("%3", f.uploads)
      .replace("%4", f.receipt_polls).replace("%5", f.reminders).replace("%6", f.reminder_polls)
      .replace("%7", f.approver_alerts).replace("%8", f.recall) + ")";
    document.getElementById("pf-quota").textContent = pf.calls_left === null
      ? pf.monthly_calls.toLocaleString() + " / " + strings.unknown
      : pf.calls_left.toLocaleString() + " / " + pf.monthly_calls.toLocaleString();
    document.getElementById("pf-eta").textContent = pf.eta_minutes
      ? strings.minutes.replace("%s", pf.eta_minutes) : strings.immediate;
    document.getElementById("pf-saving").textContent = "HK$" + Number(pf.sms_saving_hkd).toLocaleString(undefined, {minimumFractionDigits: 2});
    document.getElementById("pf-approvers").textContent = String(data.required_approvals);
    var channels = document.getElementById("pf-channels");
    channels.replaceChildren();
    (pf.channels ? pf.channels.lines : []).forEach(function (line) { channels.appendChild(el("li", "", line)); });
    var warnings = document.getElementById("pf-warnings");
    warnings.replaceChildren();
    pf.warnings.forEach(function (w) { warnings.appendChild(el("li", "", w)); });
    document.getElementById("preview-status").textContent = strings.updated + " (" + data.took_ms + " ms)";
  }

  function refresh() {
    if (inFlight) { pending = true; return; }
    var body = new FormData(form);
    body.delete("upload");
    var upload = form.elements.upload;
    if (form.dataset.hasAttachment || (upload && upload.files && upload.files.length)) {
      body.append("has_attachment", "1");
    }
    inFlight = fetch(previewUrl, {method: "POST", body: body, credentials: "same-origin",
                                  headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(render)
      .catch(function () { document.getElementById("preview-status").textContent = strings.failed; })
      .finally(function () {
        inFlight = null;
        if (pending) { pending = false; refresh(); }
      });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 150);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", function () { showKindFields(); schedule(); });
  showKindFields();
  refresh();

  var picker = document.getElementById("template-picker");
  if (picker) {
    /* The placeholder fields belong to the template shown; another choice starts afresh. */
    picker.addEventListener("change", function () {
      document.querySelectorAll("#template-form [name^='value_']").forEach(function (f) { f.disabled = true; });
    });
  }
})();
