// Matrix Gate: a bare visit of the UI's root (no "#/..." route) lands on the waterfall.
// "#/" itself (the Home menu entry) is left alone, so Home stays reachable.
(function () {
  var hash = window.location.hash;
  if (hash === "" || hash === "#") {
    window.location.replace(window.location.pathname + window.location.search + "#/waterfall");
  }
})();
