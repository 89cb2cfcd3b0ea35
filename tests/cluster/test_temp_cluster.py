#!/usr/bin/env python3
"""test_temp_cluster.py SOHUB_SERVER - temporary shared objects of a
clustered application across three nodes sharing one Redis
(docs/cluster.md, "Temporary objects").

Checked: clients of one temporary object on three nodes (WebSocket, and an
RTMP reader) see the same changes, versions and SendMessages, and Redis
holds one lease per node; the object lives while any node has a
subscriber and is dropped (no key left in Redis) when the last one
anywhere leaves, then made again empty at a higher version; kill -9 of
the only node holding an object drops it after the lease time, while an
object another node also holds stays; a node stalled past its lease
(SIGSTOP) sees its object dropped and made again above the versions its
client had; a write sent behind the Use that loads a room is taken; 40
objects used on one node are all leased, and dropped with their client;
Redis stopped: writes answered StoreFailed, reads served, and Redis back:
writes work again and every node catches up; Redis restarted empty: the
nodes still using an object make it again, emptied, above their versions."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ws"))
from clients import SoClient  # noqa: E402
from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for  # noqa: E402
from opsutil import Admin, metric, parse_metrics  # noqa: E402

need_redis()
server = sys.argv[1]
ROOM = "game/t1"
KEY = "cluster-temp-test-key-0123456789"
EXTRA = ("[server]\nhttp_listen = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
         "so_max_updates_per_sec = 0\n[api_key t]\nsecret = %s\nscope = write\n[app game]\n"
         % KEY)
TTL_MS = 3000  # clusterutil's node_ttl_ms: a lease lasts that long


def Client(node, name, room=ROOM, state=None, version=0):
    """A WebSocket client of the temporary object name on a node (clients.py)."""
    return SoClient(node, room, name, state, version, persistent=False)


def key(kind, name):
    return "so:{%s}:%s:%s" % (ROOM, kind, name)


def redis_version(name):
    v = redis.cmd("HGET", "so:{%s}:t" % ROOM, name)
    return int(v) if v is not None and not isinstance(v, Exception) else None


def node_id(n):
    """A node's id (random per start), from its log."""
    m = re.search(r"cluster: node ([0-9a-f]+) \(", n.log_text())
    return m.group(1) if m else None


def leases(name):
    """The nodes holding a lease on name, as n0, n1, n2."""
    v = redis.cmd("HKEYS", key("tl", name))
    if not isinstance(v, list):
        return None
    names = {node_id(n): "n%d" % i for i, n in enumerate(nodes)}
    return sorted(names.get(x, x) for x in v)


def gone_from_redis(name):
    """No field in the room's hash and none of the object's keys."""
    return (redis.cmd("HEXISTS", "so:{%s}:t" % ROOM, name) == 0 and
            all(redis.cmd("EXISTS", key(k, name)) == 0 for k in ("ts", "tm", "tx", "tl")))


def agree(clients, name, writers=()):
    snaps = [c.snapshot() for c in clients]
    same = all(s == snaps[0] for s in snaps)
    same = same and all(w.snapshot()[1] == snaps[0][1] for w in writers)
    return same and redis_version(name) == snaps[0][1]


def metrics(node):
    adm = Admin(node.ports["admin"], KEY)
    st, body = adm.get("/metrics")
    adm.close()
    return parse_metrics(body.decode("utf-8", "replace")) if st == 200 else {}


def write_ok(cli, slots, timeout=5.0):
    n = len(cli.msgs)
    cli.change(slots)
    return wait_for(lambda: len(cli.events_since(n, "success")) >= len(slots), timeout)


redis = Redis(aof=True)
check(redis.start(), "redis-server (AOF, appendfsync always) on 127.0.0.1:%d" % redis.port)
cl = Cluster(server, redis, n=3, extra=EXTRA)
UP = "up: clustered applications are served"
nodes = cl.nodes
check(cl.start() and wait_for(lambda: all(n.log_text().count(UP) >= 1 for n in nodes), 10.0),
      "three nodes up, each with both Redis connections")

# ---- one temporary object on three nodes: same changes, same versions
a, b, c = Client(nodes[0], "tmp"), Client(nodes[1], "tmp"), Client(nodes[2], "tmp")
check(all(x.use() for x in (a, b, c)), "clients on n0, n1, n2 use the temporary object tmp")
check(wait_for(lambda: leases("tmp") == ["n0", "n1", "n2"], 5.0),
      "Redis holds one lease per node on tmp (%r)" % leases("tmp"))
