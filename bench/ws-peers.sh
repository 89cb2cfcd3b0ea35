#!/bin/sh
# ws-peers.sh - sohub-server over WebSocket next to a Node.js broadcast
# server on the `ws` package (bench/peers/ws-broadcast), measured by
# sohub-benchmark --transport ws on this machine, one table.
#
# usage: sh bench/ws-peers.sh [BUILD_DIR]
# env:   SUBS      (default 2000)   fan-out subscribers of the one object
#        WINDOW    (default 32)     changes outstanding for the one writer
#        DUR       (default 6)      seconds per fan-out run
#        ROUNDS    (default 3)      fan-out runs per server, alternating
#        CONNECT_N (default 5000)   connections for the connect scenario (0: skip)
#        IDLE_N    (default 15000)  connections held for the idle scenario (0: skip)
#        PROCS     (default 2)      benchmark worker processes
#        PEER_ARGS                  extra arguments of the peer (--shared-buffer)
#        JSON_DIR                   keep every raw JSON result in this directory
#
# Both servers listen on 127.0.0.1 only and are started fresh (sohub with
# its limits lifted as bench/run.sh does).  Each fan-out round runs sohub
# and then the peer (the order flips every round); the table gives every
# run, the median of each server and the ratio of the medians against the
# target (sohub >= 3 x the peer's deliveries/s).  Connect and idle run
# once per server, idle on a server that has held nothing before.  The
# peer is installed with `npm ci` from its package-lock.json into
# bench/.cache/ws-broadcast (ignored by git); when node or npm is missing,
# or the install fails, its rows say so.
set -u

BUILD=${1:-build}
SUBS=${SUBS:-2000}
WINDOW=${WINDOW:-32}
DUR=${DUR:-6}
ROUNDS=${ROUNDS:-3}
CONNECT_N=${CONNECT_N:-5000}
IDLE_N=${IDLE_N:-15000}
PROCS=${PROCS:-2}
PEER_ARGS=${PEER_ARGS:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
SERVER="$BUILD/app/sohub-server"
TMP=$(mktemp -d /tmp/sohub-ws-peers.XXXXXX)
OUT=${JSON_DIR:-$TMP}
PIDS=""

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "ws-peers.sh: $*" >&2; exit 1; }
[ -x "$BENCH" ] || die "no $BENCH (build first: ninja -C $BUILD)"
[ -x "$SERVER" ] || die "no $SERVER (build first: ninja -C $BUILD)"
command -v python3 >/dev/null || die "python3 is needed to print the table"
if ! [ "$ROUNDS" -ge 1 ] 2>/dev/null || [ "$ROUNDS" -gt 20 ]; then die "ROUNDS must be 1..20"; fi
mkdir -p "$OUT"

note() { printf '%s\n' "$2" > "$OUT/$1.note"; }

# wait_file FILE: up to 10 s for FILE to be written
wait_file() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$1" ]
}

# ---- sohub-server (fresh for each use: fan-out, then idle) ----
SOHUB_PID="" SOHUB_URL=""
start_sohub() {
    rm -rf "$TMP/sohub-data" "$TMP/sohub.port"
    mkdir -p "$TMP/sohub-data"
    "$SERVER" --listen 127.0.0.1:0 --port-file "$TMP/sohub.port" --data-dir "$TMP/sohub-data" \
        --log-level error --set http_listen=127.0.0.1:0 --set max_connections=19000 \
        --set max_connections_per_ip=19000 --set so_max_updates_per_sec=0 \
        > "$TMP/sohub.log" 2>&1 &
    SOHUB_PID=$!
    PIDS="$PIDS $SOHUB_PID"
    wait_file "$TMP/sohub.port" || return 1
    hp=$(sed -n 's/^http //p' "$TMP/sohub.port")
    [ -n "$hp" ] || return 1
    SOHUB_URL="ws://127.0.0.1:$hp/ws/bench"
}
stop_pid() {
    kill "$1" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$1" 2>/dev/null
}

