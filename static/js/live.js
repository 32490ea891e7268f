/* Live updates for dashboard pages.
 *
 * One WebSocket per page (body[data-live-url]), signed in with the session cookie. Each message is
 * a domain event {kind, charger, data}. Page parts that show it declare their interest:
 *   data-live="kind other.kind prefix.*"   the kinds that change the part
 *   data-live-charger="<identity>"         only events of this charger (optional)
 *   data-live-delay="<ms>"                 wait this long to gather a burst (default 250)
 * and are re-fetched with htmx (their hx-get, hx-trigger="live"), at most one request at a time
 * per part, so the last event is always reflected. Every event is also dispatched on document as a
 * "cpms:live" CustomEvent for charts that add points without a round trip.
 */
(function () {
  "use strict";

  var body = document.body;
  var path = body.getAttribute("data-live-url");
  if (!path || !window.WebSocket) return;

  var indicator = document.querySelector("[data-live-state]");
  var pending = {};
  var attempts = 0;
  var connectedOnce = false;

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

  function fire(id) {
    var el = document.getElementById(id);
    if (!el || !el.hasAttribute("data-live")) {
      delete pending[id];
      return;
    }
    if (el.classList.contains("htmx-request")) {
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
      if (connectedOnce) {
        // Events sent while the socket was down are lost: refresh every live part once.
        document.querySelectorAll("[data-live]").forEach(refresh);
      }
      connectedOnce = true;
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
