// New profile from a template: the identifier offered follows the chosen template until the user
// types their own (web/console/profiles.py suggested_identifiers). Without script the server still
// uses the offered identifier when the field is left blank.
(function () {
  "use strict";
  function init() {
    var select = document.getElementById("template-select");
    var input = document.getElementById("template-identifier");
    if (!select || !input) { return; }
    var offered = function () {
      var option = select.options[select.selectedIndex];
      return option ? option.getAttribute("data-identifier") || "" : "";
    };
    var last = offered();
    select.addEventListener("change", function () {
      if (input.value === "" || input.value === last) {
        input.value = offered();
      }
      last = offered();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
