#!/usr/bin/env bash
# How long a heap timeline page takes in headless Chromium: the page's load event (flamegraph
# frames included), one sort of the table of sites by growth and one search, each measured
# inside the page (performance.now(), the layout they cause included). Runs it 3 times.
#
#   bash scripts/html-browser-time.sh PAGE.html
#
# The big page of the README's table: HTML_BENCH_PAGE=/tmp/big.html cargo bench --bench html
# --features html, then this script on /tmp/big.html.
set -euo pipefail
page="$(realpath "$1")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{ cat "$page"; cat <<'JS'; } > "$work/timed.html"
<script>
window.addEventListener('load', function () {
  var nav = performance.getEntriesByType('navigation')[0];
  function timed(f) { var t = performance.now(); f(); document.body.offsetHeight; return performance.now() - t; }
  var sort = timed(function () { document.querySelector('#sites th button[data-key="growth"]').click(); });
  var search = timed(function () {
    var s = document.getElementById('site-search');
    s.value = 'module_3';
    s.dispatchEvent(new Event('input'));
  });
  var pre = document.createElement('pre');
  pre.id = 'timing';
  pre.textContent = 'load event ' + nav.loadEventStart.toFixed(0) + ' ms, sort by growth ' +
    sort.toFixed(0) + ' ms, search ' + search.toFixed(0) + ' ms (' +
    document.getElementById('sites').tBodies[0].rows.length + ' rows)';
  document.body.appendChild(pre);
});
</script>
JS
echo "$(basename "$page"): $(stat -c %s "$page") bytes; $(uptime | sed 's/.*load/load/')"
for _ in 1 2 3; do
    chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$work/profile" \
        --window-size=1400,1800 --dump-dom "file://$work/timed.html" 2> /dev/null \
        | perl -0777 -ne 'print "$1\n" if /<pre id="timing">(.*?)<\/pre>/s'
done
