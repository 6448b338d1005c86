// What every page does once loaded: times in the reader's time zone, and
// focus on what the page says after an action.
//
// Times in the reader's own time zone. The server writes each one in UTC
// inside <time datetime="...">, which is what a page without JavaScript
// shows; here it becomes local time, with the UTC kept in its tooltip.
(function () {
  "use strict";
  const withTime = { dateStyle: "medium", timeStyle: "short" };
  const dateOnly = { dateStyle: "medium" };

  function localise(element) {
    const iso = element.getAttribute("datetime");
    if (!iso) {
      return;
    }
    // A datetime without a zone is the server's UTC.
    const zoned = /(Z|[+-]\d\d:\d\d)$/.test(iso) ? iso : iso + "Z";
    const when = new Date(zoned);
    if (Number.isNaN(when.getTime())) {
      return;
    }
    const hasTime = iso.length > 10;
    element.title = element.textContent.trim();
    element.textContent = when.toLocaleString(undefined, hasTime ? withTime : dateOnly);
  }

  function localiseAll(root) {
    root.querySelectorAll("time[datetime]").forEach(localise);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localiseAll(document);
    // Rows the page adds later (an upload that just finished).
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(function (node) {
          if (node.nodeType === Node.ELEMENT_NODE) {
            if (node.matches("time[datetime]")) {
              localise(node);
            } else {
              localiseAll(node);
            }
          }
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  });
})();

// After an action the page says what happened (a flash message): focus goes
// there, so that a keyboard or screen reader user hears it and goes on from
// it, instead of from the top of the page.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  const said = document.querySelector("main .flash");
  if (said && !document.querySelector("[autofocus]")) {
    said.tabIndex = -1;
    said.focus();
  }
});