check(write_ok(a, {"x": 1}) and
      wait_for(lambda: all(x.snapshot()[0].get("x") == 1 for x in (b, c)), 5.0),
      "a change on n0 is answered Success and reaches n1 and n2")
check(wait_for(lambda: agree([b, c], "tmp", writers=(a,)), 3.0),
      "every client has Redis' version of tmp (%s, redis %s)"
      % ([x.snapshot()[1] for x in (a, b, c)], redis_version("tmp")))
ns = [len(x.msgs) for x in (a, b, c)]
a.send([{"t": "send", "handler": "hello", "args": ["from-a", 7]}])


def hellos(x, n):
    return [e.get("args") for m in x.msgs[n:] for e in m["events"]
            if e["t"] == "send" and e.get("handler") == "hello"]


check(wait_for(lambda: all(hellos(x, n) == [["from-a", 7]] for x, n in zip((a, b, c), ns)),
               5.0), "a SendMessage to tmp from n0 reaches its subscribers on n0, n1 and n2, "
      "each once")
v0 = redis_version("tmp")
for i in range(20):  # writers on every node at once, distinct keys
    for j, x in enumerate((a, b, c)):
        x.change({"k%d_%d" % (j, i): i})
want = {"x": 1}
want.update({"k%d_%d" % (j, i): i for i in range(20) for j in range(3)})
check(wait_for(lambda: all(x.snapshot()[0] == want for x in (a, b, c)) and
               agree([a, b, c], "tmp"), 10.0),
      "60 concurrent writes from three nodes: one state and one version everywhere "
      "(%s, redis %s)" % ([x.snapshot()[1] for x in (a, b, c)], redis_version("tmp")))
check(redis_version("tmp") == v0 + 60,
      "each write made exactly one version (v%s -> v%s)" % (v0, redis_version("tmp")))
vs = []
for m in b.msgs:
    if any(e["t"] == "change" for e in m["events"]):
        vs.append(m["version"])
check(vs == sorted(vs) and len(set(vs)) == len(vs),
      "versions seen by n1's client only go up (%d changes)" % len(vs))

# ---- the last subscriber anywhere leaves: the object is dropped
b.close()
c.close()
check(wait_for(lambda: leases("tmp") == ["n0"], 5.0),
      "n1 and n2 gave their leases back when their last subscriber left (%r)" % leases("tmp"))
check(redis_version("tmp") is not None and redis.cmd("HLEN", key("ts", "tmp")) == 61,
      "the object stays while n0 has a subscriber")
last = a.snapshot()[1]
a.close()
check(wait_for(lambda: gone_from_redis("tmp"), 5.0),
      "the last subscriber left: Redis holds no key of tmp")
d = Client(nodes[1], "tmp")
check(d.use() and wait_for(lambda: redis_version("tmp") is not None, 3.0),
      "a new subscriber on n1 makes tmp again")
check(d.snapshot()[0] == {} and redis.cmd("HLEN", key("ts", "tmp")) == 0,
      "and sees it empty (%r)" % (d.snapshot()[0],))
check(redis_version("tmp") > last,
      "made again above its former versions (v%s after v%d)" % (redis_version("tmp"), last))
check(write_ok(d, {"again": 1}) and d.snapshot()[0] == {"again": 1} and
      wait_for(lambda: agree([d], "tmp"), 3.0), "and it takes writes again")
d.close()
check(wait_for(lambda: gone_from_redis("tmp"), 5.0), "and goes again with its subscriber")


def temp_counts(node):
    ms = metrics(node)
    return (metric(ms, "sohub_cluster_so_temp_made_total"),
            metric(ms, "sohub_cluster_so_temp_dropped_total"))


check(wait_for(lambda: (temp_counts(nodes[1])[0] or 0) >= 1 and
               (temp_counts(nodes[1])[1] or 0) >= 2, 3.0),
      "n1's metrics count tmp made again and dropped twice (made, dropped: %r)"
      % (temp_counts(nodes[1]),))

# ---- kill -9 of a node: what only it held goes after the lease time
e, f = Client(nodes[0], "k1"), Client(nodes[1], "k1")
g = Client(nodes[0], "k2")
check(all(x.use() for x in (e, f, g)), "k1 used on n0 and n1, k2 on n0 only")
check(write_ok(e, {"a": 1}) and write_ok(g, {"b": 2}) and
      wait_for(lambda: f.snapshot()[0] == {"a": 1}, 3.0), "k1 and k2 written on n0")
