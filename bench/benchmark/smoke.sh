#!/bin/sh
# smoke.sh - functional smoke test of sohub-benchmark (suite 'bench').
# usage: smoke.sh BENCHMARK SOHUB_SERVER RAW_FANOUT
# 1. starts the real sohub-server on 127.0.0.1 port 0 and checks that
#    `sohub-benchmark connect` with 20 connections reports 20 successes;
# 2. starts sohub-raw-fanout and checks that a 1-second fanout run delivers
#    changes that the client parses (the SO path of the tool and the
#    baseline);
# 3. and 4. the same against sohub-server over WebSocket (--transport ws,
#    http_listen on port 0): 20 connects, then a 1-second fanout;
# 5. starts sohub-server with admin_listen and an API key and checks that a
#    1-second `api` run (2 HTTP writers, 5 RTMP subscribers) gets 200
#    answers and deliveries with latencies.  No speed is asserted anywhere.
set -u
BENCH=$1 SERVER=$2 RAW=$3
TMP=$(mktemp -d /tmp/sohub-bench-smoke.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

wait_file() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ -s "$1" ]
}
fail() { echo "not ok - $*"; cat "$TMP"/*.log "$TMP"/*.json 2>/dev/null; exit 1; }

echo "1..5"
mkdir -p "$TMP/data"
"$SERVER" --listen 127.0.0.1:0 --port-file "$TMP/sohub.port" --data-dir "$TMP/data" \
    --set http_listen=127.0.0.1:0 --set so_max_updates_per_sec=0 --log-level warn \
    > "$TMP/sohub.log" 2>&1 &
PIDS="$PIDS $!"
wait_file "$TMP/sohub.port" || fail "sohub-server did not write its port file"
timeout 30 "$BENCH" -u "rtmp://127.0.0.1:$(head -1 "$TMP/sohub.port")/bench" connect \
    -n 20 -c 5 -d 10 --timeout 5 --json -q > "$TMP/connect.json" 2> "$TMP/connect.log"
rc=$?
grep -q '"connected":[[:space:]]*20,' "$TMP/connect.json" || fail "connect: 20 connections expected (rc $rc)"
grep -q '"failed":[[:space:]]*0,' "$TMP/connect.json" || fail "connect: failures reported"
[ $rc -eq 0 ] || fail "connect: exit code $rc"
echo "ok 1 - connect x 20 against sohub-server"

"$RAW" --listen 127.0.0.1:0 --port-file "$TMP/raw.port" > "$TMP/raw.log" 2>&1 &
PIDS="$PIDS $!"
wait_file "$TMP/raw.port" || fail "sohub-raw-fanout did not write its port file"
timeout 30 "$BENCH" -u "rtmp://127.0.0.1:$(cat "$TMP/raw.port")/bench" fanout \
    -r 1 -s 5 -w 1 -d 1 --timeout 5 --json -q > "$TMP/fanout.json" 2> "$TMP/fanout.log"
rc=$?
grep -q '"subscribed":[[:space:]]*6,' "$TMP/fanout.json" || fail "fanout: 6 subscriptions expected"
grep -q '"ok":[[:space:]]*true' "$TMP/fanout.json" || fail "fanout: run not ok"
[ $rc -eq 0 ] || fail "fanout: exit code $rc"
echo "ok 2 - fanout 1 x 5 x 1 against sohub-raw-fanout"

HTTP_PORT=$(sed -n 's/^http //p' "$TMP/sohub.port")
[ -n "$HTTP_PORT" ] || fail "sohub-server wrote no http port"
WS="ws://127.0.0.1:$HTTP_PORT/ws/bench"
timeout 30 "$BENCH" --transport ws -u "$WS" connect \
    -n 20 -c 5 -d 10 --timeout 5 --json -q > "$TMP/ws-connect.json" 2> "$TMP/ws-connect.log"
rc=$?
grep -q '"connected":[[:space:]]*20,' "$TMP/ws-connect.json" || fail "ws connect: 20 connections expected (rc $rc)"
[ $rc -eq 0 ] || fail "ws connect: exit code $rc"
echo "ok 3 - connect x 20 over WebSocket against sohub-server"

timeout 30 "$BENCH" --transport ws -u "$WS" fanout \
    -r 1 -s 5 -w 1 -d 1 --timeout 5 --json -q > "$TMP/ws-fanout.json" 2> "$TMP/ws-fanout.log"
rc=$?
grep -q '"subscribed":[[:space:]]*6,' "$TMP/ws-fanout.json" || fail "ws fanout: 6 subscriptions expected"
grep -q '"ok":[[:space:]]*true' "$TMP/ws-fanout.json" || fail "ws fanout: run not ok"
[ $rc -eq 0 ] || fail "ws fanout: exit code $rc"
echo "ok 4 - fanout 1 x 5 x 1 over WebSocket against sohub-server"

cat > "$TMP/api.ini" <<INI
[server]
admin_listen = 127.0.0.1:0
[api_key smoke]
secret = smoke-key-0123456789
scope = write
INI
mkdir -p "$TMP/data2"
"$SERVER" --config "$TMP/api.ini" --listen 127.0.0.1:0 --port-file "$TMP/api.port" \
    --data-dir "$TMP/data2" --log-level warn > "$TMP/api.log" 2>&1 &
PIDS="$PIDS $!"
i=0
while ! grep -q admin "$TMP/api.port" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
grep -q admin "$TMP/api.port" 2>/dev/null || fail "sohub-server with admin_listen did not start"
timeout 30 "$BENCH" -u "rtmp://127.0.0.1:$(head -1 "$TMP/api.port")/bench/smoke" api \
    --api "http://127.0.0.1:$(sed -n 's/^admin //p' "$TMP/api.port")" --api-key smoke-key-0123456789 \
    -s 5 -w 2 --window 4 -P 2 -d 1 --timeout 5 --json -q > "$TMP/api.json" 2> "$TMP/api.err"
rc=$?
grep -q '"subscribed":[[:space:]]*5,' "$TMP/api.json" || fail "api: 5 subscriptions expected"
grep -q '"ok":[[:space:]]*true' "$TMP/api.json" || fail "api: run not ok"
grep -q '"api_writes_per_second":[[:space:]]*[1-9]' "$TMP/api.json" || fail "api: no write answered"
grep -q '"deliveries_per_second":[[:space:]]*[1-9]' "$TMP/api.json" || fail "api: nothing delivered"
[ $rc -eq 0 ] || fail "api: exit code $rc"
echo "ok 5 - api: 2 HTTP writers x 5 RTMP subscribers against sohub-server"
