#!/usr/bin/env bash
# test_cli.sh - sohub-cli as a client of the real sohub-server: shared
# object commands (get, watch, set, remove, send, --persistent, --amf3),
# call, and the failures a script must be able to tell apart (exit 1 with
# a clear message: connection refused, connect rejected with the server's
# description, time-out, bad JSON, refused write; exit 2 for usage).
# Needs $SOHUB_SERVER and $SOHUB_CLI.  Prints TAP.
set -u
SERVER=${SOHUB_SERVER:?}
CLI=${SOHUB_CLI:?}
T=$(mktemp -d /tmp/sohub-cli-test.XXXXXX)
n=0
fails=0
# A TAP line is one line: newlines in a description (captured output) become " | ".
ok() { local d="$*"; n=$((n + 1)); echo "ok $n - ${d//$'\n'/ | }"; }
notok() { local d="$*"; n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - ${d//$'\n'/ | }"; }
check() { # check "description" command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else notok "$d"; fi
}

cat > "$T/sohub.ini" <<'EOF'
[app open]
[app locked]
auth = token
secret = cli-test-secret
[app ro]
write_access =
EOF
"$SERVER" --listen 127.0.0.1:0 --port-file "$T/port" --data-dir "$T/data" \
    --config "$T/sohub.ini" 2> "$T/server.log" &
SPID=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.05; done
PORT=$(cat "$T/port" 2>/dev/null)
cleanup() {
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
if [ -z "$PORT" ]; then
    echo "not ok 1 - server did not start"; cat "$T/server.log"; exit 1
fi
U="rtmp://127.0.0.1:$PORT/open"
c() { timeout 20 "$CLI" -u "$U" "$@"; }

# --- shared objects
out=$(c so set --persistent doc title '"hello"'; echo "rc=$?")
check "so set exits 0" [ "$out" = "rc=0" ]
out=$(c so set --persistent doc n '{"$amf":"int","value":7}' && c so get --persistent doc)
check "so get prints the slots as JSON ($out)" [ "$out" = '{"title":"hello","n":{"$amf":"int","value":7}}' ]
out=$(c --amf3 so get --persistent doc)
check "the same object read by an AMF3 client ($out)" [ "$out" = '{"title":"hello","n":{"$amf":"int","value":7}}' ]
out=$(c --amf3 so set --persistent doc b '{"$amf":"bytes","hex":"00ff"}' && c so get --persistent doc)
check "an AMF3-only value written with --amf3, read back by AMF0 ($out)" \
    [ "$out" = '{"title":"hello","n":{"$amf":"int","value":7},"b":{"$amf":"bytes","hex":"00ff"}}' ]
out=$(c so remove --persistent doc b && c so get --persistent doc)
check "so remove" [ "$out" = '{"title":"hello","n":{"$amf":"int","value":7}}' ]
out=$(c so get doc 2>&1; echo "rc=$?")
check "temporary use of a persistent object: exit 1 naming BadPersistence" \
    grep -q "BadPersistence" <<< "$out"
check "  ... with status 1" grep -q "rc=1" <<< "$out"

c so watch --persistent doc --count 6 > "$T/watch.out" 2>&1 &
WPID=$!
for _ in $(seq 1 100); do grep -q '"event":"use"' "$T/watch.out" 2>/dev/null && break; sleep 0.05; done
c so set --persistent doc title '"changed"'
c so send --persistent doc greet '"hi"' 42
wait "$WPID"
wrc=$?
check "so watch --count 6 exits 0 by itself" [ "$wrc" = 0 ]
check "watch: use line" grep -q '^{"event":"use","name":"doc"' "$T/watch.out"
check "watch: the change as one JSON line" \
    grep -q '"event":"change","name":"doc","version":[0-9]*,"key":"title","value":"changed"}' "$T/watch.out"
check "watch: the message with its arguments" \
    grep -q '"event":"message","name":"doc","version":[0-9]*,"handler":"greet","args":\["hi",42\]}' "$T/watch.out"

start=$(date +%s%N)
c so watch tmp --timeout 1 > /dev/null 2>&1
wrc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "so watch --timeout 1 ends with 0 after about a second ($ms ms)" [ "$wrc" = 0 -a "$ms" -ge 900 -a "$ms" -lt 5000 ]

# --- call
out=$(c call echo '{"a":[1,true,null]}')
check "call echo prints the _result ($out)" [ "$out" = '{"a":[1,true,null]}' ]
out=$(c call no.such.method 2>/dev/null; echo "rc=$?")
check "call of an unknown method prints the _error and exits 1" \
    grep -q '"code":"NetConnection.Call.Failed".*rc=1' <<< "$(tr '\n' ' ' <<< "$out")"

# --- failures
out=$(c so set doc k 'not json' 2>&1; echo "rc=$?")
check "bad JSON: exit 1 and a message" grep -q "not valid JSON" <<< "$out"
check "  ... status 1" grep -q "rc=1" <<< "$out"
out=$(timeout 20 "$CLI" -u rtmp://127.0.0.1:1/x call echo 1 2>&1; echo "rc=$?")
check "connection refused: exit 1 and a message ($out)" grep -q "Connection refused" <<< "$out"
out=$(timeout 20 "$CLI" -u "rtmp://127.0.0.1:$PORT/locked" --user alice call echo 1 2>&1; echo "rc=$?")
check "connect rejected: the server's description is shown ($out)" \
    grep -q "connect rejected (NetConnection.Connect.Rejected): Missing token" <<< "$out"
tok=$(timeout 20 "$CLI" token --app locked --user alice --secret cli-test-secret)
out=$(timeout 20 "$CLI" -u "rtmp://127.0.0.1:$PORT/locked" --user alice --token "$tok" call echo '"in"')
check "with a token from sohub-cli token the call goes through ($out)" [ "$out" = '"in"' ]
out=$(timeout 20 "$CLI" -u "rtmp://127.0.0.1:$PORT/ro" so set x k 1 2>&1; echo "rc=$?")
check "write refused by write_access: NoWriteAccess, exit 1" \
    grep -q "NoWriteAccess.*rc=1" <<< "$(tr '\n' ' ' <<< "$out")"
# A listener that accepts and never answers: the time-out must hit.
python3 - "$T/silent.port" <<'EOF' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
c, _ = s.accept(); time.sleep(5)
EOF
PYPID=$!
for _ in $(seq 1 100); do [ -s "$T/silent.port" ] && break; sleep 0.05; done
start=$(date +%s%N)
out=$(timeout 20 "$CLI" -u "rtmp://127.0.0.1:$(cat "$T/silent.port")/x" --timeout 1 call echo 1 2>&1; echo "rc=$?")
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "--timeout 1 against a silent server: exit 1 after about a second ($ms ms: $out)" \
    grep -q "no answer to connect.*rc=1" <<< "$(tr '\n' ' ' <<< "$out")"
check "  ... in time" [ "$ms" -lt 4000 ]
kill "$PYPID" 2>/dev/null
wait "$PYPID" 2>/dev/null
out=$(timeout 20 "$CLI" so 2>&1; echo "rc=$?")
check "usage errors exit 2" grep -q "rc=2" <<< "$out"
out=$(timeout 20 "$CLI" -u bogus call echo 1 2>&1; echo "rc=$?")
check "a bad URL: exit 1 with a message" grep -q "must start with rtmp://.*rc=1" <<< "$(tr '\n' ' ' <<< "$out")"

kill -TERM "$SPID"
wait "$SPID"
src=$?
check "server exits 0 (status $src)" [ "$src" = 0 ]
echo "1..$n"
[ "$fails" = 0 ]
