/* Site load page: follows /api/v1/sites/<id>/load/ every few seconds and redraws the chart of
 * capacity, allocated and measured current (uPlot), the tiles and the sessions' limits. */
(function () {
  "use strict";

  var POLL_MS = 2000;

  function text(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  function maxOf(values) {
    return values && values.length ? Math.max.apply(null, values) : 0;
  }

  function start() {
    var panel = document.getElementById("site-load");
    var figure = document.getElementById("load-chart");
    if (!panel || !figure) return;
    var url = panel.getAttribute("data-url");
    var zone = panel.getAttribute("data-time-zone");
    var plot = null;

    function draw(history) {
      var data = [
        history.map(function (p) { return Date.parse(p.at) / 1000; }),
        history.map(function (p) { return p.capacity_a; }),
        history.map(function (p) { return p.allocated_a; }),
        history.map(function (p) { return p.measured_a; })
      ];
      if (plot) { plot.setData(data); return; }
      if (!window.uPlot) return;
      var options = {
        width: Math.max(280, figure.clientWidth || 600),
        height: 260,
        scales: { x: { time: true } },
        series: [
          {},
          { label: "Limit (A)", stroke: "#dc2626", width: 2, points: { show: false } },
          { label: "Allocated (A)", stroke: "#2563eb", width: 2, points: { show: false } },
          { label: "Measured (A)", stroke: "#16a34a", width: 2, fill: "#16a34a22", points: { show: false } }
        ],
        axes: [{}, { size: 50 }]
      };
      if (zone) {
        options.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); };
      }
      plot = new uPlot(options, data, figure);
    }

    function rows(sessions) {
      var body = document.querySelector("#load-sessions tbody");
      if (!body) return;
      body.textContent = "";
      if (!sessions.length) {
        var empty = body.insertRow();
        empty.className = "empty-row";
        var cell = empty.insertCell();
        cell.colSpan = 6;
        cell.className = "muted";
        cell.textContent = "No session is charging.";
        return;
      }
      sessions.forEach(function (s) {
        var row = body.insertRow();
        row.setAttribute("data-session", s.session);
        [s.charger, s.connector, text(s.allocated_a, 1), text(s.commanded_a, 1), text(s.measured_a, 1)]
          .forEach(function (value, index) {
            var cell = row.insertCell();
            cell.textContent = value;
            if (index >= 2) cell.className = "num";
          });
        var state = row.insertCell();
        var badge = document.createElement("span");
        badge.className = "badge";
        if (s.ignoring_profile) { badge.className += " status-faulted"; badge.textContent = "ignored"; }
        else if (s.accepted === true) { badge.className += " status-accepted"; badge.textContent = "accepted"; }
        else if (s.accepted === false) { badge.className += " status-rejected"; badge.textContent = "rejected"; }
        else { badge.className += " status-sent"; badge.textContent = "sent"; }
        state.appendChild(badge);
      });
    }

    function show(load) {
      panel.querySelector('[data-load="limit"]').textContent = text(load.limit_a, 1) + " A";
      panel.querySelector('[data-load="source"]').textContent = load.limit_source;
      panel.querySelector('[data-load="allocated"]').textContent = text(maxOf(load.allocated_a), 1) + " A";
      panel.querySelector('[data-load="measured"]').textContent = text(maxOf(load.measured_a), 1) + " A";
      panel.querySelector('[data-load="sessions"]').textContent = load.sessions.length;
      rows(load.sessions);
      draw(load.history);
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (load) { if (load) show(load); })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { window.setTimeout(poll, POLL_MS); });
    }

    poll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
