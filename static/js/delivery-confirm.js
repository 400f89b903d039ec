// Public confirmation page: for drills, attach the browser's location if the person allows it.
(function () {
  "use strict";
  var share = document.getElementById("confirm-share-location");
  var form = document.getElementById("confirm-form");
  if (!share || !form || !navigator.geolocation) { return; }
  var asked = false;
  form.addEventListener("submit", function (event) {
    if (!share.checked || asked) { return; }
    event.preventDefault();
    asked = true;
    navigator.geolocation.getCurrentPosition(function (position) {
      document.getElementById("confirm-latitude").value = position.coords.latitude;
      document.getElementById("confirm-longitude").value = position.coords.longitude;
      form.submit();
    }, function () { form.submit(); }, { timeout: 10000 });
  });
})();
