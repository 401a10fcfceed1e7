#!/usr/bin/env bash
# Build the documentation site, serve it on localhost and take headless Chromium
# screenshots of the home page, the cookbook and one API page into
# docs/screenshots/ (kept in the repository as a record of how the site looks).
# Not part of CI: it needs Debian's chromium package (apt-get install -y chromium).
#   ci/docs-screenshots.sh [PAGE ...]    e.g. ci/docs-screenshots.sh namespace/ errors/
# PAGE (a site path) adds a screenshot of that page; DOCS_PORT sets the port (8765).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${DOCS_PORT:-8765}"
chrome="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chrome" ]; then
    echo "chromium not found: apt-get install -y chromium" >&2
    exit 2
fi
tmp="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet --site-dir "$tmp/site"
python -m http.server "$port" --bind 127.0.0.1 --directory "$tmp/site" >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do
    if python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

mkdir -p docs/screenshots
shoot() {  # shoot PAGE NAME
    timeout 60 "$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d -p "$tmp")" --hide-scrollbars --window-size=1280,2000 \
        --virtual-time-budget=3000 --screenshot="docs/screenshots/$2.png" \
        "http://127.0.0.1:$port/$1" >"$tmp/chromium-$2.log" 2>&1 || {
        echo "chromium failed on $1:" >&2
        tail -5 "$tmp/chromium-$2.log" >&2
        return 1
    }
    echo "docs/screenshots/$2.png  <- /$1"
}
shoot "" home
if [ -f "$tmp/site/cookbook/index.html" ]; then shoot cookbook/ cookbook; fi
shoot api/transforms/ api-transforms
for page in "$@"; do
    shoot "$page" "$(echo "${page%/}" | tr '/' '-')"
done
