#!/bin/sh
# run.sh - `make bench`: sohub's figures on this machine in about two minutes.
#
# usage: sh bench/run.sh [BUILD_DIR]
# env:   SOHUB_APP (default bench)  app path used against sohub-server
#        SOHUB_SERVER                the server binary (default BUILD_DIR/app/sohub-server);
#                                    one without http_listen gets no WebSocket rows
#        QUICK=1                     smaller counts and shorter runs
#        JSON_DIR                    keep every raw JSON result in this directory
#        FAN_WINDOW (default 32)     changes outstanding per fan-out writer
#        NO_WS=1                     leave the WebSocket rows out
#
# Starts sohub-server (RTMP, and WebSocket on http_listen) and
# sohub-raw-fanout on 127.0.0.1 (port 0) and runs, one after the other:
# connect (RTMP, then WebSocket), idle (RTMP; WebSocket on a fresh server);
# fan-out of one object to 2,000 subscribers (one writer) and of 100 rooms
# x 20 subscribers (one writer each), each against the raw ceiling, sohub
# over RTMP and (one object) sohub over WebSocket alternately, twice (best
# run of each kept: sohub's RTMP fan-out is also given as a ratio to the
# ceiling, the WebSocket one as a ratio to RTMP, both measured in the same
# run); fan-out latency paced at half the best RTMP deliveries/s of sohub
# (over RTMP and over WebSocket) and at a light 25 changes/s; persist; chat
# (window 1 for latency, window 16 for throughput).  Prints one table with
# the project's targets beside the figures, and the load average before and
# after.  For the comparison with nginx-rtmp and node-media-server run
# bench/peers.sh; with a Node.js ws server, bench/ws-peers.sh.  See
# docs/benchmarks.md.
set -u

BUILD=${1:-build}
SOHUB_APP=${SOHUB_APP:-bench}
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
SERVER=${SOHUB_SERVER:-$BUILD/app/sohub-server}
RAW="$BUILD/bench/raw/sohub-raw-fanout"
TMP=$(mktemp -d /tmp/sohub-bench.XXXXXX)
OUT=${JSON_DIR:-$TMP}
PIDS=""
if [ "${QUICK:-0}" = 1 ]; then
    CONN_N=2000 IDLE_N=2000 SUBS=500 ROOMS=20 DUR=3
else
    CONN_N=10000 IDLE_N=15000 SUBS=2000 ROOMS=100 DUR=6
fi
# Changes outstanding per fan-out writer: the writer sends the next change
# when the server answers one (Success), so this is its pipelining depth.
FAN_WINDOW=${FAN_WINDOW:-32}

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
# sets NAME_pid, NAME_port (first line) and NAME_http (the "http PORT"
# line, empty when none); returns 1 when it did not start
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
    # (the server writes the file whole, with rename)
    PIDS="$PIDS $pid"
    eval "${name}_pid=$pid"
    eval "${name}_port=$(head -1 "$TMP/$name.port")"
    eval "${name}_http=$(sed -n 's/^http //p' "$TMP/$name.port")"
}

