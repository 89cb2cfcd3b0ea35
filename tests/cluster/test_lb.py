#!/usr/bin/python3
"""test_lb.py SERVER CLI - three nodes of a cluster behind HAProxy, with
the shipped config (contrib/haproxy/sohub.cfg: addresses, ports and
maxconn rewritten to this test's, nothing else).

Starts its own redis-server, three sohub-server nodes on fixed loopback
ports (RTMP, http_listen, admin_listen) and haproxy on two more, then
checks, with real clients through HAProxy (Python websockets, sohub-cli
over RTMP):
  - HAProxy sees every node ready (its /readyz health check);
  - WebSocket and RTMP clients are spread over the three nodes (leastconn,
    counted by each node's server API);
  - kill -9 of a node: its clients are cut, HAProxy marks it down within
    its check interval, and the clients reconnect through HAProxy to the
    two others;
  - Redis killed: every node's /readyz says why (503), HAProxy takes the
    nodes out; Redis back: the nodes are ready again and new clients get
    in;
  - the killed node restarted on its ports gets new clients again;
  - every node stops cleanly.
TAP on stdout; exit 1 on a failed check, 77 when redis-server or haproxy
is missing (Debian packages redis-server, haproxy: scripts/packages.txt)."""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterutil import Redis, need_redis, node_config  # noqa: E402
from opsutil import (Admin, Server, check, finish, free_port, note, skip_all,  # noqa: E402
                     spawn, wait_for)

import websockets  # noqa: E402

KEY = "lb-test-read-key-0123456789"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = "lb/room"


class Node(Server):
    """A node on fixed ports, so HAProxy can name it and a restart keeps
    them."""

    def __init__(self, binary, redis_port, name):
        self.rtmp, self.http, self.admin = free_port(), free_port(), free_port()
        extra = ("[server]\nhttp_listen = 127.0.0.1:%d\nadmin_listen = 127.0.0.1:%d\n"
                 "[api_key t]\nsecret = %s\nscope = read\n" % (self.http, self.admin, KEY))
        super().__init__(binary, node_config(redis_port, extra, name))

    def start(self, timeout=10.0):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(self.log_path, "ab")
        self.proc = spawn([self.binary, "--config", self.config_path, "--listen",
                           "127.0.0.1:%d" % self.rtmp, "--data-dir", self.data,
                           "--port-file", self.port_file], stdout=self.log, stderr=self.log)
        self.ports = wait_for(self._read_ports, timeout) or {}
        return "rtmp" in self.ports

    def up_lines(self):
        return self.log_text().count("up: clustered")

    def conns(self, transport):
        """Connections of transport in APP on this node (server API)."""
        a = Admin(self.admin, KEY)
        try:
            st, body = a.get("/api/v1/connections?transport=%s&app=lb&limit=1000" % transport)
        except OSError:
            return None
        finally:
            a.close()
        if st != 200:
            return None
        return len(json.loads(body)["connections"])

    def readyz(self):
        a = Admin(self.admin)
        try:
            return a.get("/readyz")
        except OSError:
            return None, b""
        finally:
            a.close()


def haproxy_config(nodes, lb_rtmp, lb_web, sock):
    """contrib/haproxy/sohub.cfg with this test's addresses and ports."""
    text = open(os.path.join(REPO, "contrib", "haproxy", "sohub.cfg")).read()
    text = text.replace("global\n", "global\n    stats socket %s mode 600 level admin\n" % sock, 1)
    # the shipped maxconn needs twice as many file descriptors as this
    # machine allows a process
    text = re.sub(r"\n    maxconn \d+\n", "\n    maxconn 2000\n", text, count=1)
    text = text.replace("bind :1935", "bind 127.0.0.1:%d" % lb_rtmp)
    text = text.replace("bind :8080", "bind 127.0.0.1:%d" % lb_web)
    text = text.replace(" check port 8081", " check")
    for i, n in enumerate(nodes):
        for shipped, port in ((1935, n.rtmp), (8080, n.http)):
            text, k = re.subn(r"server n%d 10\.0\.0\.1%d:%d\n" % (i + 1, i + 1, shipped),
                              "server n%d 127.0.0.1:%d port %d\n" % (i + 1, port, n.admin),
                              text)
            if k != 1:
                raise RuntimeError("contrib/haproxy/sohub.cfg: no line for node %d" % (i + 1))
    return text


