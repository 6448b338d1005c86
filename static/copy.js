// Copy buttons: [data-copy] puts its text on the clipboard. Without
// JavaScript the buttons stay hidden and the read-only field beside each (or
// the [data-copy-text] block of its section) holds the same text to select
// by hand.
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    const label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      const done = function () {
        button.textContent = "Copied";
        setTimeout(function () {
          button.textContent = label;
        }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(button.dataset.copy).then(done, function () {
          button.textContent = "Select and copy";
        });
      } else {
        const field = button.closest("tr, .actions").querySelector("input[readonly]");
        if (field) {
          field.select();
        } else {
          const block = button.closest("section").querySelector("[data-copy-text]");
          window.getSelection().selectAllChildren(block);
        }
        document.execCommand("copy");
        done();
      }
    });
  });
})();
