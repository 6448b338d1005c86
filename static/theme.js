// The colour theme: the system's own, unless the person chose light or dark
// with the header's toggle, which this browser then keeps. Loaded in <head>,
// before the page is drawn, so that a chosen theme never flashes the other.
(function () {
  "use strict";
  const KEY = "lockbox.theme";
  const root = document.documentElement;

  function stored() {
    try {
      return localStorage.getItem(KEY);
    } catch (error) {
      return null; // storage turned off: the system's theme
    }
  }

  function apply(theme) {
    if (theme === "light" || theme === "dark") {
      root.dataset.theme = theme;
    } else {
      delete root.dataset.theme;
    }
  }

  function isDark() {
    if (root.dataset.theme) {
      return root.dataset.theme === "dark";
    }
    return window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  apply(stored());

  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("theme-toggle");
    if (!button) {
      return;
    }
    const show = function () {
      button.setAttribute("aria-pressed", String(isDark()));
    };
    button.hidden = false;
    show();
    button.addEventListener("click", function () {
      const theme = isDark() ? "light" : "dark";
      apply(theme);
      try {
        localStorage.setItem(KEY, theme);
      } catch (error) {
        // not kept: this page still changes
      }
      show();
    });
  });
})();