# stop NAME: ends a server started with start
stop() {
    eval "p=\${${1}_pid}"
    kill "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$p" 2>/dev/null
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
# WebSocket: the HTTP listener on port 0 (a server built before it refuses
# the key: then no WebSocket rows)
WS_ARGS=""
[ "${NO_WS:-0}" = 1 ] || WS_ARGS="--set http_listen=127.0.0.1:0"
# start_sohub NAME: with the config file and WebSocket when the server takes them
start_sohub() {
    # shellcheck disable=SC2086
    start "$1" "$SERVER" --config "$TMP/sohub.ini" $SOHUB_ARGS $WS_ARGS && return 0
    if [ -n "$WS_ARGS" ] && grep -q "http_listen" "$TMP/$1.log"; then
        echo "run.sh: $SERVER has no http_listen: no WebSocket rows" >&2
        WS_ARGS=""
        # shellcheck disable=SC2086
        start "$1" "$SERVER" --config "$TMP/sohub.ini" $SOHUB_ARGS && return 0
    fi
    echo "run.sh: sohub-server refused the config file (chat_rate unknown?); running without it:" >&2
    tail -2 "$TMP/$1.log" >&2
    # shellcheck disable=SC2086
    start "$1" "$SERVER" $SOHUB_ARGS $WS_ARGS
}
start_sohub sohub || { echo "run.sh: sohub-server did not start:" >&2; cat "$TMP/sohub.log" >&2; exit 1; }
start raw "$RAW" --listen 127.0.0.1:0 || { echo "run.sh: sohub-raw-fanout did not start" >&2; exit 1; }
S="rtmp://127.0.0.1:$sohub_port/$SOHUB_APP"
R="rtmp://127.0.0.1:$raw_port/$SOHUB_APP"
# the WebSocket endpoint, app in the path (docs/websocket.md)
W=""
[ -n "$sohub_http" ] && W="ws://127.0.0.1:$sohub_http/ws/$SOHUB_APP"

uptime > "$OUT/load-before.txt"
bench connect "$S" connect -n "$CONN_N" -c 100 -P 2 --src-ips 4 -d 60
sleep 1
if [ -n "$W" ]; then
    bench ws-connect "$W" connect -n "$CONN_N" -c 100 -P 2 --src-ips 4 -d 60
    sleep 1
fi
bench idle "$S" idle -n "$IDLE_N" -c 100 -P 2 --src-ips 4 --pid "$sohub_pid" --settle 2
# WebSocket idle memory on a server that has held nothing yet, so that no
# memory freed by earlier steps is reused and hidden
if [ -n "$W" ] && start_sohub sohubws; then
    bench ws-idle "ws://127.0.0.1:$sohubws_http/ws/$SOHUB_APP" idle -n "$IDLE_N" -c 100 -P 2 \
        --src-ips 4 --pid "$sohubws_pid" --settle 2
    stop sohubws
fi
# one object, 1 writer, SUBS subscribers; then ROOMS rooms x 20 subscribers,
# 1 writer each.  Ceiling, sohub over RTMP and (one object) sohub over
# WebSocket alternate twice; the best run of each is kept.
FAN1="-r 1 -s $SUBS -w 1 --window $FAN_WINDOW -P 2 -d $DUR"
FANR="-r $ROOMS -s 20 -w 1 --window $FAN_WINDOW -P 2 -d $DUR"
for round in 1 2; do
    bench "fanout-raw-$round" "$R" fanout $FAN1 --so-prefix "raw$round" --pid "$raw_pid"
    bench "fanout-$round" "$S" fanout $FAN1 --so-prefix "fan$round" --pid "$sohub_pid"
    [ -n "$W" ] && bench "fanout-ws-$round" "$W" fanout $FAN1 --so-prefix "ws$round" --pid "$sohub_pid"
    bench "rooms-raw-$round" "$R" fanout $FANR --so-prefix "rraw$round" --pid "$raw_pid"
    bench "rooms-$round" "$S" fanout $FANR --so-prefix "rooms$round" --pid "$sohub_pid"
done
# Latency at half the load: half of sohub's best one-object deliveries/s,
# as changes per second of the one writer.
HALF=$(python3 - "$OUT" "$SUBS" <<'PY'
import json, os, sys
best = 0
for n in ("fanout-1", "fanout-2"):
    try:
        with open(os.path.join(sys.argv[1], n + ".json")) as f:
            best = max(best, json.load(f).get("deliveries_per_second", 0))
    except Exception:
        pass
print(max(1, int(best / 2 / int(sys.argv[2]))))
PY
)
echo "$HALF" > "$OUT/half-rate.txt"
bench fanout-half "$S" fanout -r 1 -s "$SUBS" -w 1 --rate "$HALF" -P 2 -d "$DUR" \
    --so-prefix half --pid "$sohub_pid"
[ -n "$W" ] && bench fanout-ws-half "$W" fanout -r 1 -s "$SUBS" -w 1 --rate "$HALF" -P 2 -d "$DUR" \
    --so-prefix wshalf --pid "$sohub_pid"
bench fanout-light "$S" fanout -r 1 -s "$SUBS" -w 1 --rate 25 -P 2 -d "$DUR" \
    --so-prefix light --pid "$sohub_pid"
bench persist "$S" persist -w 16 --window 16 -d "$DUR" --so-prefix persist --pid "$sohub_pid"
bench chat "$S" chat -U 100 -d 3 --pid "$sohub_pid"
bench chat-16 "$S" chat -U 100 --window 16 -d 3 --pid "$sohub_pid"
uptime > "$OUT/load-after.txt"

python3 - "$OUT" "$SUBS" "$ROOMS" "$FAN_WINDOW" <<'PY'
import json, os, sys
out, subs, rooms, win = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
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
def lat(d, k):
    l = d.get(k) or {}
    return "p50 %.2f / p99 %.2f / p99.9 %.2f ms" % (l.get("p50", 0) / 1e3, l.get("p99", 0) / 1e3, l.get("p999", 0) / 1e3)
def p99(d, k):
    return (d.get(k) or {}).get("p99", 0) / 1e3
def status(d):
    if d is None:
        return "no result"
    if d.get("ok"):
        return ""
    return "FAILED: " + (d.get("first_error") or "see counts")
def mark(ok):
    return "met" if ok else "MISSED"
rows = []
c = load("connect")
if c:
    rows.append(("connect", "%.0f connect/s (%d/%d)" % (c["connect_per_second"], c["connected"], c["expected"]),
                 lat(c, "connect_latency_us"), ">= 2x nginx-rtmp: see peers.sh", status(c)))
c = load("ws-connect")
if c:
    rows.append(("ws connect", "%.0f connect/s (%d/%d)" % (c["connect_per_second"], c["connected"], c["expected"]),
                 lat(c, "connect_latency_us"), "", status(c)))
def idle_row(name, label, limit):
    i = load(name)
    if i:
        per = i["rss_bytes_per_connection"]
        rows.append((label, "%.2f KiB RSS per connection (%d held)" % (per / 1024.0, i["connected"]) if per >= 0 else "not measured",
                     "", "<= %d KiB: %s" % (limit, mark(0 <= per <= limit * 1024)), status(i)))
idle_row("idle", "idle", 2)
idle_row("ws-idle", "ws idle (fresh server)", 3)
def per_cpu(d):
    cpu = d.get("server_cpu_seconds", -1)
    if cpu is None or cpu <= 0:
        return None
    return d["delivered"] / cpu
def cpu_share(d):
    cpu, win = d.get("server_cpu_seconds", -1), d.get("window_seconds", 0)
    return cpu / win if cpu is not None and cpu >= 0 and win else None
def best(*names):
    runs = [d for d in (load(n) for n in names) if d]
    return max(runs, key=lambda d: d.get("deliveries_per_second", 0)) if runs else None
def fan_row(name, d, tgt):
    pc, share = per_cpu(d), cpu_share(d)
    extra = (", %.0fk/server CPU-s" % (pc / 1e3)) if pc else ""
    extra += (", server %.0f%% CPU" % (share * 100)) if share is not None else ""
    rows.append((name, "%.0f deliveries/s%s" % (d["deliveries_per_second"], extra),
                 lat(d, "delivery_latency_us"), tgt, status(d)))
def ratio_row(name, a, b, what, target):
    if not (a and b and b["deliveries_per_second"] > 0):
        return
    r = a["deliveries_per_second"] / b["deliveries_per_second"]
    txt = "%s = %.2f (deliveries/s)" % (what, r)
    if per_cpu(a) and per_cpu(b):
        txt += ", %.2f (per server CPU-s)" % (per_cpu(a) / per_cpu(b))
    rows.append((name, txt, "", (">= 0.7: %s" % mark(r >= 0.7)) if target else "", ""))
def fan_rows(label, raw, soh, target, ws=None):
    fr, fs = best(raw + "-1", raw + "-2"), best(soh + "-1", soh + "-2")
    fw = best(ws + "-1", ws + "-2") if ws else None
    if fr:
        fan_row(label + " ceiling", fr, "")
    if fs:
        fan_row(label + " sohub", fs, ">= 1,000,000/s: %s" % mark(fs["deliveries_per_second"] >= 1e6))
    ratio_row(label + " ratio", fs, fr, "sohub / raw", target)
    if fw:
        fan_row(label + " sohub ws", fw, ">= 1,000,000/s: %s" % mark(fw["deliveries_per_second"] >= 1e6))
        ratio_row(label + " ws/rtmp", fw, fs, "ws / rtmp", True)
fan_rows("fanout 1x%s w%s" % (subs, win), "fanout-raw", "fanout", True, "fanout-ws")
fan_rows("rooms %sx20 w%s" % (rooms, win), "rooms-raw", "rooms", False)
p = load("fanout-half")
if p:
    rows.append(("fanout half load", "%.0f deliveries/s (%s changes/s paced)" % (p["deliveries_per_second"], text("half-rate.txt")),
                 lat(p, "delivery_latency_us"), "p99 <= 10 ms: %s" % mark(p99(p, "delivery_latency_us") <= 10), status(p)))
p = load("fanout-ws-half")
if p:
    rows.append(("ws fanout half load", "%.0f deliveries/s (same pacing as RTMP)" % p["deliveries_per_second"],
                 lat(p, "delivery_latency_us"), "p99 <= 10 ms: %s" % mark(p99(p, "delivery_latency_us") <= 10), status(p)))
p = load("fanout-light")
if p:
    rows.append(("fanout 25 changes/s", "%.0f deliveries/s" % p["deliveries_per_second"], lat(p, "delivery_latency_us"), "", status(p)))
d = load("persist")
if d:
    rows.append(("persist 16x16", "%.0f durable changes/s" % d["acked_per_second"], lat(d, "ack_latency_us"),
                 ">= 100,000/s: %s" % mark(d["acked_per_second"] >= 1e5), status(d)))
for n, label in (("chat", "chat window 1"), ("chat-16", "chat window 16")):
    d = load(n)
    if d:
        ok = d["deliveries_per_second"] >= 2e5 and p99(d, "delivery_latency_us") <= 10
        rows.append((label, "%.0f messages/s" % d["deliveries_per_second"], lat(d, "delivery_latency_us"),
                     ">= 200,000/s, p99 <= 10 ms: %s" % mark(ok), status(d)))
print()
print("load before: " + text("load-before.txt"))
print("load after:  " + text("load-after.txt"))
for r in rows:
    print("%-26s %-56s %-38s %-32s %s" % r)
PY
