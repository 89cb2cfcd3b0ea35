#!/bin/sh
# ab.sh - two sohub-server binaries side by side on run.sh's RTMP connect
# and one-object fan-out, alternating, several rounds, medians: is a
# change within the noise of the machine?  When the first server listens
# for WebSocket, its WebSocket fan-out runs in every round too.
#
# usage: sh bench/ab.sh SERVER_A SERVER_B [BUILD_DIR]
#        (A is usually build/app/sohub-server, B an older binary)
# env:   ROUNDS    (default 3)      rounds; the order A/B flips every round
#        CONN_N    (default 10000)  connections of the connect step (run.sh's)
#        SUBS      (default 2000)   fan-out subscribers of the one object
#        WINDOW    (default 32)     changes outstanding for the one writer
#        DUR       (default 6)      seconds per fan-out run
#        JSON_DIR                   keep every raw JSON result here
#
# Both servers run on 127.0.0.1 for the whole session with run.sh's lifted
# limits; the benchmark (BUILD_DIR's sohub-benchmark) is the same for both.
set -u

[ $# -ge 2 ] || { echo "usage: sh bench/ab.sh SERVER_A SERVER_B [BUILD_DIR]" >&2; exit 2; }
A=$1 B=$2
BUILD=${3:-build}
ROUNDS=${ROUNDS:-3}
CONN_N=${CONN_N:-10000}
SUBS=${SUBS:-2000}
WINDOW=${WINDOW:-32}
DUR=${DUR:-6}
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
TMP=$(mktemp -d /tmp/sohub-ab.XXXXXX)
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

die() { echo "ab.sh: $*" >&2; exit 1; }
[ -x "$BENCH" ] || die "no $BENCH (build first: ninja -C $BUILD)"
[ -x "$A" ] || die "$A is not an executable"
[ -x "$B" ] || die "$B is not an executable"
command -v python3 >/dev/null || die "python3 is needed for the table"
if ! [ "$ROUNDS" -ge 1 ] 2>/dev/null || [ "$ROUNDS" -gt 20 ]; then die "ROUNDS must be 1..20"; fi
mkdir -p "$OUT"

# start NAME BINARY: RTMP (and WebSocket when the binary has http_listen);
# sets NAME_pid, NAME_rtmp, NAME_ws (empty without WebSocket)
start() {
    name=$1 bin=$2
    mkdir -p "$TMP/$name-data"
    for extra in "--set http_listen=127.0.0.1:0" ""; do
        rm -f "$TMP/$name.port"
        # shellcheck disable=SC2086
        "$bin" --listen 127.0.0.1:0 --port-file "$TMP/$name.port" --data-dir "$TMP/$name-data" \
            --log-level error --set max_connections=19000 --set max_connections_per_ip=19000 \
            --set so_max_updates_per_sec=0 $extra > "$TMP/$name.log" 2>&1 &
        pid=$!
        i=0
        while [ ! -s "$TMP/$name.port" ] && [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
            sleep 0.1
            i=$((i + 1))
        done
        if [ -s "$TMP/$name.port" ]; then
            PIDS="$PIDS $pid"
            eval "${name}_pid=$pid"
            eval "${name}_rtmp=rtmp://127.0.0.1:$(head -1 "$TMP/$name.port")/bench"
            hp=$(sed -n 's/^http //p' "$TMP/$name.port")
            eval "${name}_ws=${hp:+ws://127.0.0.1:$hp/ws/bench}"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    return 1
}

bench() {
    name=$1 url=$2
    shift 2
    echo "== $name: $*" >&2
    timeout 300 "$BENCH" -u "$url" "$@" --json -q > "$OUT/$name.json" 2> "$OUT/$name.err"
}

start a "$A" || die "$A did not start: $(tail -2 "$TMP/a.log")"
start b "$B" || die "$B did not start: $(tail -2 "$TMP/b.log")"
printf '%s\n%s\n%s %s %s %s %s\n' "$A" "$B" "$ROUNDS" "$CONN_N" "$SUBS" "$WINDOW" "$DUR" > "$OUT/params.txt"
uptime > "$OUT/load-before.txt"
FAN="fanout -r 1 -s $SUBS -w 1 --window $WINDOW -P 2 -d $DUR"
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for s in $order; do
        eval "url=\$${s}_rtmp"
        eval "pid=\$${s}_pid"
        bench "connect-$s-$r" "$url" connect -n "$CONN_N" -c 100 -P 2 --src-ips 4 -d 60 --pid "$pid"
        sleep 1
    done
    for s in $order; do
        eval "url=\$${s}_rtmp pid=\$${s}_pid ws=\$${s}_ws"
        # shellcheck disable=SC2086
        bench "fanout-$s-$r" "$url" $FAN --so-prefix "f$s$r" --pid "$pid"
        if [ -n "$ws" ]; then
            # shellcheck disable=SC2086
            bench "fanout-ws-$s-$r" "$ws" $FAN --so-prefix "w$s$r" --pid "$pid"
        fi
    done
    uptime > "$OUT/load-$r.txt"
    r=$((r + 1))
done
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
a, b, params = text("params.txt").split("\n")
rounds, conn_n, subs, win, dur = params.split()
rounds = int(rounds)
print()
print("A: %s\nB: %s" % (a, b))
print("load before: " + text("load-before.txt"))
for r in range(1, rounds + 1):
    print("after round %d: %s" % (r, text("load-%d.txt" % r)))
def series(kind, s, key):
    v = []
    for r in range(1, rounds + 1):
        d = load("%s-%s-%d" % (kind, s, r))
        if d:
            v.append((d.get(key, 0), d))
    return v
def line(label, kind, key, unit):
    cols = []
    meds = {}
    for s in ("a", "b"):
        v = series(kind, s, key)
        if not v:
            cols.append("-")
            continue
        vals = [x for x, _ in v]
        meds[s] = statistics.median(vals)
        bad = sum(1 for _, d in v if not d.get("ok"))
        cols.append("%s | median %.0f%s" % (" ".join("%.0f" % x for x in vals), meds[s],
                                             (" (%d not ok)" % bad) if bad else ""))
    ratio = ("%.2f" % (meds["a"] / meds["b"])) if meds.get("a") and meds.get("b") else "-"
    print("%-22s A: %-44s B: %-44s A/B %s" % (label, cols[0], cols[1], ratio))
print("%s connections (connect), 1 x %s subscribers, window %s, %s s (fan-out); runs in order, then the median" % (conn_n, subs, win, dur))
line("connect/s (RTMP)", "connect", "connect_per_second", "/s")
line("fan-out/s (RTMP)", "fanout", "deliveries_per_second", "/s")
if series("fanout-ws", "a", "deliveries_per_second") or series("fanout-ws", "b", "deliveries_per_second"):
    line("fan-out/s (WebSocket)", "fanout-ws", "deliveries_per_second", "/s")
    wa = [x for x, _ in series("fanout-ws", "a", "deliveries_per_second")]
    ra = [x for x, _ in series("fanout", "a", "deliveries_per_second")]
    if wa and ra:
        print("A: WebSocket / RTMP fan-out (medians): %.2f (target >= 0.7)" % (statistics.median(wa) / statistics.median(ra)))
def cpu_line(kind):
    for s in ("a", "b"):
        v = series(kind, s, "deliveries_per_second")
        per = [d["delivered"] / d["server_cpu_seconds"] for _, d in v if d.get("server_cpu_seconds", 0) > 0]
        share = [d["server_cpu_seconds"] / d["window_seconds"] for _, d in v if d.get("window_seconds")]
        cl = [d.get("client_cpu_seconds", 0) / d["window_seconds"] for _, d in v if d.get("window_seconds")]
        if per:
            print("  %s %-10s median %.0fk deliveries per server CPU-s; server %.0f%%, client %.0f%% of one core" %
                  (s.upper(), kind, statistics.median(per) / 1e3, 100 * statistics.median(share), 100 * statistics.median(cl)))
cpu_line("fanout")
cpu_line("fanout-ws")
for s in ("a", "b"):
    v = series("connect", s, "connect_per_second")
    per = [d["server_cpu_seconds"] * 1e6 / d["connected"] for _, d in v if d.get("server_cpu_seconds", 0) > 0 and d.get("connected")]
    if per:
        print("  %s connect    median %.0f us of server CPU per connection" % (s.upper(), statistics.median(per)))
for n in sorted(os.listdir(out)):
    if n.endswith(".json"):
        d = load(n[:-5])
        if d and d.get("first_error"):
            print("  %s: first error: %s" % (n[:-5], d["first_error"]))
PY
