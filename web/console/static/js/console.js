/* Hikeshi console: the only script. No inline handlers anywhere (the CSP forbids them). */
(function () {
  "use strict";

  // "Select all" checkbox for the bulk command form.
  function wireSelectAll() {
    document.querySelectorAll("[data-select-all]").forEach(function (box) {
      var name = box.getAttribute("data-select-all");
      box.addEventListener("change", function () {
        var form = box.closest("form");
        form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (item) {
          item.checked = box.checked;
        });
      });
    });
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) {
      var span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function updateRow(tbody, command) {
    var row = tbody.querySelector('tr[data-uuid="' + command.uuid + '"]');
    if (!row) {
      var empty = tbody.querySelector("tr.empty");
      if (empty) { empty.remove(); }
      row = document.createElement("tr");
      row.setAttribute("data-uuid", command.uuid);
      row.appendChild(cell(command.label));
      var stateCell = cell(command.status_label, "cmd-state");
      stateCell.firstChild.setAttribute("data-field", "status");
      row.appendChild(stateCell);
      row.appendChild(cell(command.requested_by));
      row.appendChild(cell(command.queued_display));
      var updated = cell(command.updated_display);
      updated.setAttribute("data-field", "updated");
      row.appendChild(updated);
      row.appendChild(cell(""));
      tbody.insertBefore(row, tbody.firstChild);
    }
    var state = row.querySelector('[data-field="status"]');
    if (state && state.getAttribute("data-status") !== command.status) {
      state.textContent = command.status_label;
      state.className = "cmd-state state-" + command.status;
      state.setAttribute("data-status", command.status);
    }
    var updatedCell = row.querySelector('[data-field="updated"]');
    if (updatedCell) { updatedCell.textContent = command.updated_display; }
    if (!command.cancellable) {
      var cancel = row.querySelector('[data-field="cancel"]');
      if (cancel) { cancel.remove(); }
    }
  }

  // Command history of the device page: poll the JSON endpoint and update states in place.
  function wirePolling() {
    var table = document.querySelector("[data-poll-url]");
    if (!table) { return; }
    var url = table.getAttribute("data-poll-url");
    var seconds = parseInt(table.getAttribute("data-poll-seconds") || "3", 10);
    var tbody = table.querySelector("tbody");
    var stopped = false;

    function poll() {
      if (stopped) { return; }
      fetch(url, { headers: { "X-Hikeshi-Poll": "1", "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401) { stopped = true; window.location.reload(); return null; }
          return response.ok ? response.json() : null;
        })
        .then(function (data) {
          if (!data) { return; }
          data.commands.slice().reverse().forEach(function (command) { updateRow(tbody, command); });
          table.setAttribute("data-polled", String(Date.now()));
        })
        .catch(function () { /* the next poll retries */ })
        .then(function () { if (!stopped) { window.setTimeout(poll, seconds * 1000); } });
    }
    window.setTimeout(poll, seconds * 1000);
  }

  // Copy buttons for one-time secrets (token, password).
  function wireCopy() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (source && navigator.clipboard) { navigator.clipboard.writeText(source.textContent.trim()); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSelectAll();
    wirePolling();
    wireCopy();
  });
})();
