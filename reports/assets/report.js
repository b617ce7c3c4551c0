// meshauth report: a failures-only filter and expand/collapse-all. The page is complete
// without this script; it only adds conveniences. `#failures` in the URL turns the filter on;
// `#expanded` opens every section (for printing and screenshots).
(function () {
  "use strict";
  var toolbar = document.getElementById("toolbar");
  var failuresOnly = document.getElementById("failures-only");
  var shown = document.getElementById("shown-count");
  var scenarios = Array.prototype.slice.call(document.querySelectorAll("details.scenario"));
  if (!toolbar || !failuresOnly) { return; }
  toolbar.hidden = false;

  function applyFilter() {
    var only = failuresOnly.checked;
    var visible = 0;
    scenarios.forEach(function (scenario) {
      var hide = only && scenario.dataset.state === "pass";
      scenario.hidden = hide;
      if (!hide) { visible += 1; }
    });
    shown.textContent = visible + " of " + scenarios.length + " scenario(s) shown";
    document.documentElement.dataset.filter = only ? "failures" : "all";
    try {
      var base = location.href.split("#")[0];
      if (only) { history.replaceState(null, "", base + "#failures"); }
      else if (location.hash === "#failures") { history.replaceState(null, "", base); }
    } catch (ignored) { /* file:// pages may refuse history changes; the filter still works */ }
  }

  function setAllOpen(open) {
    document.querySelectorAll("details").forEach(function (details) {
      if (!details.hidden) { details.open = open; }
    });
  }

  // Following a link (e.g. from the durations chart) opens the scenario it points at.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.hidden = false;
      target.open = true;
    }
  }

  failuresOnly.addEventListener("change", applyFilter);
  document.getElementById("expand-all").addEventListener("click", function () { setAllOpen(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAllOpen(false); });
  window.addEventListener("hashchange", openTarget);
  failuresOnly.checked = location.hash === "#failures";
  applyFilter();
  if (location.hash === "#expanded") { setAllOpen(true); }
  openTarget();
  document.documentElement.dataset.script = "ready";
})();
