#!/usr/bin/env bash
# The heap timeline of the leaky_service example, rendered by `heapsampler html`, opened in
# headless Chromium: saves a screenshot and checks through the page's DOM that the live-heap
# chart has exactly one point per report and that the leak suspect is named; that the page
# fetches nothing from the network (Chromium's net log); and, on a copy of the page with a
# small script appended (scripts/html-check.js), that the table sorts by each column both
# ways, that the search box filters its rows and that a row opens its stack.
#
#   bash scripts/html-screenshot.sh [screenshot.png]     (default: docs/timeline.png)
#
# Needs `chromium` (Debian: apt-get install chromium). LEAKY_SERVICE_SECONDS (default 12)
# sets how long the example runs; it writes one report a second.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
shot="${1:-$root/docs/timeline.png}"
case "$shot" in /*) ;; *) shot="$root/$shot" ;; esac

cargo build --release --features cli --bin heapsampler --example leaky_service
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && LEAKY_SERVICE_SECONDS="${LEAKY_SERVICE_SECONDS:-12}" \
    "$root/target/release/examples/leaky_service" > service.txt)
reports=$(find "$work/heap-reports" -name 'heap-*.json' | wc -l)
(cd "$work" && "$root/target/release/heapsampler" html heap-reports -o heap.html)

chrome() {
    local page="$1"; shift
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/profile" --window-size=1400,1800 "$@" "file://$work/$page" \
        2> "$work/chromium.log"
}
chrome heap.html --dump-dom --log-net-log="$work/net.json" > "$work/dom.html"
chrome heap.html --screenshot="$shot" > /dev/null

# The DOM as the browser built it: the live-heap chart's points, one per report.
live=$(perl -0777 -ne 'print $1 if /(<svg id="live-heap".*?<\/svg>)/s' "$work/dom.html")
all=$(grep -o 'data-report-index="[0-9]*"' <<< "$live" | wc -l)
points=$(grep -o 'data-report-index="[0-9]*"' <<< "$live" | sort -u | wc -l)
echo "reports: $reports, live-heap points: $all ($points distinct)"
if [ "$points" -ne "$reports" ] || [ "$all" -ne "$reports" ]; then
    echo "the live-heap chart does not hold one point per report"; exit 1
fi
if ! grep -q 'data-suspect="leaky_service::leak_session_state"' "$work/dom.html"; then
    cat "$work/service.txt"
    echo "the leak suspect leak_session_state is not named on the page"; exit 1
fi
label=$(grep -o 'leak suspect leaky_service::leak_session_state: +[^<]*/s, [0-9.]*% confidence' \
    "$work/dom.html" | head -1)
if [ -z "$label" ]; then
    echo "the leak suspect's label (growth rate, confidence) is not on the chart"; exit 1
fi
echo "leak suspect named: leaky_service::leak_session_state; chart label: $label"

# Nothing fetched by the page or its flamegraph frames: every request whose network isolation
# key has the file:// page as its top frame (Chromium's own background requests have none).
python3 - "$work/net.json" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
fetched = sorted({e["params"]["url"] for e in log["events"]
                  if e["type"] == start
                  and e["params"].get("network_isolation_key", "").startswith("file://")
                  and not e["params"]["url"].startswith("file:")})
if fetched:
    sys.exit("the page fetched from the network: " + ", ".join(fetched))
print("network requests of the page: 0")
PY

# The table as a reader uses it, in the browser: html-check.js clicks, types and opens, and
# writes one `name: ok|FAIL ...` line per check into the DOM.
{ cat "$work/heap.html"; printf '<script>\n'; cat scripts/html-check.js; printf '</script>\n'; } \
    > "$work/check.html"
chrome check.html --dump-dom > "$work/check-dom.html"
checks=$(perl -0777 -ne 'print $1 if /<pre id="browser-check">(.*?)<\/pre>/s' "$work/check-dom.html")
echo "$checks"
if ! grep -qx done <<< "$checks" || grep -q FAIL <<< "$checks"; then
    echo "the page's table does not work in the browser (above)"; exit 1
fi
echo "screenshot: $shot ($(stat -c %s "$shot") bytes)"
