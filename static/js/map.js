/* Site maps (Leaflet). Tiles come from CPMS_MAP_TILE_URL; with none set the map is blank and still
 * shows the markers, so the page needs no outside service. */
(function () {
  "use strict";

  function link(marker) {
    var a = document.createElement("a");
    a.href = marker.url;
    a.textContent = marker.name;
    return a;
  }

  document.querySelectorAll("[data-map]").forEach(function (el) {
    if (!window.L) return;
    var config = JSON.parse(document.getElementById(el.getAttribute("data-map")).textContent);
    if (!config.markers.length) return;
    var map = L.map(el, { scrollWheelZoom: false, attributionControl: !!config.tiles });
    if (config.tiles) {
      L.tileLayer(config.tiles, { attribution: config.attribution, maxZoom: 19 }).addTo(map);
    }
    var points = config.markers.map(function (marker) {
      L.marker([marker.lat, marker.lng], { title: marker.name, alt: marker.name, keyboard: true })
        .addTo(map)
        .bindPopup(link(marker));
      return [marker.lat, marker.lng];
    });
    if (points.length === 1) map.setView(points[0], 15);
    else map.fitBounds(points, { padding: [30, 30], maxZoom: 15 });
  });
})();
