#!/bin/sh
# run.sh - `make bench`: sohub's figures on this machine in about a minute.
#
# usage: sh bench/run.sh [BUILD_DIR]
# env:   SOHUB_APP (default bench)  app path used against sohub-server
#        QUICK=1                     smaller counts and shorter runs
#        JSON_DIR                    keep every raw JSON result in this directory
#
# Starts sohub-server and sohub-raw-fanout on 127.0.0.1 (port 0), runs
# connect, idle, fanout (against both, alternating, twice: sohub's fan-out
# is reported as a ratio to the raw ceiling measured in the same run, best
# run of each), persist and chat, and prints one table.  For the comparison with nginx-rtmp and
# node-media-server run bench/peers.sh.  See docs/benchmarks.md.
set -u

BUILD=${1:-build}
SOHUB_APP=${SOHUB_APP:-bench}
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
SERVER="$BUILD/app/sohub-server"
RAW="$BUILD/bench/raw/sohub-raw-fanout"
TMP=$(mktemp -d /tmp/sohub-bench.XXXXXX)
OUT=${JSON_DIR:-$TMP}
PIDS=""
if [ "${QUICK:-0}" = 1 ]; then
    CONN_N=2000 IDLE_N=2000 ROOMS=5 SUBS=50 DUR=3
else
    CONN_N=10000 IDLE_N=10000 ROOMS=10 SUBS=100 DUR=6
