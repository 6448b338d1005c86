// Signing out takes with it what this browser keeps of the account: the
// addresses of unfinished uploads (app.js keeps them to resume after a
// reload). Without JavaScript nothing was kept.
(function () {
  "use strict";
  const KEPT = ["lockbox.uploads::", "tus::"];
  document.querySelectorAll("form.sign-out").forEach(function (form) {
    form.addEventListener("submit", function () {
      try {
        const keys = [];
        for (let index = 0; index < localStorage.length; index += 1) {
          keys.push(localStorage.key(index));
        }
        keys
          .filter(function (key) {
            return KEPT.some(function (prefix) {
              return key && key.startsWith(prefix);
            });
          })
          .forEach(function (key) {
            localStorage.removeItem(key);
          });
      } catch (error) {
        // No storage in this browser (private mode): nothing was kept.
      }
    });
  });
})();
