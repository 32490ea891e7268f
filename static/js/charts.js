/* Session charts (uPlot): energy in kWh and power in kW over time.
 *
 * A chart is <figure class="chart" data-chart="energy|power" data-session="<pk>"
 * data-series="<json_script id>" data-meter-start="<Wh>">. Charts of an active session add the
 * samples of each "session.meter" live event without a round trip.
 */
(function () {
  "use strict";

  var ENERGY = "Energy.Active.Import.Register";
  var POWER = "Power.Active.Import";
  var charts = [];
  // Meter events of the last moments, per session, replayed into charts built after they came
  // (a panel re-rendered on session start may land just after the first samples).
  var recent = {};
  var RECENT_MAX = 20;

  function total(samples, measurand) {
    var values = samples.filter(function (s) {
      return s.measurand === measurand && s.value !== null && s.value !== undefined;
    });
    if (!values.length) return null;
    var whole = values.filter(function (s) { return !s.phase; });
    if (whole.length) return { value: parseFloat(whole[0].value), time: Date.parse(whole[0].timestamp) / 1000 };
    var seen = {};
    var sum = 0;
    values.forEach(function (s) {
      var line = s.phase.slice(0, 2);
      if (!seen[line]) { seen[line] = true; sum += parseFloat(s.value); }
    });
    return { value: sum, time: Date.parse(values[0].timestamp) / 1000 };
  }

  function build(figure) {
    if (figure._chart) return;
    var source = document.getElementById(figure.getAttribute("data-series"));
    if (!source || !window.uPlot) return;
    var series = JSON.parse(source.textContent);
    var kind = figure.getAttribute("data-chart");
    var values = kind === "energy" ? series.energy_kwh : series.power_kw;
    var state = {
      figure: figure,
      kind: kind,
      session: figure.getAttribute("data-session"),
      meterStart: parseFloat(figure.getAttribute("data-meter-start") || "0"),
      // Power comes from power samples; until one arrives, it is derived from the energy register.
      derived: series.power_derived || !series.power_kw.some(function (v) { return v !== null; }),
      times: series.times.slice(),
      values: values.slice(),
      lastEnergy: null
    };
    for (var i = series.times.length - 1; i >= 0; i--) {
      if (series.energy_kwh[i] !== null) {
        state.lastEnergy = { time: series.times[i], kwh: series.energy_kwh[i] };
        break;
      }
    }
    var empty = document.createElement("p");
    empty.className = "muted chart-empty";
    empty.textContent = "No meter values yet.";
    figure.appendChild(empty);
    state.empty = empty;
    var label = kind === "energy" ? "Energy (kWh)" : "Power (kW)";
    var colour = kind === "energy" ? "#2563eb" : "#16a34a";
    var options = {
      width: Math.max(200, figure.clientWidth || 300),
      height: 220,
      legend: { show: true },
      scales: { x: { time: true } },
      series: [
        {},
        { label: label, stroke: colour, width: 2, fill: colour + "22", spanGaps: true, points: { show: false } }
      ],
      axes: [{}, { size: 50 }]
    };
    var zone = figure.getAttribute("data-time-zone");
    if (zone) {
      // Times on the axis in the site's zone, like every time printed on the page.
      options.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); };
    }
    state.plot = new uPlot(options, [state.times, state.values], figure);
    figure._chart = state;
    charts.push(state);
    (recent[state.session] || []).forEach(function (samples) { add(state, samples, true); });
    show(state);
  }

  function show(state) {
    var has = state.values.some(function (v) { return v !== null; });
    state.empty.hidden = has;
    state.plot.setData([state.times, state.values]);
  }

  function add(state, samples, quiet) {
    var energy = total(samples, ENERGY);
    var power = total(samples, POWER);
    var point = null;
    if (state.kind === "energy" && energy) {
      point = { time: energy.time, value: Math.max(0, energy.value - state.meterStart) / 1000 };
    } else if (state.kind === "power") {
      if (power) {
        state.derived = false;
        point = { time: power.time, value: power.value / 1000 };
      } else if (energy && state.derived && state.lastEnergy) {
        var kwh = Math.max(0, energy.value - state.meterStart) / 1000;
        var hours = (energy.time - state.lastEnergy.time) / 3600;
        if (hours > 0) point = { time: energy.time, value: Math.max(0, (kwh - state.lastEnergy.kwh) / hours) };
      }
    }
    if (energy) {
      state.lastEnergy = { time: energy.time, kwh: Math.max(0, energy.value - state.meterStart) / 1000 };
    }
    if (!point || isNaN(point.time)) return;
    var last = state.times.length ? state.times[state.times.length - 1] : -Infinity;
    if (point.time <= last) return;
    state.times.push(point.time);
    state.values.push(Math.round(point.value * 1000) / 1000);
    if (!quiet) show(state);
  }

  document.addEventListener("cpms:live", function (event) {
    var message = event.detail;
    if (message.kind !== "session.meter" || !message.data || !message.data.samples) return;
    var key = String(message.data.session);
    recent[key] = (recent[key] || []).concat([message.data.samples]).slice(-RECENT_MAX);
    charts = charts.filter(function (state) { return document.body.contains(state.figure); });
    charts.forEach(function (state) {
      if (key === state.session) add(state, message.data.samples);
    });
  });

  window.addEventListener("resize", function () {
    charts.forEach(function (state) {
      state.plot.setSize({ width: Math.max(200, state.figure.clientWidth), height: 220 });
    });
  });

  htmx.onLoad(function (root) {
    var scope = root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("figure.chart")) build(scope);
    scope.querySelectorAll("figure.chart").forEach(build);
  });
})();
