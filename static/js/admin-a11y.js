// WCAG fixes for widgets Django's admin builds in the browser (found by axe-core):
// - the search icon of a two-list selector carries aria-label on a bare span: make it an image;
// - an autocomplete (select2) box has no accessible name: name it by its field's label;
// - a date-and-time field's two boxes follow bare "Date:" / "Time:" text: name them by it.
(function () {
  "use strict";
  function fix() {
    document.querySelectorAll("span.help-tooltip[aria-label]").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var label = document.querySelector("label[for='" + select.id + "']");
      var box = select.nextElementSibling;
      if (!label || !box) { return; }
      if (!label.id) { label.id = select.id + "_label"; }
      box.querySelectorAll(".select2-selection, .select2-selection__rendered").forEach(function (el) {
        el.setAttribute("aria-labelledby", label.id);
      });
    });
    document.querySelectorAll("p.datetime input").forEach(function (input) {
      if (input.labels && input.labels.length) { return; }
      var text = input.previousSibling;
      while (text && text.nodeType !== 3) { text = text.previousSibling; }
      var word = text ? text.textContent.replace(/[:：\s]+$/, "").trim() : "";
      var base = input.id.replace(/_[01]$/, "");
      var field = document.querySelector("label[for='" + base + "_0'], label[for='" + base + "']");
      var name = ((field ? field.textContent.replace(/[:：]\s*$/, "") + " " : "") + word).trim();
      if (name) { input.setAttribute("aria-label", name); }
    });
  }
  // After the admin's own load handlers (registered by scripts that ran before this one).
  // jQuery's ready (which starts the autocomplete boxes) may come later still: run once more.
  window.addEventListener("load", function () { fix(); window.setTimeout(fix, 0); });
})();