# ---- the peer: installed with npm ci from the lock file ----
PEER_SRC="$HERE/peers/ws-broadcast"
PEER_DIR="$HERE/.cache/ws-broadcast"
PEER_OK=0
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    note peer "node / npm are not installed"
else
    mkdir -p "$PEER_DIR"
    [ -f "$HERE/.cache/.gitignore" ] || printf '*\n' > "$HERE/.cache/.gitignore"
    # (re)install when the lock file changed
    if ! cmp -s "$PEER_SRC/package-lock.json" "$PEER_DIR/package-lock.json" ||
       [ ! -f "$PEER_DIR/node_modules/ws/package.json" ]; then
        cp "$PEER_SRC/package.json" "$PEER_SRC/package-lock.json" "$PEER_DIR/"
        echo "== installing the ws-broadcast peer with npm ci" >&2
        (cd "$PEER_DIR" && timeout 180 npm ci --no-audit --no-fund --loglevel=error) \
            > "$TMP/npm.log" 2>&1
    fi
    cp "$PEER_SRC/server.js" "$PEER_DIR/server.js"
    if [ -f "$PEER_DIR/node_modules/ws/package.json" ]; then
        PEER_OK=1
        WS_VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$PEER_DIR/node_modules/ws/package.json" | head -1)
        echo "node $(node --version), ws $WS_VERSION" > "$OUT/peer-version.txt"
    else
        note peer "npm ci failed: $(tail -1 "$TMP/npm.log" 2>/dev/null)"
    fi
fi
PEER_PID="" PEER_URL=""
start_peer() {
    rm -f "$TMP/peer.port"
    # shellcheck disable=SC2086
    node "$PEER_DIR/server.js" --port-file "$TMP/peer.port" $PEER_ARGS > "$TMP/peer.log" 2>&1 &
    PEER_PID=$!
    PIDS="$PIDS $PEER_PID"
    wait_file "$TMP/peer.port" || return 1
    PEER_URL="ws://127.0.0.1:$(cat "$TMP/peer.port")/ws/bench"
}

# run NAME URL PID SCENARIO ARGS...: one bounded run, JSON in $OUT/NAME.json
run() {
    name=$1 url=$2 pid=$3
    shift 3
    echo "== $name: $*" >&2
    timeout 300 "$BENCH" --transport ws -u "$url" "$@" --pid "$pid" -P "$PROCS" --json -q \
        > "$OUT/$name.json" 2> "$OUT/$name.err"
}

uptime > "$OUT/load-before.txt"
echo "$SUBS $WINDOW $DUR $ROUNDS" > "$OUT/params.txt"

# ---- fan-out, alternating ----
start_sohub || { note sohub "sohub-server did not start: $(tail -1 "$TMP/sohub.log")"; SOHUB_PID=""; }
if [ "$PEER_OK" = 1 ]; then
    start_peer || { note peer "did not start: $(tail -1 "$TMP/peer.log")"; PEER_OK=0; }
fi
FAN="fanout -r 1 -s $SUBS -w 1 --window $WINDOW -d $DUR"
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) = 1 ]; then order="sohub peer"; else order="peer sohub"; fi
    for who in $order; do
        if [ "$who" = sohub ] && [ -n "$SOHUB_PID" ]; then
            # shellcheck disable=SC2086
            run "fan-sohub-$r" "$SOHUB_URL" "$SOHUB_PID" $FAN --so-prefix "s$r"
        elif [ "$who" = peer ] && [ "$PEER_OK" = 1 ]; then
            # shellcheck disable=SC2086
            run "fan-peer-$r" "$PEER_URL" "$PEER_PID" $FAN --so-prefix "p$r"
        fi
        sleep 1
    done
    r=$((r + 1))
done

# ---- connect, then idle on fresh servers ----
if [ "$CONNECT_N" -gt 0 ]; then
    [ -n "$SOHUB_PID" ] && run connect-sohub "$SOHUB_URL" "$SOHUB_PID" connect -n "$CONNECT_N" \
        -c 100 --src-ips 4 -d 90 --timeout 30
    [ "$PEER_OK" = 1 ] && run connect-peer "$PEER_URL" "$PEER_PID" connect -n "$CONNECT_N" \
        -c 100 --src-ips 4 -d 90 --timeout 30
