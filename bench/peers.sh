#!/bin/sh
# peers.sh - connect and idle figures of sohub-server, nginx-rtmp and
# node-media-server, measured by sohub-benchmark on this machine, one table.
#
# usage: sh bench/peers.sh [BUILD_DIR]
# env:   CONNECT_N (default 10000)  connections for the connect scenario
#        IDLE_N    (default 15000)  connections held for the idle scenario
#        CONC      (default 100)    connections in flight
#        PROCS     (default 2)      benchmark worker processes
#        SOHUB_APP (default bench)  app path used against sohub-server
#        JSON_OUT  (optional)       write the raw results as JSON to this file
#
# Every server listens on 127.0.0.1 only.  Each step has a time bound; a
# peer that cannot be started (node-media-server not installable, nginx's
# rtmp module missing) is reported as such in the table.  node-media-server
# is installed with npm into bench/.cache (ignored by git).
set -u

BUILD=${1:-build}
CONNECT_N=${CONNECT_N:-10000}
IDLE_N=${IDLE_N:-15000}
CONC=${CONC:-100}
PROCS=${PROCS:-2}
SOHUB_APP=${SOHUB_APP:-bench}
NMS_VERSION=2.7.4
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH="$BUILD/bench/benchmark/sohub-benchmark"
SERVER="$BUILD/app/sohub-server"
TMP=$(mktemp -d /tmp/sohub-peers.XXXXXX)
PIDS=""

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "peers.sh: $*" >&2; exit 1; }
[ -x "$BENCH" ] || die "no $BENCH (build first: ninja -C $BUILD)"
command -v python3 >/dev/null || die "python3 is needed to print the table"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT: up to 10 s for something to accept on 127.0.0.1:PORT
wait_port() {
    python3 - "$1" <<'PY'
import socket, sys, time
end = time.time() + 10
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# run_peer NAME URL PID: connect then idle, results in $TMP/NAME.*.json
run_peer() {
    name=$1 url=$2 pid=$3
    echo "== $name: connect x $CONNECT_N" >&2
    timeout 120 "$BENCH" -u "$url" connect -n "$CONNECT_N" -c "$CONC" -P "$PROCS" \
        --src-ips 4 -d 90 --timeout 30 --json -q > "$TMP/$name.connect.json" 2> "$TMP/$name.connect.err"
    sleep 1
    echo "== $name: idle x $IDLE_N" >&2
    timeout 180 "$BENCH" -u "$url" idle -n "$IDLE_N" -c "$CONC" -P "$PROCS" \
        --src-ips 4 --timeout 30 --settle 3 --pid "$pid" --json -q \
        > "$TMP/$name.idle.json" 2> "$TMP/$name.idle.err"
}

note() { printf '%s\n' "$2" > "$TMP/$1.note"; }

uptime > "$TMP/load-before.txt"

# ---- sohub-server ----
if [ -x "$SERVER" ]; then
    mkdir -p "$TMP/sohub-data"
    "$SERVER" --listen 127.0.0.1:0 --port-file "$TMP/sohub.port" --data-dir "$TMP/sohub-data" \
        --log-level error --set max_connections=19000 --set max_connections_per_ip=19000 \
        > "$TMP/sohub.log" 2>&1 &
    SPID=$!
    PIDS="$PIDS $SPID"
    i=0
    while [ ! -s "$TMP/sohub.port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -s "$TMP/sohub.port" ]; then
        run_peer sohub "rtmp://127.0.0.1:$(cat "$TMP/sohub.port")/$SOHUB_APP" "$SPID"
    else
        note sohub "sohub-server did not start (see its log)"
    fi
    kill "$SPID" 2>/dev/null
else
    note sohub "not built ($SERVER missing)"
fi

# ---- nginx + libnginx-mod-rtmp ----
NGX_MOD=/usr/lib/nginx/modules/ngx_rtmp_module.so
if command -v nginx >/dev/null && [ -f "$NGX_MOD" ]; then
    NPORT=$(free_port)
    mkdir -p "$TMP/nginx"
    cat > "$TMP/nginx/nginx.conf" <<NGX
load_module $NGX_MOD;
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log error;
worker_rlimit_nofile 19500;
events { worker_connections 19000; }
rtmp { server { listen 127.0.0.1:$NPORT; application app { live on; } } }
NGX
    nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" > "$TMP/nginx/stdout" 2>&1 &
    NGPID=$!
    PIDS="$PIDS $NGPID"
    if wait_port "$NPORT"; then
        run_peer nginx-rtmp "rtmp://127.0.0.1:$NPORT/app" "$NGPID"
    else
        note nginx-rtmp "nginx did not start: $(tail -1 "$TMP/nginx/error.log" 2>/dev/null)"
    fi
    kill "$NGPID" 2>/dev/null
else
    note nginx-rtmp "not installed (nginx + libnginx-mod-rtmp)"
fi

# ---- node-media-server ----
NMS_DIR="$HERE/.cache/nms"
if command -v node >/dev/null; then
    if [ ! -f "$NMS_DIR/node_modules/node-media-server/package.json" ]; then
        mkdir -p "$NMS_DIR"
        [ -f "$HERE/.cache/.gitignore" ] || printf '*\n' > "$HERE/.cache/.gitignore"
        echo "== installing node-media-server@$NMS_VERSION with npm" >&2
        (cd "$NMS_DIR" && timeout 180 npm install --no-audit --no-fund --loglevel=error \
            "node-media-server@$NMS_VERSION") > "$TMP/npm.log" 2>&1
    fi
    if [ -f "$NMS_DIR/node_modules/node-media-server/package.json" ]; then
        MPORT=$(free_port)
        # node-media-server 2.x listens on every interface; this wrapper
        # pins its listening sockets to 127.0.0.1.
        cat > "$TMP/nms.js" <<JS
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...a) {
  if (typeof a[0] === 'number') a.splice(1, 0, '127.0.0.1');
  return listen.apply(this, a);
};
const NodeMediaServer = require('$NMS_DIR/node_modules/node-media-server');
new NodeMediaServer({ logType: 0, rtmp: { port: $MPORT, chunk_size: 4096,
  gop_cache: false, ping: 60, ping_timeout: 60 } }).run();
JS
        node "$TMP/nms.js" > "$TMP/nms.log" 2>&1 &
        MPID=$!
        PIDS="$PIDS $MPID"
        if wait_port "$MPORT"; then
            run_peer node-media-server "rtmp://127.0.0.1:$MPORT/live" "$MPID"
        else
            note node-media-server "did not start: $(tail -1 "$TMP/nms.log")"
        fi
        kill "$MPID" 2>/dev/null
    else
        note node-media-server "could not be installed with npm ($(tail -1 "$TMP/npm.log" 2>/dev/null))"
    fi
else
    note node-media-server "node is not installed"
fi

uptime > "$TMP/load-after.txt"

python3 - "$TMP" "$CONNECT_N" "$IDLE_N" "${JSON_OUT:-}" <<'PY'
import json, os, sys
tmp, cn, idn, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
peers = ["sohub", "nginx-rtmp", "node-media-server"]
rows, raw = [], {}
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None
for p in peers:
    note = os.path.join(tmp, p + ".note")
    if os.path.exists(note):
        rows.append((p, open(note).read().strip()))
        raw[p] = {"note": open(note).read().strip()}
        continue
    c = load(os.path.join(tmp, p + ".connect.json"))
    i = load(os.path.join(tmp, p + ".idle.json"))
    raw[p] = {"connect": c, "idle": i}
    def cell_connect():
        if not c:
            return "no result", "-"
        rate = "%.0f" % c["connect_per_second"]
        if c["failed"]:
            rate += " (%d/%d failed)" % (c["failed"], c["expected"])
        return rate, "%.1f" % (c["connect_latency_us"]["p99"] / 1000.0)
    def cell_idle():
        if not i:
            return "no result"
        if i["rss_bytes_per_connection"] < 0:
            return "not measured"
        s = "%.1f" % (i["rss_bytes_per_connection"] / 1024.0)
        if i["connected"] != i["expected"]:
            s += " (%d/%d held)" % (i["connected"], i["expected"])
        return s
    rate, p99 = cell_connect()
    rows.append((p, rate, p99, cell_idle()))
print()
for f in ("load-before.txt", "load-after.txt"):
    try:
        print("%s %s" % (f[:-4].replace("-", " ") + ":", open(os.path.join(tmp, f)).read().strip()))
    except OSError:
        pass
print("connect: %s connections; idle: %s connections held (loopback, this machine)" % (cn, idn))
hdr = ("server", "connect/s", "p99 connect ms", "RSS KiB / idle conn")
w = [22, 26, 16, 22]
print("".join(h.ljust(n) for h, n in zip(hdr, w)))
for r in rows:
    if len(r) == 2:
        print(r[0].ljust(w[0]) + r[1])
    else:
        print("".join(str(x).ljust(n) for x, n in zip(r, w)))
sc, nc = (raw.get("sohub") or {}).get("connect"), (raw.get("nginx-rtmp") or {}).get("connect")
if sc and nc and nc.get("connect_per_second", 0) > 0:
    r = sc["connect_per_second"] / nc["connect_per_second"]
    print("sohub / nginx-rtmp connect/s: %.2f (target >= 2: %s)" % (r, "met" if r >= 2 else "MISSED"))
si, ni = (raw.get("sohub") or {}).get("idle"), (raw.get("nginx-rtmp") or {}).get("idle")
if si and ni and si.get("rss_bytes_per_connection", -1) >= 0 and ni.get("rss_bytes_per_connection", -1) >= 0:
    a, b = si["rss_bytes_per_connection"], ni["rss_bytes_per_connection"]
    print("idle RSS per connection: sohub %.2f KiB, nginx-rtmp %.2f KiB (target <= 2 KiB and below nginx-rtmp: %s)"
          % (a / 1024.0, b / 1024.0, "met" if a <= 2048 and a < b else "MISSED"))
for p in peers:
    for k in ("connect", "idle"):
        d = raw.get(p, {}).get(k)
        if d and d.get("first_error"):
            print("  %s %s: first error: %s" % (p, k, d["first_error"]))
if out:
    with open(out, "w") as f:
        json.dump(raw, f, indent=1)
PY
