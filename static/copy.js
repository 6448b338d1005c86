// Copy buttons: [data-copy] puts its text on the clipboard. Without
// JavaScript the buttons stay hidden and the read-only field beside each
// holds the same text to select by hand.
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      const done = function () {
        button.textContent = "Copied";
        setTimeout(function () {
          button.textContent = "Copy";
        }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(button.dataset.copy).then(done, function () {
          button.textContent = "Select and copy";
        });
      } else {
        const field = button.closest("tr, .actions").querySelector("input[readonly]");
        field.select();
        document.execCommand("copy");
        done();
      }
    });
  });
})();
