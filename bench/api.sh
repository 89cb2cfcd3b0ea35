#!/bin/sh
# api.sh - issue 14's speed figures: writes through the server API fanned
# out to RTMP subscribers, and what scraping /metrics costs.
#
# usage: sh bench/api.sh [BUILD_DIR]
# env:   QUICK=1        smaller counts, shorter runs
#        JSON_DIR       keep every raw JSON result in this directory
#        ROUNDS (3)     alternations of each comparison
#
# Starts three sohub-servers on 127.0.0.1 (port 0) with admin_listen and
# a write API key: "default" with the default so_congestion_bytes (256
# KiB), "c16k" and "c4k" with so_congestion_bytes = 16 KiB and 4 KiB (a
# subscriber that falls behind by that much gets diffs instead of every
# change sooner: rule 7).
#   api:     sohub-benchmark api: W keep-alive HTTP writers (one process)
#            POST {"persistent":false,"set":{"wN":<send time>}} to one
#            temporary object that S RTMP subscribers use (two processes);
#            flat out with a window of pipelined requests, the three
#            servers alternately, ROUNDS times; then paced at a light rate for the
#            latency floor.  API writes/s (200 answers), request ->
#            delivery p50 / p99, request -> answer p50 / p99.
#   metrics: the fan-out scenario of run.sh (1 object, 2,000 subscribers,
#            1 writer, window 32) on "default", alternately without and
#            with a scraper GETting /metrics once a second (keep-alive, as
#            Prometheus does), ROUNDS times each: server CPU per delivery
#            both ways (from /proc/PID/stat through --pid), and the direct
#            cost: the loop thread's CPU time (schedstat, nanoseconds) of
#            1,000 back-to-back scrapes while 2,000 connections are open,
#            per scrape, against the fan-out's server CPU per second.
# Prints a table and the load average before and after.
set -u

BUILD=${1:-build}
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
SERVER="$BUILD/app/sohub-server"
TMP=$(mktemp -d /tmp/sohub-bench-api.XXXXXX)
OUT=${JSON_DIR:-$TMP}
ROUNDS=${ROUNDS:-3}
PIDS=""
KEY="bench-api-key-0123456789abcdef"
if [ "${QUICK:-0}" = 1 ]; then
    SUBS=200 FANSUBS=500 DUR=3 IDLE_N=500
else
    SUBS=1000 FANSUBS=2000 DUR=6 IDLE_N=2000
