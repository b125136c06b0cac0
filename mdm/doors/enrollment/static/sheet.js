/* The printable enrollment sheets: the print button. A file of its own because the pages' CSP
   runs no inline script, so an onclick attribute would silently do nothing. */
(function () {
  "use strict";
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();
