#!/usr/bin/env python3
"""test_wait.py SOHUB_SERVER - [cluster] wait_replicas (docs/cluster.md):
a write is acknowledged only once a replica of the Redis has it.

A Redis (AOF, appendfsync always) with one replica of its own, and two
nodes with wait_replicas = 1.  Checked: with the replica in step, shared
object changes are answered Success and private messages get their id,
and the replica holds both when the answer comes; with the replica
stopped (SIGSTOP), the same writes are answered SharedObject.StoreFailed
and 503 store_failed after wait_timeout_ms, the metric counts them and
the log says why, while reads go on; with the replica back, writes are
acknowledged again and a client on the other node sees them."""

import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ws"))
from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for  # noqa: E402
from opsutil import Admin, metric, parse_metrics  # noqa: E402
from wsutil import connect_app  # noqa: E402

need_redis()
server = sys.argv[1]
ROOM = "game/w1"
KEY = "cluster-wait-test-key-0123456789"
EXTRA = """
[cluster]
timeout_ms = 3000
wait_replicas = 1
wait_timeout_ms = 400
[server]
http_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
so_max_updates_per_sec = 0
[api_key t]
secret = %s
scope = write
[app game]
chat_rate = 0
""" % KEY


class Client:
    """A WebSocket client of one persistent object of ROOM on a node: keeps
    the answers to its writes and the object's slots."""

    def __init__(self, node, name="o"):
        self.ws, res = connect_app(node.ports["http"], ROOM, user="u%d" % node.ports["http"])
        if not res.get("ok"):
            raise RuntimeError("connect refused: %r" % res)
        self.name = name
        self.version = 0
        self.state = {}
        self.answers = []  # ("success", key) / ("status", code)
        self.changed = []  # keys the server sent as Change events

    def pump(self, timeout):
        """Reads one message (within timeout) and takes it in."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                m = self.ws.recv_json(timeout=max(0.01, end - time.monotonic()))
            except Exception:
                return
            if m.get("op") != "so" or m.get("name") != self.name:
                continue
            self.version = m["version"]
            for e in m["events"]:
                if e["t"] == "clear":
                    self.state = {}
                elif e["t"] == "change":
                    self.state.update({k: v for k, v in e["slots"]})
                    self.changed += [k for k, _ in e["slots"]]
                elif e["t"] == "success":
                    self.answers.append(("success", e["key"]))
                elif e["t"] == "status":
                    self.answers.append(("status", e.get("code")))
                elif e["t"] == "use_success":
                    self.answers.append(("use", None))
            return

    def until(self, pred, timeout):
        end = time.monotonic() + timeout
        while not pred() and time.monotonic() < end:
            self.pump(0.05)
        return pred()

    def send(self, events):
        self.ws.send_json({"op": "so", "name": self.name, "persistent": True,
                           "version": self.version, "events": events})

    def use(self):
        self.send([{"t": "use"}])
        return self.until(lambda: ("use", None) in self.answers, 5.0)

    def write(self, key, value, timeout=5.0):
        """Sends one change; returns ('success', key), ('status', code) or
        None (no answer in time) and the seconds it took."""
        n = len(self.answers)
        t0 = time.monotonic()
        self.send([{"t": "change", "slots": [[key, value]]}])
        self.until(lambda: len(self.answers) > n, timeout)
        return (self.answers[n] if len(self.answers) > n else None), time.monotonic() - t0


def counter(node, name):
    st, body = Admin(node.ports["admin"]).get("/metrics")
    v = metric(parse_metrics(body.decode()), name) if st == 200 else None
    return v or 0


master = Redis(aof=True)
check(master.start(), "redis-server (AOF, appendfsync always) on 127.0.0.1:%d" % master.port)
replica = Redis(aof=True, args=["--replicaof", "127.0.0.1", str(master.port)])
check(replica.start(), "its replica on 127.0.0.1:%d" % replica.port)
check(wait_for(lambda: "master_link_status:up" in str(replica.cmd("INFO", "replication")), 10.0),
      "the replica is in step with its master")
cl = Cluster(server, master, n=2, extra=EXTRA)
check(cl.start(), "two nodes with wait_replicas = 1")
n0, n1 = cl.nodes
check(wait_for(lambda: all(n.log_text().count("up: clustered applications are served") for n in
                           (n0, n1)), 10.0), "both nodes have their Redis links up")

# ---- replica in step: writes acknowledged, and the replica has them then
a, b = Client(n0), Client(n1)
check(a.use() and b.use(), "clients on n0 and n1 use %s/o" % ROOM)
times = []
ok = True
for i in range(20):
    ans, dt = a.write("k%d" % i, i)
    times.append(dt)
    # the answer came after WAIT: the replica must already hold the slot
    ok = ok and ans == ("success", "k%d" % i) and \
        replica.cmd("HEXISTS", "so:{%s}:s:o" % ROOM, "k%d" % i) == 1
check(ok, "20 changes answered Success, each already on the replica when answered "
      "(median %.1f ms)" % (sorted(times)[10] * 1000))
check(not [k for k in a.changed if k.startswith("k")],
      "the writer got Success for its keys, not Change events (%s)" % a.changed[:5])
check(b.until(lambda: b.state.get("k19") == 19, 5.0), "and a client on n1 sees them")
api = Admin(n1.ports["admin"], KEY)
st, body = api.request("POST", "/api/v1/apps/game/chat/messages",
                       json.dumps({"to": "bob", "text": "replicated"}))
v = json.loads(body or b"{}")
check(st == 200 and v.get("id") and
      replica.cmd("ZCARD", next(k for k in replica.cmd("KEYS", "sohub:chat:*bob*:q"))) == 1,
      "a private message sent through the API gets its id once the replica has it (%s %s)"
      % (st, v))

# ---- replica stopped: nothing acknowledged
replica.proc.send_signal(signal.SIGSTOP)
before = counter(n0, "sohub_cluster_writes_unreplicated_total")
ans, dt = a.write("stalled", 1)
check(ans == ("status", "SharedObject.StoreFailed") and 0.35 <= dt < 3.0,
      "with the replica stopped a change is answered SharedObject.StoreFailed after "
      "wait_timeout_ms (%s in %.0f ms)" % (ans, dt * 1000))
st, body = api.request("POST", "/api/v1/apps/game/chat/messages",
                       json.dumps({"to": "bob", "text": "not replicated"}))
check(st == 503 and b"StoreFailed" in body,
      "a private message is answered 503 Chat.StoreFailed (%s %s)" % (st, body[:60]))
check(counter(n0, "sohub_cluster_writes_unreplicated_total") > before,
      "sohub_cluster_writes_unreplicated_total counts the write n0 could not acknowledge")
check(n0.log_text().count("WAIT: 0 of 1 replicas") >= 1, "and n0's log says why")
c = Client(n0)
check(c.use() and c.state.get("k5") == 5, "reads go on: a new client on n0 gets the object")
c.ws.close()

# ---- replica back: acknowledged again
replica.proc.send_signal(signal.SIGCONT)
check(wait_for(lambda: a.write("back", 1)[0] == ("success", "back"), 10.0),
      "with the replica back, changes are answered Success again")
check(b.until(lambda: b.state.get("back") == 1, 5.0), "and reach n1")
note("the write answered StoreFailed may still be in Redis: WAIT says how many replicas have "
     "it, it does not take it back (docs/cluster.md)")

a.ws.close()
b.ws.close()
api.close()
st = cl.stop()
check(st == [0, 0], "both nodes stop cleanly (exit %s)" % st)
replica.kill()
master.stop()
finish()
