#!/usr/bin/env bash
# Refresh the vendored browser libraries from their npm packages; no CDN is used at run time.
# Usage: static/vendor/refresh.sh   (then review and commit static/vendor/)
# Versions are pinned here; bump one, run this, look at the dashboard, commit.
set -euo pipefail

HTMX=htmx.org@2.0.11
LEAFLET=leaflet@1.9.4
UPLOT=uplot@1.6.32

vendor="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

unpack() {  # unpack <package@version> <dir>: the package tarball as published on npm
    local spec="$1" dest="$work/$2"
    mkdir -p "$dest"
    (cd "$work" && npm pack --silent "$spec" >"$work/$2.name")
    tar -xzf "$work/$(cat "$work/$2.name")" -C "$dest" --strip-components=1
}

unpack "$HTMX" htmx
unpack "$LEAFLET" leaflet
unpack "$UPLOT" uplot

rm -rf "$vendor/htmx" "$vendor/leaflet" "$vendor/uplot"
mkdir -p "$vendor/htmx" "$vendor/leaflet/images" "$vendor/uplot"

cp "$work/htmx/dist/htmx.min.js" "$work/htmx/LICENSE" "$vendor/htmx/"
cp "$work/leaflet/dist/leaflet.js" "$work/leaflet/dist/leaflet.css" "$work/leaflet/LICENSE" "$vendor/leaflet/"
cp "$work/leaflet/dist/images/"*.png "$vendor/leaflet/images/"
cp "$work/uplot/dist/uPlot.iife.min.js" "$work/uplot/dist/uPlot.min.css" "$work/uplot/LICENSE" "$vendor/uplot/"

{
    echo "Vendored by static/vendor/refresh.sh from the npm registry; do not edit by hand."
    for spec in "$HTMX" "$LEAFLET" "$UPLOT"; do echo "$spec"; done
} >"$vendor/VERSIONS"
echo "vendored: $HTMX $LEAFLET $UPLOT"
