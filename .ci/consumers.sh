#!/usr/bin/env bash
# The HTTP endpoint against its real consumers: the leaky_service example started with
# HEAPSAMPLER=http=127.0.0.1:PORT, read by `go tool pprof` (Debian's golang-go) as an HTTP
# client, scraped by Debian's prometheus, and loaded by 1,000 requests 8 at a time from
# another process. Everything listens on loopback; every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v go >/dev/null || need+=(golang-go)
command -v prometheus >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

cargo build --release --features http --example leaky_service
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
base="http://127.0.0.1:$port"
(cd "$work" && HEAPSAMPLER="http=127.0.0.1:$port" LEAKY_SERVICE_SECONDS=90 \
    exec "$OLDPWD/target/release/examples/leaky_service" > service.out 2>&1) &
pids+=($!)
for _ in $(seq 100); do curl -sf "$base/debug/pprof/" >/dev/null && break; sleep 0.2; done
curl -sf "$base/debug/pprof/" >/dev/null || { cat "$work/service.out"; echo "endpoint not up"; exit 1; }
sleep 5 # some leaked state to find

echo "-- go tool pprof as an HTTP client, against /heap.json of the same snapshot"
curl -sf -D "$work/json.head" -o "$work/heap.json" "$base/heap.json"
snapshot="$(tr -d '\r' < "$work/json.head" | awk -F': ' 'tolower($1)=="x-heapsampler-snapshot"{print $2}')"
[ -n "$snapshot" ] || { echo "no snapshot id"; exit 1; }
HOME="$work" PPROF_TMPDIR="$work" go tool pprof -top -cum -unit=B -nodecount=200 \
    "$base/debug/pprof/heap?snapshot=$snapshot" > "$work/pprof.top" 2>"$work/pprof.err" \
    || { cat "$work/pprof.err"; exit 1; }
grep 'leak_session_state' "$work/pprof.top" || { cat "$work/pprof.top"; echo "pprof does not name the leak"; exit 1; }
python3 - "$work/heap.json" "$work/pprof.top" <<'EOF'
import json, math, re, sys
# Rust's f64::round: halves away from zero (Python's round() takes halves to even).
def rnd(x):
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))
report = json.load(open(sys.argv[1]))
loc = {l["address"]: l for l in report["locations"]}
def calls(site, needle):
    return any(needle in (f.get("function") or "")
               for a in site["addresses"] for f in loc.get(a, {}).get("frames", []))
# What pprof shows: each site's live bytes rounded, summed (total, and the leak's cum).
total = sum(rnd(s["live_bytes"]) for s in report["sites"])
leak = sum(rnd(s["live_bytes"]) for s in report["sites"] if calls(s, "leak_session_state"))
text = open(sys.argv[2]).read()
m = re.search(r"of (\d+)B total", text)
shown_total = int(m.group(1)) if m else None
cum = None
for line in text.splitlines():
    f = line.split()
    if len(f) >= 6 and f[5].endswith("leak_session_state"):
        cum = int(f[3].rstrip("B"))
print(f"pprof total {shown_total} B, JSON {total} B; leak_session_state cum {cum} B, JSON {leak} B")
assert shown_total == total, "totals differ"
assert cum == leak and leak > 0, "leak_session_state differs"
EOF

echo "-- prometheus scrapes /metrics"
prom_port="$(free_port)"
mkdir -p "$work/prom"
cat > "$work/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: heapsampler
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
    --web.listen-address="127.0.0.1:$prom_port" > "$work/prom/log" 2>&1 &
pids+=($!)
found=""
for _ in $(seq 60); do
    answer="$(curl -sf "http://127.0.0.1:$prom_port/api/v1/query?query=heapsampler_live_bytes" || true)"
    if echo "$answer" | grep -q '"value"'; then found="$answer"; break; fi
    sleep 1
done
[ -n "$found" ] || { tail -20 "$work/prom/log"; echo "no heapsampler series in prometheus"; exit 1; }
echo "$found"
for q in heapsampler_allocated_bytes_total heapsampler_process_rss_bytes 'heapsampler_site_live_bytes{site=~".*leak_session_state"}'; do
    curl -sfG "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$q" | grep -q '"value"' \
        || { echo "prometheus has no $q"; exit 1; }
    echo "prometheus has $q"
done

echo "-- 1,000 requests, 8 at a time, from another process"
python3 - "$port" <<'EOF'
import concurrent.futures, gzip, http.client, json, sys
port = int(sys.argv[1])
def fetch(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return path, r.status, body
def well_formed(path, status, body):
    if status == 503:
        return "busy"
    assert status == 200, (path, status, body[:200])
    if path.startswith("/debug/pprof/"):
        assert len(gzip.decompress(body)) > 0
    elif path == "/heap.json":
        assert json.loads(body)["format"] == "heapsampler-heap-report"
    else:
        assert body.endswith(b"# EOF\n")
    return "ok"
def metric(name):
    _, _, body = fetch("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
# The profiler's own memory: its tables, and what its own work (this endpoint included) holds.
def own():
    return metric("heapsampler_own_bytes") + metric("heapsampler_overhead_live_bytes")
own_before = own()
allocated_before = metric("heapsampler_allocated_objects_total")
paths = ["/debug/pprof/heap", "/metrics", "/heap.json", "/debug/pprof/allocs"] * 250
counts = {}
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    for result in pool.map(lambda p: well_formed(*fetch(p)), paths):
        counts[result] = counts.get(result, 0) + 1
own_after = own()
allocated_after = metric("heapsampler_allocated_objects_total")
print(f"answers: {counts}; profiler's own memory {own_before/2**20:.1f} -> {own_after/2**20:.1f} MiB; "
      f"the service made {allocated_after - allocated_before:.0f} allocations meanwhile")
assert counts.get("ok", 0) == len(paths), counts
assert allocated_after > allocated_before + 1000, "the service's work stalled"
assert own_after <= own_before * 1.25 + (4 << 20), "the profiler's own memory grew"
EOF
kill -0 "${pids[0]}" || { cat "$work/service.out"; echo "the service died"; exit 1; }
echo "consumers: pprof, prometheus and load all good"