fi
WRITERS=${WRITERS:-64}
WINDOW=${WINDOW:-64}

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in "$BENCH" "$SERVER"; do
    [ -x "$f" ] || { echo "api.sh: $f is missing: build first (ninja -C $BUILD)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "api.sh: python3 is needed" >&2; exit 1; }
mkdir -p "$OUT"

# start NAME EXTRA...: sohub-server with the admin listener; sets NAME_pid,
# NAME_port (RTMP) and NAME_admin
start() {
    name=$1
    shift
    mkdir -p "$TMP/$name.data"
    cat > "$TMP/$name.ini" <<INI
[server]
admin_listen = 127.0.0.1:0
max_connections = 19000
max_connections_per_ip = 19000
so_max_updates_per_sec = 0
log_level = warn

[api_key bench]
secret = $KEY
scope = write
INI
    "$SERVER" --config "$TMP/$name.ini" --listen 127.0.0.1:0 --data-dir "$TMP/$name.data" \
        --port-file "$TMP/$name.port" "$@" > "$TMP/$name.log" 2>&1 &
    pid=$!
    i=0
    while ! grep -q admin "$TMP/$name.port" 2>/dev/null && [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    grep -q admin "$TMP/$name.port" 2>/dev/null || { echo "api.sh: $name did not start:" >&2; cat "$TMP/$name.log" >&2; exit 1; }
    PIDS="$PIDS $pid"
    eval "${name}_pid=$pid"
    eval "${name}_port=$(head -1 "$TMP/$name.port")"
    eval "${name}_admin=$(sed -n 's/^admin //p' "$TMP/$name.port")"
}

# bench NAME ARGS...: one run, JSON kept in $OUT/NAME.json
bench() {
    name=$1
    shift
    echo "== $name: $*" >&2
    timeout 300 "$BENCH" "$@" --json -q > "$OUT/$name.json" 2> "$OUT/$name.err"
}

# api NAME SERVER ARGS...
api() {
    name=$1 srv=$2
    shift 2
    eval "port=\$${srv}_port admin=\$${srv}_admin pid=\$${srv}_pid"
    bench "$name" -u "rtmp://127.0.0.1:$port/bench/api" api --api "http://127.0.0.1:$admin" \
        --api-key "$KEY" --pid "$pid" "$@"
}

# The scraper: GET /metrics once a second on one keep-alive connection
# until killed; the bytes of the last answer go to $TMP/scrape.size.
scraper() {
    python3 - "$1" "$TMP/scrape.size" <<'PY' &
import http.client, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
conn = None
while True:
    t = time.monotonic()
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        body = conn.getresponse().read()
        with open(out, "w") as f:
            f.write(str(len(body)))
    except Exception:
        conn = None
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
PY
    SCRAPER=$!
}

start default
start c16k --set so_congestion_bytes=16384
start c4k --set so_congestion_bytes=4096

uptime > "$OUT/load-before.txt"
r=1
while [ $r -le "$ROUNDS" ]; do
    for srv in default c16k c4k; do
        api "api-$srv-$r" "$srv" -s "$SUBS" -w "$WRITERS" --window "$WINDOW" -P 3 -d "$DUR" \
            --so-prefix "r$r"
    done
    r=$((r + 1))
done
# light load: 8 writers x 25 writes/s = 200 API writes/s
api api-light default -s "$SUBS" -w 8 --rate 25 -P 3 -d "$DUR" --so-prefix light

FAN="-r 1 -s $FANSUBS -w 1 --window 32 -P 2 -d $DUR"
r=1
while [ $r -le "$ROUNDS" ]; do
    # shellcheck disable=SC2086
    bench "fan-plain-$r" -u "rtmp://127.0.0.1:$default_port/bench" fanout $FAN \
        --so-prefix "p$r" --pid "$default_pid"
    scraper "$default_admin"
    # shellcheck disable=SC2086
    bench "fan-scraped-$r" -u "rtmp://127.0.0.1:$default_port/bench" fanout $FAN \
        --so-prefix "s$r" --pid "$default_pid"
    kill "$SCRAPER" 2>/dev/null
    wait "$SCRAPER" 2>/dev/null
    r=$((r + 1))
done

# The direct cost: 1,000 scrapes back to back with IDLE_N connections open.
"$BENCH" -u "rtmp://127.0.0.1:$default_port/bench" idle -n "$IDLE_N" -c 100 -P 2 \
    --settle 12 -q --json > "$OUT/idle.json" 2> "$OUT/idle.err" &
IDLE=$!
python3 - "$default_admin" "$default_pid" "$IDLE_N" "$OUT/scrape-cost.json" <<'PY'
import http.client, json, os, sys, time
port, pid, want, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def cpu():
    # the loop thread's time on a CPU in nanoseconds (schedstat): /proc's
    # utime + stime count in 10 ms ticks, too coarse for a scrape
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        return int(f.read().split()[0]) / 1e9
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
def scrape():
    conn.request("GET", "/metrics")
    return conn.getresponse().read().decode()
deadline = time.monotonic() + 60
open_now = 0
while time.monotonic() < deadline:
    for line in scrape().splitlines():
        if line.startswith('sohub_connections{transport="rtmp",state="connected"}'):
            open_now = int(float(line.split()[-1]))
    if open_now >= want:
        break
    time.sleep(0.2)
time.sleep(0.5)
n, size = 1000, 0
c0, t0 = cpu(), time.monotonic()
for _ in range(n):
    size = len(scrape())
c1, t1 = cpu(), time.monotonic()
json.dump({"connections": open_now, "scrapes": n, "bytes": size,
           "server_cpu_seconds": c1 - c0, "wall_seconds": t1 - t0}, open(out, "w"))
PY
wait "$IDLE" 2>/dev/null
uptime > "$OUT/load-after.txt"

python3 - "$OUT" "$ROUNDS" "$SUBS" "$WRITERS" "$WINDOW" "$FANSUBS" <<'PY'
import json, os, statistics, sys
out, rounds, subs, writers, window, fansubs = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def load(n):
    try:
        with open(os.path.join(out, n + ".json")) as f:
            return json.load(f)
    except Exception:
        return None
def text(n):
    try:
        with open(os.path.join(out, n)) as f:
            return f.read().strip()
    except Exception:
        return "?"
def ms(d, k, q):
    return (d.get(k) or {}).get(q, 0) / 1e3
print()
print("load before: " + text("load-before.txt"))
print("load after:  " + text("load-after.txt"))
print("api: %s HTTP writers x window %s, %s RTMP subscribers, one temporary object" % (writers, window, subs))
best = 0
for srv, label in (("default", "so_congestion_bytes 256k"), ("c16k", "so_congestion_bytes 16k"),
                   ("c4k", "so_congestion_bytes 4k")):
    for r in range(1, rounds + 1):
        d = load("api-%s-%d" % (srv, r))
        if not d:
            print("  %-26s round %d: no result" % (label, r))
            continue
        w = d.get("api_writes_per_second", 0)
        best = max(best, w)
        cpu = d.get("server_cpu_seconds", 0)
        print("  %-26s round %d: %8.0f API writes/s, %9.0f deliveries/s, request->delivery p50 %.1f / p99 %.1f ms, "
              "answer p50 %.1f / p99 %.1f ms, server %.0f us CPU per write%s"
              % (label, r, w, d.get("deliveries_per_second", 0), ms(d, "delivery_latency_us", "p50"),
                 ms(d, "delivery_latency_us", "p99"), ms(d, "answer_latency_us", "p50"),
                 ms(d, "answer_latency_us", "p99"), 1e6 * cpu / max(1, d.get("acked", 0)),
                 "" if d.get("ok") else "  FAILED: " + (d.get("first_error") or "see counts")))
print("  target >= 50,000 API writes/s: best %.0f: %s" % (best, "met" if best >= 50000 else "MISSED"))
d = load("api-light")
if d:
    print("  light (8 writers x 25/s):   %8.0f API writes/s, request->delivery p50 %.1f / p99 %.1f ms, answer p50 %.1f / p99 %.1f ms"
          % (d.get("api_writes_per_second", 0), ms(d, "delivery_latency_us", "p50"), ms(d, "delivery_latency_us", "p99"),
             ms(d, "answer_latency_us", "p50"), ms(d, "answer_latency_us", "p99")))
print("metrics: fan-out 1 x %s (window 32), without / with a 1 s /metrics scraper" % fansubs)
per = {"plain": [], "scraped": []}
for r in range(1, rounds + 1):
    row = []
    for k in ("plain", "scraped"):
        d = load("fan-%s-%d" % (k, r))
        if d and d.get("server_cpu_seconds", 0) > 0 and d.get("delivered", 0) > 0:
            ns = 1e9 * d["server_cpu_seconds"] / d["delivered"]
            per[k].append(ns)
            row.append("%s %.0f deliveries/s, server %.2f CPU-s in %.1f s, %.1f ns/delivery"
                       % (k, d["deliveries_per_second"], d["server_cpu_seconds"], d["window_seconds"], ns))
        else:
            row.append("%s: no result" % k)
    print("  round %d: %s" % (r, "; ".join(row)))
if per["plain"] and per["scraped"]:
    a, b = statistics.mean(per["plain"]), statistics.mean(per["scraped"])
    print("  server CPU per delivery, scraped vs not: %+.1f %% (mean of %d alternated runs each; the noise "
          "between runs of one kind: %.1f %% .. %.1f %%)" % (100 * (b / a - 1), len(per["plain"]),
          100 * (min(per["plain"]) / a - 1), 100 * (max(per["plain"]) / a - 1)))
s = load("scrape-cost")
plain = [load("fan-plain-%d" % r) for r in range(1, rounds + 1)]
plain = [d for d in plain if d and d.get("window_seconds")]
if s and s["scrapes"]:
    per_scrape = s["server_cpu_seconds"] / s["scrapes"]
    line = "  direct: %d scrapes with %d connections open: %.3f ms of server CPU each (%d bytes)" % (
        s["scrapes"], s["connections"], 1e3 * per_scrape, s["bytes"])
    if plain:
        load_cpu = statistics.mean(d["server_cpu_seconds"] / d["window_seconds"] for d in plain)
        line += "; one a second against the fan-out's %.2f server CPU-s/s: %.3f %% (target < 1 %%: %s)" % (
            load_cpu, 100 * per_scrape / load_cpu, "met" if per_scrape / load_cpu < 0.01 else "MISSED")
    print(line)
PY