check(wait_for(lambda: leases("k2") == ["n0"] and leases("k1") == ["n0", "n1"], 3.0),
      "leases: k1 n0+n1, k2 n0")
cl.kill(0)
t0 = time.monotonic()
check(wait_for(lambda: gone_from_redis("k2"), TTL_MS / 1000.0 * 3 + 3),
      "n0 killed: k2, held by n0 only, is dropped from Redis after %.1f s (lease %d ms)"
      % (time.monotonic() - t0, TTL_MS))
check(time.monotonic() - t0 >= TTL_MS / 1000.0 * 0.5,
      "not before the lease could have run out")
check(leases("k1") == ["n1"] and redis.cmd("HGET", key("ts", "k1"), "a") is not None,
      "k1, still held by n1, stays with its slot (leases %r)" % leases("k1"))
h = Client(nodes[2], "k1")
check(h.use() and wait_for(lambda: h.snapshot()[0] == {"a": 1} and agree([f, h], "k1"), 3.0),
      "a new subscriber of k1 on n2 gets its state and version")
cli_bin = os.path.join(os.path.dirname(server), "cli", "sohub-cli")
p = subprocess.run([cli_bin, "-u", nodes[2].rtmp_url(ROOM), "--timeout", "5", "so", "get", "k1"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
out = p.stdout.decode("utf-8", "replace")
check(p.returncode == 0 and json.loads(out or "{}") == {"a": 1},
      "an RTMP client (sohub-cli) on n2 reads the same k1 (%r)" % out.strip())
i2 = Client(nodes[2], "k2")
check(i2.use() and wait_for(lambda: redis_version("k2") is not None, 3.0) and
      i2.snapshot()[0] == {}, "a new subscriber of k2 on n2 finds it empty")
i2.close()

# ---- a write sent right behind the Use that loads the room is taken (with the room's epoch)
for persistent in (False, True):
    q = Client(nodes[2], "fast", room="game/load%d" % persistent)
    q.ws.send_json({"op": "so", "name": "fast", "persistent": persistent, "version": 0,
                    "events": [{"t": "use"}]})
    q.sent["k"] = [1]
    q.ws.send_json({"op": "so", "name": "fast", "persistent": persistent, "version": 0,
                    "events": [{"t": "change", "slots": [["k", 1]]}]})
    check(wait_for(lambda: q.events_since(0, "success"), 5.0) and
          not q.events_since(0, "status"),
          "a %s object: a change sent behind the Use that loads its room is answered Success "
          "(%r)" % ("persistent" if persistent else "temporary",
                    [e for m in q.msgs for e in m["events"]]))
    q.close()

# ---- many temporary objects used on one node: every one leased (several lease scripts)
many = Client(nodes[1], "m0")
names = ["m%d" % i for i in range(40)]
for nm in names:
    many.ws.send_json({"op": "so", "name": nm, "persistent": False, "version": 0,
                       "events": [{"t": "use"}]})
check(wait_for(lambda: all(leases(nm) == ["n1"] for nm in names), 5.0),
      "40 temporary objects used by one client on n1: each has n1's lease (%d of 40)"
      % sum(leases(nm) == ["n1"] for nm in names))
many.close()
check(wait_for(lambda: all(gone_from_redis(nm) for nm in names), 5.0),
      "its client gone, all 40 are dropped (%d left)"
      % sum(not gone_from_redis(nm) for nm in names))

# ---- a node stalled past its lease: the object goes, and comes back above its versions
zc = Client(nodes[1], "z")
check(zc.use() and write_ok(zc, {"p": 1, "q": 2, "r": 3}), "z used and written on n1 only")
z_before = zc.snapshot()[1]
nz = len(zc.msgs)
nodes[1].proc.send_signal(signal.SIGSTOP)
t0 = time.monotonic()
stopped = wait_for(lambda: gone_from_redis("z"), TTL_MS / 1000.0 * 3 + 3)
nodes[1].proc.send_signal(signal.SIGCONT)
check(stopped, "n1 stopped (SIGSTOP): its lease on z ran out and n2's sweep dropped z "
      "(%.1f s)" % (time.monotonic() - t0))
check(wait_for(lambda: (redis_version("z") or 0) > z_before and zc.snapshot()[0] == {}, 5.0),
      "n1 running again still has a subscriber: it makes z again above v%d (v%s), and its "
      "client sees it emptied" % (z_before, redis_version("z")))
zv = [m["version"] for m in zc.msgs[nz:]]
check(all(v >= z_before for v in zv) and zv == sorted(zv),
      "versions seen by the client that stayed never went back (%r)" % zv)
zn = Client(nodes[2], "z")
check(zn.use() and write_ok(zc, {"s": 4}) and
      wait_for(lambda: zn.snapshot()[0] == {"s": 4} and agree([zn], "z", writers=(zc,)), 3.0),
      "and the object is shared again: a write on n1 reaches n2 with Redis' version")
check(wait_for(lambda: leases("k1") == ["n1", "n2"], 3.0), "n1 holds its lease on k1 again")
zc.close()
zn.close()

# ---- Redis stopped: writes refused with StoreFailed, reads still served
redis.stop()
check(wait_for(lambda: all("down: writes are refused" in n.log_text() for n in nodes[1:]), 5.0),
      "n1 and n2 saw Redis go")
nf = len(f.msgs)
f.change({"down": 1})
check(wait_for(lambda: [ev for m, ev in f.events_since(nf, "status")
                        if ev.get("code") == "SharedObject.StoreFailed"], 5.0) and
      not f.events_since(nf, "success"),
      "a write to k1 while Redis is down is answered SharedObject.StoreFailed, no Success")
check("down" not in f.snapshot()[0], "and the client's copy is restored")
reader = Client(nodes[2], "k1")
check(reader.use() and wait_for(lambda: reader.snapshot()[0] == {"a": 1}, 3.0),
      "a new client of k1 on n2 still reads its state")

# ---- Redis back: writes work again and every node catches up
check(redis.start(), "redis-server started again (same AOF)")


def write_until_ok(cli, slots, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if write_ok(cli, slots, 2.0):
            return True
        time.sleep(0.1)
    return False


check(write_until_ok(h, {"back": 1}), "a write to k1 on n2 succeeds once Redis is back")
check(wait_for(lambda: all(x.snapshot()[0].get("back") == 1 for x in (f, reader)) and
               agree([f, reader], "k1", writers=(h,)), 10.0),
      "n1 caught up: every client has the write and Redis' version (%s, redis %s)"
      % ([x.snapshot()[1] for x in (f, h, reader)], redis_version("k1")))
check(f.snapshot()[0] == {"a": 1, "back": 1}, "k1 kept its state through the outage (%r)"
      % (f.snapshot()[0],))

# ---- Redis restarted empty: the nodes still using k1 make it again, above their versions
k1_before = max(x.snapshot()[1] for x in (f, h, reader))
marks = [len(x.msgs) for x in (f, h, reader)]
redis.kill(signal.SIGKILL)
shutil.rmtree(redis.dir, ignore_errors=True)
os.makedirs(redis.dir)
check(redis.start(), "redis-server restarted empty (its files removed)")
check(wait_for(lambda: (redis_version("k1") or 0) > k1_before and
               all(x.snapshot()[0] == {} for x in (f, h, reader)) and
               agree([f, h, reader], "k1"), 10.0),
      "k1 made again above v%d (v%s) by the nodes that use it, every client sees it emptied "
      "with Redis' version (%s)" % (k1_before, redis_version("k1"),
                                     [x.snapshot()[1] for x in (f, h, reader)]))
check(all(v >= k1_before for x, m in zip((f, h, reader), marks) for v in
          [mm["version"] for mm in x.msgs[m:]]), "no client saw a version go back")
check(leases("k1") == ["n1", "n2"], "n1 and n2 hold their leases again (%r)" % leases("k1"))
check(write_until_ok(f, {"new": 1}) and
      wait_for(lambda: all(x.snapshot()[0] == {"new": 1} for x in (h, reader)), 5.0),
      "and k1 is shared again")

# ---- everyone leaves: Redis keeps nothing of the room's temporary objects
for x in (f, h, reader):
    x.close()


def left():
    """The room's temporary-object keys in Redis, but its highest dropped version."""
    return [k for k in (redis.cmd("KEYS", "so:{%s}:t*" % ROOM) or [])
            if k != "so:{%s}:tb" % ROOM]


check(wait_for(lambda: not left(), 5.0), "every subscriber gone: no temporary key left (%r)"
      % left())
ttl = redis.cmd("PTTL", "so:{%s}:tb" % ROOM)
check(isinstance(ttl, int) and 0 < ttl <= 3 * TTL_MS,
      "the room's highest dropped version expires too (PTTL %r ms)" % ttl)
for n in nodes[1:]:
    if "ERROR" in n.log_text():
        note(n.log_text()[-1500:])
check(cl.stop()[1:] == [0, 0], "n1 and n2 stop cleanly")
redis.stop()
finish()