fi

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in "$BENCH" "$SERVER" "$RAW"; do
    [ -x "$f" ] || { echo "run.sh: $f is missing: build first (ninja -C $BUILD)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "run.sh: python3 is needed for the table" >&2; exit 1; }
mkdir -p "$OUT"

# start NAME CMD...: runs CMD with --port-file, waits for the port;
# returns 1 when it did not start
start() {
    name=$1
    shift
    rm -f "$TMP/$name.port"
    "$@" --port-file "$TMP/$name.port" > "$TMP/$name.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -s "$TMP/$name.port" ] && [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ ! -s "$TMP/$name.port" ]; then
        kill "$pid" 2>/dev/null
        return 1
    fi
    PIDS="$PIDS $pid"
    eval "${name}_pid=$pid"
    eval "${name}_port=$(cat "$TMP/$name.port")"
}

# bench NAME URL SCENARIO ARGS...: one run, JSON kept in $OUT/NAME.json
bench() {
    name=$1 url=$2
    shift 2
    echo "== $name: $*" >&2
    timeout 300 "$BENCH" -u "$url" "$@" --json -q > "$OUT/$name.json" 2> "$OUT/$name.err"
}

# Benchmarks come from loopback only and push shared objects and chat flat
# out: lift the per-address connection limit and the per-client rate caps.
cat > "$TMP/sohub.ini" <<INI
[app *]
chat_rate = 0
INI
mkdir -p "$TMP/data"
SOHUB_ARGS="--listen 127.0.0.1:0 --data-dir $TMP/data --log-level error
    --set max_connections=19000 --set max_connections_per_ip=19000
    --set so_max_updates_per_sec=0"
# shellcheck disable=SC2086
if ! start sohub "$SERVER" --config "$TMP/sohub.ini" $SOHUB_ARGS; then
    echo "run.sh: sohub-server refused the config file (chat_rate unknown?); running without it:" >&2
    tail -2 "$TMP/sohub.log" >&2
    # shellcheck disable=SC2086
    start sohub "$SERVER" $SOHUB_ARGS || { echo "run.sh: sohub-server did not start:" >&2; cat "$TMP/sohub.log" >&2; exit 1; }
fi
start raw "$RAW" --listen 127.0.0.1:0 || { echo "run.sh: sohub-raw-fanout did not start" >&2; exit 1; }
S="rtmp://127.0.0.1:$sohub_port/$SOHUB_APP"
R="rtmp://127.0.0.1:$raw_port/$SOHUB_APP"

bench connect "$S" connect -n "$CONN_N" -c 100 -P 2 --src-ips 4 -d 60
sleep 1
bench idle "$S" idle -n "$IDLE_N" -c 100 -P 2 --src-ips 4 --pid "$sohub_pid" --settle 2
FAN="-r $ROOMS -s $SUBS -w 1 --window 4 -P 2 -d $DUR"
# ceiling and sohub alternate twice; the table keeps the better run of each
for round in 1 2; do
    bench "fanout-raw-$round" "$R" fanout $FAN --so-prefix "raw$round" --pid "$raw_pid"
    bench "fanout-$round" "$S" fanout $FAN --so-prefix "fan$round" --pid "$sohub_pid"
done
bench fanout-paced "$S" fanout -r "$ROOMS" -s "$SUBS" -w 1 --rate 100 -P 2 -d "$DUR" \
    --so-prefix paced --pid "$sohub_pid"
bench persist "$S" persist -w 8 --window 8 -d "$DUR" --so-prefix persist --pid "$sohub_pid"
bench chat "$S" chat -U 100 -d 3 --pid "$sohub_pid"

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(n):
    try:
        with open(os.path.join(out, n + ".json")) as f:
            return json.load(f)
    except Exception:
        return None
def lat(d, k):
    l = d.get(k) or {}
    return "p50 %.2f / p99 %.2f / p99.9 %.2f ms" % (l.get("p50", 0) / 1e3, l.get("p99", 0) / 1e3, l.get("p999", 0) / 1e3)
def status(d):
    if d is None:
        return "no result"
    if d.get("ok"):
        return ""
    return "FAILED: " + (d.get("first_error") or "see counts")
rows = []
c = load("connect")
if c:
    rows.append(("connect", "%.0f connect/s (%d/%d)" % (c["connect_per_second"], c["connected"], c["expected"]),
                 lat(c, "connect_latency_us"), status(c)))
i = load("idle")
if i:
    per = i["rss_bytes_per_connection"]
    rows.append(("idle", "%.1f KiB RSS per connection (%d held)" % (per / 1024.0, i["connected"]) if per >= 0 else "not measured",
                 "", status(i)))
def per_cpu(d):
    cpu = d.get("server_cpu_seconds", -1)
    if cpu is None or cpu <= 0:
        return None
    return d["delivered"] / cpu
def best(a, b):
    runs = [d for d in (load(a), load(b)) if d]
    return max(runs, key=lambda d: d.get("deliveries_per_second", 0)) if runs else None
fr, fs = best("fanout-raw-1", "fanout-raw-2"), best("fanout-1", "fanout-2")
for name, d in (("fanout raw ceiling", fr), ("fanout sohub", fs)):
    if d:
        pc = per_cpu(d)
        extra = (", %.0fk per server CPU-s" % (pc / 1e3)) if pc else ""
        rows.append((name, "%.0f deliveries/s%s" % (d["deliveries_per_second"], extra),
                     lat(d, "delivery_latency_us"), status(d)))
if fr and fs and fr["deliveries_per_second"] > 0:
    txt = "sohub / raw = %.2f (deliveries/s)" % (fs["deliveries_per_second"] / fr["deliveries_per_second"])
    if per_cpu(fr) and per_cpu(fs):
        txt += ", %.2f (per server CPU-s)" % (per_cpu(fs) / per_cpu(fr))
    rows.append(("fanout ratio", txt, "", ""))
p = load("fanout-paced")
if p:
    rows.append(("fanout paced 100/s", "%.0f deliveries/s" % p["deliveries_per_second"], lat(p, "delivery_latency_us"), status(p)))
d = load("persist")
if d:
    rows.append(("persist", "%.0f durable changes/s" % d["acked_per_second"], lat(d, "ack_latency_us"), status(d)))
d = load("chat")
if d:
    rows.append(("chat", "%.0f messages/s" % d["deliveries_per_second"], lat(d, "delivery_latency_us"), status(d)))
print()
for r in rows:
    print("%-20s %-52s %-36s %s" % r)
PY