def haproxy_status(sock):
    """{(backend, server): status} from HAProxy's stats socket."""
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError:
        return {}
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        f = line.split(",")
        if len(f) > 17 and not line.startswith("#") and f[1] not in ("FRONTEND", "BACKEND"):
            out[(f[0], f[1])] = f[17]
    return out


def servers_up(sock, backend):
    st = haproxy_status(sock)
    return sorted(s for (b, s), v in st.items() if b == backend and v.startswith("UP"))


async def ws_connect(port):
    """A WebSocket client through HAProxy, connected to APP; None if refused."""
    try:
        ws = await asyncio.wait_for(
            websockets.connect("ws://127.0.0.1:%d/ws" % port, subprotocols=["sohub.v1"],
                               open_timeout=5), 6)
        await ws.send(json.dumps({"op": "connect", "id": 1, "app": APP}))
        ans = json.loads(await asyncio.wait_for(ws.recv(), 5))
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException, ValueError):
        return None
    if ans.get("ok") is not True:
        await ws.close()
        return None
    return ws


def counts(nodes, transport):
    return [n.conns(transport) for n in nodes]


async def until(fn, timeout, interval=0.05):
    """wait_for for the scenario: sleeps in the event loop, so the
    WebSocket clients notice their connections closing meanwhile."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= end:
            return v
        await asyncio.sleep(interval)


async def scenario(nodes, redis, cli, lb_rtmp, lb_web, sock):
    check(await until(lambda: servers_up(sock, "sohub_rtmp") == ["n1", "n2", "n3"] and
                   servers_up(sock, "sohub_web") == ["n1", "n2", "n3"], 10),
          "HAProxy sees the three nodes ready (/readyz on their admin ports)")

    # WebSocket clients through HAProxy: two on each node
    wss = [await ws_connect(lb_web) for _ in range(6)]
    check(all(wss), "6 WebSocket clients connected to %s through HAProxy" % APP)
    c = await until(lambda: (lambda v: v if v == [2, 2, 2] else None)(counts(nodes, "ws")), 5)
    check(c == [2, 2, 2], "leastconn spread them: 2 per node (%s)" % counts(nodes, "ws"))

    # RTMP clients through HAProxy: one watcher on each node
    url = "rtmp://127.0.0.1:%d/%s" % (lb_rtmp, APP)
    watchers = []
    for i in range(3):
        watchers.append(subprocess.Popen([cli, "-u", url, "--user", "w%d" % i, "so", "watch",
                                          "board"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        await until(lambda: sum(x or 0 for x in counts(nodes, "rtmp")) == i + 1, 5)
    c = counts(nodes, "rtmp")
    check(c == [1, 1, 1], "3 RTMP watchers (sohub-cli) through HAProxy: one per node (%s)" % c)

    # kill -9 of n2 (index 1): its clients are cut, HAProxy takes it out
    on_n2 = nodes[1]
    t0 = time.monotonic()
    on_n2.proc.kill()
    on_n2.proc.wait(10)
    on_n2.log.close()
    more = await until(lambda: len([ws for ws in wss if ws.closed]) >= 2, 5)
    cut = [ws for ws in wss if ws.closed]
    check(more and len(cut) == 2, "kill -9 of n2: its 2 WebSocket clients were cut (%d)"
          % len(cut))
    down = await until(lambda: servers_up(sock, "sohub_web") == ["n1", "n3"] and
                    servers_up(sock, "sohub_rtmp") == ["n1", "n3"], 5)
    check(down, "HAProxy marked n2 down in %.1f s (check every 500 ms, fall 2)"
          % (time.monotonic() - t0))
    gone = await until(lambda: sum(1 for w in watchers if w.poll() is not None) == 1, 10)
    check(gone, "the RTMP watcher on n2 saw its connection end")
    back = [await ws_connect(lb_web) for _ in cut]
    c = counts([nodes[0], nodes[2]], "ws")
    check(all(back) and c == [3, 3], "the cut clients reconnected through HAProxy to n1 and "
          "n3 (%s)" % c)
    wss = [ws for ws in wss if not ws.closed] + back

    # Redis away: no node is ready, HAProxy takes them all out
    redis.kill()
    st = await until(lambda: all(n.readyz()[0] == 503 for n in (nodes[0], nodes[2])) and
                  [n.readyz() for n in (nodes[0], nodes[2])], 5)
    check(st and all(b"Redis link" in body for _, body in st),
          "Redis killed: /readyz of n1 and n3 answers 503 and says why (%r)"
          % [b for _, b in (st or [])])
    check(await until(lambda: servers_up(sock, "sohub_web") == [], 5),
          "HAProxy took the nodes out")
    refused = await ws_connect(lb_web)
    check(refused is None, "a new client is not let in meanwhile")
    check(redis.start(), "redis-server started again")
    ready = await until(lambda: all(n.readyz()[0] == 200 for n in (nodes[0], nodes[2])), 10)
    check(ready and await until(lambda: servers_up(sock, "sohub_web") == ["n1", "n3"], 5),
          "the nodes reconnected to Redis, are ready and back in HAProxy")
    late = await ws_connect(lb_web)
    check(late is not None, "a new client gets in again")
    if late:
        wss.append(late)

    # n2 comes back on its ports and gets the next clients (fewest)
    ups = on_n2.up_lines()
    check(on_n2.start(), "n2 restarted on its ports")
    check(await until(lambda: on_n2.up_lines() > ups, 10) and
          await until(lambda: servers_up(sock, "sohub_web") == ["n1", "n2", "n3"], 10),
          "HAProxy marked n2 up again")
    fresh = [await ws_connect(lb_web) for _ in range(2)]
    c = counts(nodes, "ws")
    check(all(fresh) and c and c[1] == 2, "the next 2 clients went to n2, the least loaded "
          "(%s)" % c)
    wss += [ws for ws in fresh if ws]

    for ws in wss:
        await ws.close()
    for w in watchers:
        if w.poll() is None:
            w.terminate()
        w.wait(10)


def main():
    need_redis()
    haproxy = shutil.which("haproxy")
    if not haproxy:
        skip_all("haproxy is not installed")
    binary, cli = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="sohub-lb-")
    redis = Redis()
    check(redis.start(), "redis-server started on 127.0.0.1:%d" % redis.port)
    nodes = [Node(binary, redis.port, "n%d" % (i + 1)) for i in range(3)]
    check(all(n.start() for n in nodes), "three nodes started on fixed ports")
    check(wait_for(lambda: all(n.up_lines() >= 1 for n in nodes), 10),
          "every node is up in the cluster (both Redis connections)")
    lb_rtmp, lb_web = free_port(), free_port()
    sock = os.path.join(work, "haproxy.sock")
    cfg = os.path.join(work, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(haproxy_config(nodes, lb_rtmp, lb_web, sock))
    hlog = open(os.path.join(work, "haproxy.log"), "ab")
    hp = spawn([haproxy, "-db", "-f", cfg], stdout=hlog, stderr=hlog)
    check(wait_for(lambda: os.path.exists(sock), 5), "haproxy started with "
          "contrib/haproxy/sohub.cfg (RTMP on %d, web on %d)" % (lb_rtmp, lb_web))
    try:
        asyncio.run(scenario(nodes, redis, cli, lb_rtmp, lb_web, sock))
    finally:
        hp.terminate()
        hp.wait(10)
        hlog.close()
    st = [n.stop() for n in nodes]
    check(st == [0, 0, 0], "every node stops cleanly (%s)" % st)
    redis.stop()
    if not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        note("kept %s" % work)
    finish()


if __name__ == "__main__":
    main()
