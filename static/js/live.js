/* Live updates for dashboard pages.
 *
 * One WebSocket per page (body[data-live-url]), signed in with the session cookie. Each message is
 * a domain event {kind, charger, data}. Page parts that show it declare their interest:
 *   data-live="kind other.kind prefix.*"   the kinds that change the part
 *   data-live-charger="<identity>"         only events of this charger (optional)
 *   data-live-delay="<ms>"                 wait this long to gather a burst (default 250)
 *   data-live-every="<ms>"                 also fetch it again this often, for as long as the
 *                                          part it returns still carries the attribute (it shows
 *                                          something about to change: a live event is sent at
 *                                          most once, and a lost one would leave it behind)
 * and are re-fetched with htmx (their hx-get, hx-trigger="live"), at most one request at a time
 * per part, and never while another request that will replace the part (a form posting into the
 * section around it) is on its way, so the last event is always reflected. Every event is also
 * dispatched on document as a "cpms:live" CustomEvent for charts that add points without a round
 * trip.
 *
 * Events sent before the socket opened (between the page's render and its subscription, or while
 * it was down) never reach the page: once it opens, every live part is fetched once. A container
 * marked data-live-catchup (with an id) is fetched whole instead of the live parts in it, from
 * the page's own URL with HX-Target naming it: one request for a table of live rows. A part the
 * user is typing in waits for the next event instead, so no input is lost.
 */
(function () {
  "use strict";

  var body = document.body;
  var path = body.getAttribute("data-live-url");
  if (!path || !window.WebSocket) return;

  var indicator = document.querySelector("[data-live-state]");
  var pending = {};
  // The requests on their way, with the elements they will swap: a part inside one waits for
  // it, or the older page the request rendered would land after (and over) the part's fresh one.
  // Each is followed by its XMLHttpRequest: its completion events fire on the element that sent
  // it, which a swap may have taken out of the document, so they need not reach this script.
  var swapping = [];
  var attempts = 0;

  function setState(state, text) {
    body.setAttribute("data-live-connection", state);
    if (indicator) {
      indicator.setAttribute("data-live-state", state);
      indicator.textContent = text;
    }
  }

  function wants(el, event) {
    var kinds = (el.getAttribute("data-live") || "").split(/\s+/);
    var match = kinds.some(function (kind) {
      if (!kind) return false;
      if (kind.slice(-2) === ".*") return event.kind.indexOf(kind.slice(0, -1)) === 0;
      return kind === event.kind;
    });
    if (!match) return false;
    var charger = el.getAttribute("data-live-charger");
    return !charger || charger === event.charger;
  }

  // A swapped element is replaced by one with the same id: what it covers is what that one does.
  function covers(target, el) {
    var current = (target.id && document.getElementById(target.id)) || target;
    return target.contains(el) || current.contains(el);
  }

  function fire(id) {
    var el = document.getElementById(id);
    if (!el || !el.hasAttribute("data-live")) {
      delete pending[id];
      return;
    }
    var covered = inFlight().some(function (target) { return covers(target, el); });
    if (covered || el.classList.contains("htmx-request")) {
      // A refresh is on its way and may predate the event: ask again once it has landed.
      setTimeout(function () { fire(id); }, 100);
      return;
    }
    delete pending[id];
    htmx.trigger(el, "live");
  }

  function refresh(el) {
    var id = el.id;
    if (!id || pending[id]) return;
    pending[id] = true;
    var delay = parseInt(el.getAttribute("data-live-delay") || "250", 10);
    setTimeout(function () { fire(id); }, delay);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.target && event.detail.xhr) {
      swapping.push({ target: event.detail.target, xhr: event.detail.xhr, doneAt: 0 });
    }
  });

  // The targets of the requests still on their way, or done so recently that their new content
  // has not settled yet (it gets its triggers then: a "live" trigger before would be lost).
  function inFlight() {
    var now = Date.now();
    swapping = swapping.filter(function (request) {
      if (request.xhr.readyState !== XMLHttpRequest.DONE) return true;
      if (!request.doneAt) request.doneAt = now;
      return now - request.doneAt < htmx.config.defaultSettleDelay + 50;
    });
    return swapping.map(function (request) { return request.target; });
  }

  // The user is typing in the part: replacing it now would lose what they typed.
  function editing(el) {
    var active = document.activeElement;
    if (active && el.contains(active) && active.matches("input, select, textarea")) {
      return true;
    }
    var changed = Array.prototype.some.call(el.querySelectorAll("input, textarea"), function (input) {
      if (input.type === "checkbox" || input.type === "radio") return input.checked !== input.defaultChecked;
      if (input.type === "hidden") return false;
      return input.value !== input.defaultValue;
    });
    return changed || Array.prototype.some.call(el.querySelectorAll("select"), function (select) {
      var options = Array.prototype.slice.call(select.options);
      if (select.multiple) {
        return options.some(function (option) { return option.selected !== option.defaultSelected; });
      }
      var initial = 0;
      options.forEach(function (option, index) { if (option.defaultSelected) initial = index; });
      return options.length > 0 && select.selectedIndex !== initial;
    });
  }

  function catchUp() {
    var containers = Array.prototype.filter.call(
      document.querySelectorAll("[data-live-catchup][id]"),
      function (container) { return !editing(container); }
    );
    containers.forEach(function (container) {
      htmx.ajax("GET", window.location.href, { source: container, target: "#" + container.id, swap: "outerHTML" });
    });
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (!el.closest("[data-live-catchup][id]") && !editing(el)) refresh(el);
    });
  }

  // Parts that ask to be fetched again (data-live-every), by id: each has one timer at a time,
  // set again whenever a part with that id settles, and by the timer itself while the part may
  // not be fetched (the tab is hidden, or the user is typing in it).
  var rechecks = {};

  function recheck(el) {
    var id = el.id;
    var every = parseInt(el.getAttribute("data-live-every") || "0", 10);
    if (!id || !(every > 0) || rechecks[id]) return;
    rechecks[id] = setTimeout(function () {
      delete rechecks[id];
      var current = document.getElementById(id);
      if (!current || !current.hasAttribute("data-live-every")) return;
      if (document.hidden || editing(current)) {
        recheck(current);
      } else {
        refresh(current);
      }
    }, every);
  }

  function scheduleRechecks() {
    document.querySelectorAll("[data-live-every][id]").forEach(recheck);
  }

  // After a swap, and after a request that swapped nothing (it failed): ask again later.
  document.addEventListener("htmx:afterSettle", scheduleRechecks);
  document.addEventListener("htmx:afterRequest", scheduleRechecks);
  scheduleRechecks();

  function receive(event) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (wants(el, event)) refresh(el);
    });
    document.dispatchEvent(new CustomEvent("cpms:live", { detail: event }));
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + path);
    socket.addEventListener("open", function () {
      attempts = 0;
      setState("open", "Live");
      catchUp();
    });
    socket.addEventListener("message", function (message) {
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      receive(event);
    });
    socket.addEventListener("close", function (close) {
      if (close.code === 4403) {
        // Signed out, or the membership changed: what the page shows may no longer be ours.
        setState("closed", "Live updates stopped: reload the page");
        return;
      }
      setState("retrying", "Reconnecting…");
      var wait = Math.min(30000, 500 * Math.pow(2, attempts++));
      setTimeout(connect, wait);
    });
  }

  setState("connecting", "Connecting…");
  connect();
})();