fi
[ -n "$SOHUB_PID" ] && stop_pid "$SOHUB_PID"
[ "$PEER_OK" = 1 ] && stop_pid "$PEER_PID"
if [ "$IDLE_N" -gt 0 ]; then
    sleep 1
    if start_sohub; then
        run idle-sohub "$SOHUB_URL" "$SOHUB_PID" idle -n "$IDLE_N" -c 100 --src-ips 4 \
            --timeout 30 --settle 3
        stop_pid "$SOHUB_PID"
    fi
    if [ "$PEER_OK" = 1 ] && start_peer; then
        run idle-peer "$PEER_URL" "$PEER_PID" idle -n "$IDLE_N" -c 100 --src-ips 4 \
            --timeout 30 --settle 3
        stop_pid "$PEER_PID"
    fi
fi
uptime > "$OUT/load-after.txt"

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
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
        return ""
subs, win, dur, rounds = text("params.txt").split()
print()
print("load before: " + text("load-before.txt"))
print("load after:  " + text("load-after.txt"))
print("fan-out: 1 object x %s subscribers, 1 writer, window %s, %s s per run, %s rounds alternating (WebSocket, sohub.v1)"
      % (subs, win, dur, rounds))
peer = "ws-broadcast"
if text("peer-version.txt"):
    print("ws-broadcast: bench/peers/ws-broadcast on %s, one process" % text("peer-version.txt"))
for who, label in (("sohub", "sohub-server"), ("peer", peer)):
    if text(who + ".note"):
        print("%s: %s" % (label, text(who + ".note")))
def fan(who):
    runs = []
    for r in range(1, int(rounds) + 1):
        d = load("fan-%s-%d" % (who, r))
        if d:
            runs.append(d)
    return runs
def cell(d):
    s = "%.0f/s" % d["deliveries_per_second"]
    cpu, win_s = d.get("server_cpu_seconds", -1), d.get("window_seconds", 0)
    if cpu is not None and cpu >= 0 and win_s:
        s += " (server %.0f%%, client %.0f%% CPU)" % (100 * cpu / win_s, 100 * d.get("client_cpu_seconds", 0) / win_s)
    if not d.get("ok"):
        s += " FAILED: " + (d.get("first_error") or "see counts")
    return s
med = {}
print("%-14s %s" % ("server", "deliveries/s per run, then median; p50 / p99 delivery latency of the median run"))
for who, label in (("sohub", "sohub-server"), ("peer", peer)):
    runs = fan(who)
    if not runs:
        continue
    for i, d in enumerate(runs):
        print("%-14s run %d: %s" % (label, i + 1, cell(d)))
    vals = sorted(d["deliveries_per_second"] for d in runs)
    m = statistics.median(vals)
    med[who] = m
    mid = min(runs, key=lambda d: abs(d["deliveries_per_second"] - m))
    l = mid.get("delivery_latency_us") or {}
    cpus = [d["delivered"] / d["server_cpu_seconds"] for d in runs if d.get("server_cpu_seconds", 0) > 0]
    per = (", %.0fk per server CPU-s" % (statistics.median(cpus) / 1e3)) if cpus else ""
    print("%-14s median %.0f deliveries/s%s; p50 %.1f / p99 %.1f ms" %
          (label, m, per, l.get("p50", 0) / 1e3, l.get("p99", 0) / 1e3))
if med.get("sohub") and med.get("peer"):
    r = med["sohub"] / med["peer"]
    print("sohub / ws-broadcast (medians): %.2f x (target >= 3: %s)" % (r, "met" if r >= 3 else "MISSED"))
print()
print("%-14s %-30s %s" % ("server", "connect/s (p99 ms)", "RSS KiB per idle connection"))
for who, label in (("sohub", "sohub-server"), ("peer", peer)):
    c, i = load("connect-" + who), load("idle-" + who)
    if not c and not i:
        continue
    cs = "-"
    if c:
        cs = "%.0f (%.1f)" % (c["connect_per_second"], c["connect_latency_us"]["p99"] / 1e3)
        if c["failed"]:
            cs += " %d/%d failed" % (c["failed"], c["expected"])
    isv = "-"
    if i:
        per = i.get("rss_bytes_per_connection", -1)
        isv = "%.2f (%d held)" % (per / 1024.0, i["connected"]) if per >= 0 else "not measured"
    print("%-14s %-30s %s" % (label, cs, isv))
for n in sorted(os.listdir(out)):
    if n.endswith(".json"):
        d = load(n[:-5])
        if d and d.get("first_error"):
            print("  %s: first error: %s" % (n[:-5], d["first_error"]))
PY
