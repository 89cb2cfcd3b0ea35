#!/usr/bin/python3
"""cluster.py [BUILD_DIR] - issue 15's figures: sohub nodes sharing rooms
through Redis (docs/cluster.md), measured with sohub-benchmark.

Starts a redis-server of its own on loopback (APPENDFSYNC: always, the
default, or everysec) and two sohub-server nodes clustered through it, and
a third server with no cluster for the single-node figures of the same run.
Every object is persistent (clustered objects are), every run bounded.

  fan-out    1 object x SUBS subscribers (2,000), 1 writer with a window of
             32, DUR seconds: the single server; node A alone (clustered);
             the subscribers split over A and B (the writer on A).
             Deliveries/s, delivery latency p50 / p99.
  latency    1 object x 100 subscribers, 1 writer at 200 changes/s: on the
             single server, then the subscribers on the writer's node, then on
             the other node.  The differences of the p50s are what the cluster
             and what crossing nodes add.
  writes     durable changes/s through Redis: 8 writers on 8 objects of one
             room, and 100 writers on 100 objects (persist), with Redis' CPU
             (INFO cpu) per change.
  chat       200 users sending private messages to each other (chat): on the
             single server, then spread over A and B (about half of the
             messages cross nodes).
Prints a table with the load average before and after; JSON_DIR keeps the
raw results.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
BENCH = os.path.join(BUILD, "bench", "benchmark", "sohub-benchmark")
SERVER = os.path.join(BUILD, "app", "sohub-server")
SUBS = int(os.environ.get("SUBS", "2000"))
DUR = os.environ.get("DUR", "6")
FSYNC = os.environ.get("APPENDFSYNC", "always")
TMP = tempfile.mkdtemp(prefix="sohub-bench-cluster-")
OUT = os.environ.get("JSON_DIR") or TMP
os.makedirs(OUT, exist_ok=True)
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def redis_cmd(port, *args):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a)
                                                 for a in args)).encode())
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return data.decode("utf-8", "replace")


def redis_cpu(port):
    info = redis_cmd(port, "INFO", "cpu")
    v = {}
    for line in info.split("\r\n"):
        if ":" in line:
            k, x = line.split(":", 1)
            v[k] = x
    return float(v.get("used_cpu_sys", 0)) + float(v.get("used_cpu_user", 0))


def start_server(name, config):
    d = os.path.join(TMP, name)
    os.makedirs(d)
    port = free_port()
    with open(os.path.join(d, "sohub.ini"), "w") as f:
        f.write(config)
    log = open(os.path.join(d, "log"), "ab")
    p = subprocess.Popen([SERVER, "--config", os.path.join(d, "sohub.ini"), "--listen",
                          "127.0.0.1:%d" % port, "--data-dir", os.path.join(d, "data")],
                         stdout=log, stderr=log)
    procs.append(p)
    if not wait_port(port):
        sys.exit("cluster.py: %s did not start (log in %s)" % (name, d))
    return port, p.pid, os.path.join(d, "log")


def bench(name, port, *args):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        subprocess.run(["timeout", "300", BENCH, "-u", "rtmp://127.0.0.1:%d/bench/r1" % port] +
                       list(args) + ["--json", "-q"], stdout=f, stderr=subprocess.DEVNULL)
    try:
        return json.load(open(path))
    except ValueError:
        return {}


def lat(d, key, q):
    v = (d.get(key) or {}).get(q)
    return v / 1000.0 if isinstance(v, (int, float)) else float("nan")


def main():
    for f in (BENCH, SERVER):
        if not os.access(f, os.X_OK):
            sys.exit("cluster.py: %s is missing: build first" % f)
    if not shutil.which("redis-server"):
        sys.exit("cluster.py: redis-server is needed (Debian package redis-server)")
    load0 = open("/proc/loadavg").read().split()[:3]
    rport = free_port()
    rdir = os.path.join(TMP, "redis")
    os.makedirs(rdir)
    rlog = open(os.path.join(rdir, "log"), "ab")
    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", rdir,
         "--save", "", "--appendonly", "yes", "--appendfsync", FSYNC], stdout=rlog,
        stderr=rlog))
    if not wait_port(rport):
        sys.exit("cluster.py: redis-server did not start")
    # a replica of it, for the writes acknowledged with [cluster] wait_replicas = 1
    qport = free_port()
    qdir = os.path.join(TMP, "replica")
    os.makedirs(qdir)
    qlog = open(os.path.join(qdir, "log"), "ab")
    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(qport), "--bind", "127.0.0.1", "--dir", qdir,
         "--save", "", "--appendonly", "yes", "--appendfsync", FSYNC, "--replicaof",
         "127.0.0.1", str(rport)], stdout=qlog, stderr=qlog))
    if not wait_port(qport):
        sys.exit("cluster.py: the replica did not start")
    common = ("[server]\nmax_connections = 19000\nmax_connections_per_ip = 19000\n"
              "so_max_updates_per_sec = 0\nlog_level = warn\n[app *]\nchat_rate = 0\n")
    clustered = common + "[cluster]\nredis = 127.0.0.1:%d\n" % rport
    single, single_pid, _ = start_server("single", common)
    a, a_pid, a_log = start_server("nodeA", clustered + "node = A\n")
    b, b_pid, b_log = start_server("nodeB", clustered + "node = B\n")
    wport, w_pid, w_log = start_server("nodeW", clustered + "node = W\nwait_replicas = 1\n")
    end = time.monotonic() + 10
    while time.monotonic() < end and not all(
            "up: clustered" in open(lg, errors="replace").read() for lg in (a_log, b_log,
                                                                             w_log)):
        time.sleep(0.1)
    while time.monotonic() < end and "master_link_status:up" not in str(
            redis_cmd(qport, "INFO", "replication")):
        time.sleep(0.1)
    fan = ["fanout", "-s", str(SUBS), "-w", "1", "--window", "32", "-P", "2", "-d", DUR,
           "--persistent"]
    res = {}
    res["fan_single"] = bench("fan-single", single, *fan, "--so-prefix", "fs",
                              "--pid", str(single_pid))
    res["fan_a"] = bench("fan-a", a, *fan, "--so-prefix", "fa", "--pid", str(a_pid))
    res["fan_ab"] = bench("fan-ab", a, *fan, "--so-prefix", "fab", "--sub-ports",
                          "%d,%d" % (a, b))
    paced = ["fanout", "-s", "100", "-w", "1", "--rate", "200", "-d", DUR, "--persistent"]
    res["lat_single"] = bench("lat-single", single, *paced, "--so-prefix", "l1")
    res["lat_same"] = bench("lat-same", a, *paced, "--so-prefix", "ls")
    res["lat_cross"] = bench("lat-cross", a, *paced, "--so-prefix", "lc", "--sub-ports",
                             str(b))
    for w in (8, 100):
        c0 = redis_cpu(rport)
        d = bench("persist-%d" % w, a, "persist", "-w", str(w), "-d", DUR, "--so-prefix",
                  "p%d" % w)
        c1 = redis_cpu(rport)
        n = d.get("acked") or 0
        d["_redis_cpu_s"] = c1 - c0
        d["_changes"] = n
        res["persist_%d" % w] = d
    c0 = redis_cpu(rport)
    d = bench("persist-rooms", a, "persist", "-w", "100", "-r", "100", "-d", DUR,
              "--so-prefix", "pr")
    d["_redis_cpu_s"] = redis_cpu(rport) - c0
    d["_changes"] = d.get("acked") or 0
    res["persist_rooms"] = d
    c0 = redis_cpu(rport)
    d = bench("persist-wait", wport, "persist", "-w", "100", "-d", DUR, "--so-prefix", "pw")
    d["_redis_cpu_s"] = redis_cpu(rport) - c0
    d["_changes"] = d.get("acked") or 0
    res["persist_wait"] = d
    chat = ["chat", "-U", "200", "-d", DUR]
    res["chat_single"] = bench("chat-single", single, *chat)
    res["chat_ab"] = bench("chat-ab", a, *chat, "--sub-ports", "%d,%d" % (a, b))
    load1 = open("/proc/loadavg").read().split()[:3]

    print("sohub cluster figures (redis appendfsync %s), load %s -> %s"
          % (FSYNC, " ".join(load0), " ".join(load1)))
    for k, label in (("fan_single", "fan-out, one server, no cluster"),
                     ("fan_a", "fan-out, node A (clustered)"),
                     ("fan_ab", "fan-out, subscribers over A and B")):
        d = res[k]
        print("  %-36s %10.0f deliveries/s  latency p50 %.2f / p99 %.2f ms  (%s)"
              % (label, d.get("deliveries_per_second", 0),
                 lat(d, "delivery_latency_us", "p50"), lat(d, "delivery_latency_us", "p99"),
                 "ok" if d.get("ok") else "NOT ok: %s" % d.get("first_error")))
    for k, label in (("lat_single", "200 changes/s, one server, no cluster"),
                     ("lat_same", "200 changes/s, subscribers on A"),
                     ("lat_cross", "200 changes/s, subscribers on B")):
        d = res[k]
        print("  %-36s latency p50 %.2f / p99 %.2f ms  (%s)"
              % (label, lat(d, "delivery_latency_us", "p50"),
                 lat(d, "delivery_latency_us", "p99"), "ok" if d.get("ok") else "NOT ok: %s" % d.get("first_error")))
    p50 = {k: lat(res[k], "delivery_latency_us", "p50") for k in ("lat_single", "lat_same",
                                                                   "lat_cross")}
    print("  crossing nodes adds %.2f ms at p50 (B against A); the cluster adds %.2f ms "
          "(A against the single server)" % (p50["lat_cross"] - p50["lat_same"],
                                             p50["lat_same"] - p50["lat_single"]))
    for k, label in (("persist_8", "writes, 8 writers on 8 objects"),
                     ("persist_100", "writes, 100 writers on 100 objects"),
                     ("persist_rooms", "the same, in 100 rooms"),
                     ("persist_wait", "the same, wait_replicas = 1")):
        d = res[k]
        rate = d.get("acked_per_second") or 0
        n = d["_changes"]
        per = d["_redis_cpu_s"] / n * 1e6 if n else float("nan")
        print("  %-36s %10.0f durable changes/s  p50 %.2f ms  Redis %.1f us CPU per change"
              % (label, rate, lat(d, "ack_latency_us", "p50"), per))
    for k, label in (("chat_single", "private messages, one server"),
                     ("chat_ab", "private messages, users over A and B")):
        d = res[k]
        print("  %-36s %10.0f messages/s  delivery p50 %.2f / p99 %.2f ms  (%s)"
              % (label, d.get("deliveries_per_second") or 0,
                 lat(d, "delivery_latency_us", "p50"), lat(d, "delivery_latency_us", "p99"),
                 "ok" if d.get("ok") else "NOT ok: %s" % d.get("first_error")))


try:
    main()
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    if not os.environ.get("JSON_DIR"):
        shutil.rmtree(TMP, ignore_errors=True)
