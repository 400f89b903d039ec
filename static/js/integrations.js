// Copy the once-shown integration secret to the clipboard (the field stays selectable by hand).
(function () {
  "use strict";
  var button = document.getElementById("integration-secret-copy");
  if (!button) { return; }
  var status = document.getElementById("integration-secret-copied");
  button.addEventListener("click", function () {
    var field = document.getElementById(button.getAttribute("data-target"));
    field.focus();
    field.select();
    var done = function () { status.textContent = button.getAttribute("data-done") || "✓"; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });
}());
