/* Hikeshi hotline: keyboard flow of the search page and the live incident page.
   No inline handlers anywhere (the CSP forbids them). */
(function () {
  "use strict";

  // Search page: after a search, the first result's caller-name field takes the focus, so the
  // operator types the name and presses Enter (the first submit button is "Lock now").
  // Arrow keys move between the results' first fields.
  function wireSearch() {
    var results = document.getElementById("hotline-results");
    var search = document.getElementById("hotline-q");
    if (!results || !search) { return; }
    var fields = Array.prototype.slice.call(results.querySelectorAll(".caller-name, .hit-incident a"));
    if (fields.length === 0) { return; }
    fields[0].focus();
    document.addEventListener("keydown", function (event) {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") { return; }
      var index = fields.indexOf(document.activeElement);
      if (document.activeElement === search && event.key === "ArrowDown") {
        index = -1;
      } else if (index === -1) {
        return;
      }
      var next = index + (event.key === "ArrowDown" ? 1 : -1);
      event.preventDefault();
      if (next < 0) { search.focus(); return; }
      if (next < fields.length) { fields[next].focus(); }
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fillBody(tbody, rows, columns, emptyText) {
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    if (rows.length === 0) {
      var tr = el("tr", "empty");
      var td = el("td", "muted", emptyText);
      td.colSpan = columns;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    rows.forEach(function (row) { tbody.appendChild(row); });
  }

  function commandRow(c) {
    var tr = el("tr");
    tr.setAttribute("data-uuid", c.uuid);
    tr.appendChild(el("td", null, c.label));
    tr.appendChild(el("td", null, c.purpose));
    var state = el("td");
    var span = el("span", "delivery delivery-" + c.state, c.state_label);
    span.setAttribute("data-state", c.state);
    state.appendChild(span);
    tr.appendChild(state);
    [c.queued, c.pushed, c.delivered, c.acknowledged].forEach(function (t) { tr.appendChild(el("td", null, t)); });
    return tr;
  }

  function pushRow(p) {
    var tr = el("tr", p.accepted ? "push-ok" : "push-failed");
    [p.at, p.attempt, p.status_code, p.reason].forEach(function (v) { tr.appendChild(el("td", null, v)); });
    return tr;
  }

  function timelineItem(e) {
    var li = el("li", "tl-" + e.kind + (e.flagged ? " flagged" : ""));
    li.appendChild(el("time", null, e.at));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "tl-text", e.text));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "muted", e.actor));
    return li;
  }

  function showLocation(box, location) {
    if (!location) { return; }
    while (box.firstChild) { box.removeChild(box.firstChild); }
    var p = el("p");
    p.appendChild(el("span", "coords", location.latitude + ", " + location.longitude));
    p.appendChild(document.createTextNode(" ± " + location.accuracy + " m · " + location.at));
    box.appendChild(p);
    var linkLine = el("p");
    var link = el("a", null, box.getAttribute("data-map-label") || "map");
    link.href = location.map_url;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    link.id = "map-link";
    linkLine.appendChild(link);
    box.appendChild(linkLine);
  }

  // True while the operator is typing in one of the page's forms: never reload under them.
  function busy() {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) { return true; }
    return Array.prototype.some.call(document.querySelectorAll("#incident input[type=text]"), function (input) {
      return input.value !== "";
    });
  }

  // Incident page: poll the live JSON every ~1.5 s; queued → pushed → delivered → acknowledged
  // appear without a reload. A change of the incident's status reloads the page (new actions).
  function wireIncident() {
    var root = document.getElementById("incident");
    if (!root) { return; }
    var url = root.getAttribute("data-live-url");
    var every = parseInt(root.getAttribute("data-live-ms") || "1500", 10);
    var shownStatus = root.getAttribute("data-status");
    // What the finder sees changes only with a device's answer; the page shows it after a reload.
    var shownFinder = root.getAttribute("data-finder");
    var commands = document.querySelector("#incident-commands tbody");
    var pushes = document.querySelector("#incident-pushes tbody");
    var timeline = document.getElementById("timeline");
    var status = document.getElementById("incident-status");
    var progress = document.getElementById("wipe-progress");
    var location = document.getElementById("location");
    var emptyCommands = commands.querySelector("tr.empty td");
    var emptyPushes = pushes.querySelector("tr.empty td");
    var emptyCommandsText = emptyCommands ? emptyCommands.textContent : "";
    var emptyPushesText = emptyPushes ? emptyPushes.textContent : "";
    var lockResult = document.getElementById("lock-result");
    var lockLabel = document.getElementById("lock-result-label");
    var lockNext = document.getElementById("lock-next-step");
    var mapLink = document.getElementById("map-link");
    if (mapLink) { location.setAttribute("data-map-label", mapLink.textContent); }
    var stopped = false;

    function apply(data) {
      status.textContent = data.status_label;
      status.className = "hotline-state state-" + data.status;
      progress.textContent = data.wipe_progress_label;
      progress.className = "wipe-progress wipe-" + data.wipe_progress;
      if (lockResult && data.lock) {
        lockResult.className = "lock-result lock-" + data.lock.state;
        lockResult.setAttribute("data-state", data.lock.state);
        lockLabel.textContent = data.lock.label;
        lockNext.textContent = data.lock.next_step;
      }
      fillBody(commands, data.commands.map(commandRow), 7, emptyCommandsText);
      fillBody(pushes, data.pushes.map(pushRow), 4, emptyPushesText);
      while (timeline.firstChild) { timeline.removeChild(timeline.firstChild); }
      data.timeline.forEach(function (e) { timeline.appendChild(timelineItem(e)); });
      showLocation(location, data.location);
      var finderChanged = data.finder && data.finder.key !== shownFinder;
      if ((data.status !== shownStatus || finderChanged) && !busy()) {
        stopped = true;
        window.location.reload();
      }
    }

    function poll() {
      if (stopped) { return; }
      fetch(url, { headers: { "X-Hikeshi-Poll": "1", "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401) { stopped = true; window.location.reload(); return null; }
          return response.ok ? response.json() : null;
        })
        .then(function (data) { if (data) { apply(data); } })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { if (!stopped) { window.setTimeout(poll, every); } });
    }
    window.setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSearch();
    wireIncident();
  });
})();
