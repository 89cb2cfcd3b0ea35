#!/usr/bin/env python3
"""test_so_cluster.py SOHUB_SERVER - shared objects of a clustered
application across three nodes sharing one Redis (docs/cluster.md).

Clients of one room are spread over the nodes (WebSocket, sohub.v1 JSON:
the same engine path as RTMP).  Checked: a change made on one node
reaches the others with the same version; concurrent writers on every
node end with one state and gap-free versions everywhere; rule 3 across
nodes; persistent objects survive every node restarting (Redis with AOF,
appendfsync always); Redis stopped: writes answered StoreFailed, reads
of a loaded room still served, and Redis back: writes work again and
every node catches up; Redis restarted empty: clients get Clear and the
whole state (a new epoch), and the log says why."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ws"))
from clients import SoClient  # noqa: E402
from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for  # noqa: E402
from opsutil import Admin, metric, parse_metrics  # noqa: E402
from wsutil import connect_app  # noqa: E402

need_redis()
server = sys.argv[1]
cli_bin = os.path.join(os.path.dirname(server), "cli", "sohub-cli")
ROOM = "game/r1"
OBJ = "board"
KEY = "cluster-so-test-key-0123456789"
EXTRA = ("[server]\nhttp_listen = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
         "so_max_updates_per_sec = 0\n[api_key t]\nsecret = %s\nscope = write\n[app game]\n"
         "[app free]\nconflict = lww\n"
         "[app quota]\nmax_persistent_objects = 2\nmax_persistent_bytes = 400\n" % KEY)


def Client(node, name=OBJ, room=ROOM, state=None, version=0):
    """A WebSocket client of name in room on a node (clients.py)."""
    return SoClient(node, room, name, state, version)


def redis_version(redis):
    v = redis.cmd("HGET", "so:{%s}:o" % ROOM, OBJ)
    return int(v) if v is not None and not isinstance(v, Exception) else None


def agree(clients, redis=None, writers=()):
    """clients show the same state and version, writers (whose copy of
    their own concurrent writes the test does not model) that version, and
    Redis has it too."""
    snaps = [c.snapshot() for c in clients]
    same = all(s == snaps[0] for s in snaps)
    same = same and all(w.snapshot()[1] == snaps[0][1] for w in writers)
    if redis is not None:
        same = same and redis_version(redis) == snaps[0][1]
    return same


redis = Redis(aof=True)
check(redis.start(), "redis-server (AOF, appendfsync always) on 127.0.0.1:%d" % redis.port)
cl = Cluster(server, redis, n=3, extra=EXTRA)
UP = "up: clustered applications are served"


def links_up(ns, times=1):
    """Each node's log says its link (both connections) is up, `times` times
    in all (a node's log goes on across its restarts): the heartbeat key
    alone comes back with the command connection, the subscription one may
    follow a moment later, and a room loads only with both."""
    return wait_for(lambda: all(n.log_text().count(UP) >= times for n in ns), 10.0)


nodes = cl.nodes
check(cl.start() and links_up(nodes), "three nodes up, each with both Redis connections")

# ---- one change reaches every node with the same version
a, b, c = Client(nodes[0]), Client(nodes[1]), Client(nodes[2])
check(all(x.use() for x in (a, b, c)), "clients on n0, n1, n2 use %s in %s" % (OBJ, ROOM))
n_a = len(a.msgs)
a.change({"x": 1})
got = wait_for(lambda: a.events_since(n_a, "success") and
               all(x.snapshot()[0].get("x") == 1 for x in (b, c)), 5.0)
check(got, "a change on n0 is answered Success and reaches n1 and n2")
check(wait_for(lambda: agree([b, c], redis, writers=(a,)), 3.0),
      "every client has the same version as Redis (%s, redis %s)"
      % ([x.snapshot()[1] for x in (a, b, c)], redis_version(redis)))

# ---- RTMP clients (sohub-cli) in the same room: the same objects and versions


def cli(node, *args):
    p = subprocess.run([cli_bin, "-u", node.rtmp_url(ROOM), "--persistent", "--timeout", "5"] +
                       list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    return p.returncode, p.stdout.decode("utf-8", "replace")


st, out = cli(nodes[2], "so", "get", OBJ)
check(st == 0 and json.loads(out or "{}").get("x") == 1,
      "an RTMP client on n2 reads the WebSocket client's change made on n0 (%r)" % out.strip())
n_a = len(a.msgs)
st, out = cli(nodes[1], "so", "set", OBJ, "rtmp", '"hi"')
check(st == 0 and wait_for(lambda: a.snapshot()[0].get("rtmp") == "hi" and
                           c.snapshot()[0].get("rtmp") == "hi", 5.0),
      "an RTMP write on n1 (answered Success: exit %d) reaches WebSocket clients on n0 and n2"
      % st)

# ---- clients that leave rooms while they are still being read from Redis
# (the engine drops such a room from inside the snapshot's handling; found
# as a use-after-free by the sanitizer build)
for i in range(150):
    ws, _ = connect_app(nodes[0].ports["http"], "game/gone%d" % i)
    ws.send_json({"op": "so", "name": "o", "version": 0, "persistent": True,
                  "events": [{"t": "use"}]})
    if i % 3 == 1:
        time.sleep(0.001)
    ws.close()
probe = Client(nodes[0], room="game/gone-after")
check(nodes[0].proc.poll() is None and probe.use(),
      "n0 survives 150 clients that leave rooms while they load, and serves the next one")
probe.close()

# ---- SendMessage reaches every node's subscribers, after the change sent before it
ns = [len(x.msgs) for x in (a, b, c)]
a.change({"y": 2})
a.send([{"t": "send", "handler": "hello", "args": ["from-a", 7]}])


def order_ok(x, n):
    """x got the change of y, then hello (the change first)."""
    seen = []
    for m in x.msgs[n:]:
        for e in m["events"]:
            if e["t"] == "send" and e.get("handler") == "hello":
                seen.append(("send", e.get("args")))
            elif e["t"] in ("change", "success") and (e.get("key") == "y" or
                                                     any(k == "y" for k, _ in e.get("slots", []))):
                seen.append(("y", None))
    return seen == [("y", None), ("send", ["from-a", 7])]


check(wait_for(lambda: all(order_ok(x, n) for x, n in zip((a, b, c), ns)), 5.0),
      "a SendMessage from n0 reaches the subscribers on n0 (the sender), n1 and n2, each once, "
      "after the change sent before it")

# ---- concurrent writers on every node: one state, versions without gaps
watchers = [Client(n) for n in nodes]
check(all(w.use() for w in watchers), "a watcher per node")
start = [len(w.msgs) for w in watchers]
v0 = redis_version(redis)
N = 40


def writer(cli, tag):
    for i in range(N):
        cli.change({"%s%d" % (tag, i % 8): i, "shared": "%s%d" % (tag, i)})
        time.sleep(0.002)


ts = [threading.Thread(target=writer, args=(x, t)) for x, t in ((a, "a"), (b, "b"), (c, "c"))]
for t in ts:
    t.start()
for t in ts:
    t.join()


def answered(cli, n0):
    ev = [e for m in cli.msgs[n0:] for e in m["events"]]
    return sum(1 for e in ev if e["t"] == "success")


settled = wait_for(lambda: agree(watchers, redis, writers=(a, b, c)) and
                   redis_version(redis) == watchers[0].snapshot()[1], 10.0)
check(settled, "after %d concurrent writes on 3 nodes every client shows one state and "
      "Redis' version (%s)" % (3 * N, [w.snapshot()[1] for w in watchers]))
gapless = True
for w, s in zip(watchers, start):
    vs = [m["version"] for m in w.msgs[s:]]
    if vs != list(range(v0 + 1, v0 + 1 + len(vs))):
        gapless = False
        note("watcher versions: %s" % vs)
check(gapless and len(watchers[0].msgs) > start[0],
      "every watcher saw versions %d..%d one by one, without gaps" %
      (v0 + 1, watchers[0].snapshot()[1]))
check(watchers[0].snapshot()[1] - v0 == len(watchers[0].msgs) - start[0],
      "one version per applied update")

# ---- rule 3 across nodes: two writers with the same base version, one wins
time.sleep(0.2)
base = a.snapshot()[1]
check(b.snapshot()[1] == base, "a and b hold version %d" % base)
na, nb = len(a.msgs), len(b.msgs)
a.change({"k": "from-a"}, version=base)
b.change({"k": "from-b"}, version=base)
done = wait_for(lambda: (a.events_since(na, "success") or
                         [1 for m, e in a.events_since(na, "change") if any(s[0] == "k" for s in e["slots"])]) and
                (b.events_since(nb, "success") or
                 [1 for m, e in b.events_since(nb, "change") if any(s[0] == "k" for s in e["slots"])]), 5.0)
sa, sb = len(a.events_since(na, "success")), len(b.events_since(nb, "success"))
check(done and sa + sb == 1,
      "n0 and n1 write k on the same version: exactly one Success (a %d, b %d)" % (sa, sb))
winner = "from-a" if sa else "from-b"
check(wait_for(lambda: all(x.snapshot()[0].get("k") == winner for x in (a, b, c) + tuple(watchers)),
               3.0),
      "the loser got the winner's value: every client has k = %r" % winner)
# a write based on a version older than another client's write of k is refused
nc = len(c.msgs)
c.change({"k": "stale"}, version=base)
got = wait_for(lambda: [e for m, e in c.events_since(nc, "change")
                        if any(s[0] == "k" for s in e["slots"])], 5.0)
check(got and not c.events_since(nc, "success") and c.snapshot()[0].get("k") != "stale",
      "a write on n2 based on version %d is stale: answered with k's current value" % base)
time.sleep(0.3)
check(all(x.snapshot()[0].get("k") != "stale" for x in (a, b, watchers[0])),
      "nobody saw the stale value")

# ---- each node applied every version once, from Redis (its own writes too)


def metrics(node):
    adm = Admin(node.ports["admin"], KEY)
    st, body = adm.get("/metrics")
    adm.close()
    return parse_metrics(body.decode("utf-8", "replace")) if st == 200 else {}


ms = [metrics(n) for n in nodes]
applied = [metric(m, "sohub_cluster_so_updates_applied_total") for m in ms]
last = redis_version(redis)
check(applied == [last - 1] * 3,
      "each node applied exactly the %d updates Redis made (version 1 to %d): %s"
      % (last - 1, last, applied))
props = sum(metric(m, "sohub_cluster_so_proposals_total") or 0 for m in ms)
note("proposals %d, refused as stale by Redis %s, on the nodes %s" % (
    props, [metric(m, "sohub_cluster_so_stale_total") for m in ms],
    [metric(m, "sohub_so_refusals_total", code="stale") for m in ms]))

# ---- one change of many slots (one script with three arguments a slot), on
# an object whose name is shorter than its room's (the script's key names)
many = {"m%03d" % i: i for i in range(300)}
wide = Client(nodes[0], name="w")
far = Client(nodes[2], name="w")
check(wide.use() and far.use(), "clients on n0 and n2 use the object w")
n_w = len(wide.msgs)
wide.change(many)
check(wait_for(lambda: len(wide.events_since(n_w, "success")) == 300 and
               all(far.snapshot()[0].get(k) == v for k, v in many.items()), 5.0),
      "a change of 300 slots in one message is answered Success for each and reaches n2")
wide.close()
far.close()

# ---- the application's quotas count the whole cluster: objects and bytes
# written on other nodes and in other rooms of the application
def answered(cl, n, timeout=5.0):
    """The first success or status event cl got after message n."""
    got = []
    wait_for(lambda: got.extend(cl.events_since(n, "success") + cl.events_since(n, "status"))
             or got, timeout)
    return got[0][1] if got else None


q0 = Client(nodes[0], name="o1", room="quota/a")
q1 = Client(nodes[1], name="o2", room="quota/b")
q2 = Client(nodes[2], name="o3", room="quota/a")
check(all(x.use() for x in (q0, q1, q2)), "clients of the application quota on n0, n1, n2")
n0_, n1_ = len(q0.msgs), len(q1.msgs)
q0.change({"k": "x" * 100})
q1.change({"k": "y" * 100})
e0, e1 = answered(q0, n0_), answered(q1, n1_)
check(e0 and e0["t"] == "success" and e1 and e1["t"] == "success",
      "two objects of 104 bytes each, on n0 (quota/a) and n1 (quota/b): stored (%s %s)" % (e0, e1))
n2_ = len(q2.msgs)
q2.change({"k": 1})
e2 = answered(q2, n2_)
check(e2 and e2.get("code") == "SharedObject.LimitExceeded.PersistentObjects",
      "a third object, on n2: refused, max_persistent_objects = 2 counts the other nodes' (%s)"
      % e2)
n1_ = len(q1.msgs)
q1.change({"k2": "z" * 250})
e1 = answered(q1, n1_)
check(e1 and e1.get("code") == "SharedObject.LimitExceeded.PersistentBytes",
      "a slot that would take the application past 400 bytes, on n1: refused (%s)" % e1)
n1_ = len(q1.msgs)
q1.change({"k": "s"})
e1 = answered(q1, n1_)
check(e1 and e1["t"] == "success", "a slot that shrinks is stored (%s)" % e1)
adm = Admin(nodes[2].ports["admin"], KEY)
st, body = adm.request("POST", "/api/v1/apps/quota/instances/a/objects/o1",
                       json.dumps({"persistent": True, "set": {"big": "b" * 300, "k": 2}}))
check(st == 422 and b'"limit"' in body and
      redis.cmd("HEXISTS", "so:{quota/a}:s:o1", "k") == 1 and
      redis.cmd("HGET", "so:{quota/a}:o", "o1") == str(q0.snapshot()[1]),
      "a server write past the bytes quota, on n2: 422 limit, none of its keys written "
      "(%s %s)" % (st, body[:80]))
st, body = adm.request("POST", "/api/v1/apps/quota/instances/a/objects/o1",
                       json.dumps({"persistent": True, "set": {"k": 3}}))
check(st == 200 and wait_for(lambda: q0.snapshot()[0].get("k") == 3, 5.0),
      "a server write within the quota: stored and seen on n0 (%s)" % st)
use = redis.cmd("HGETALL", "sohub:quota:{5:quota}")
check(use and dict(zip(use[::2], use[1::2])) == {"objects": "2", "bytes": str((1 + 9) + (1 + 4))},
      "Redis counts the application's 2 objects and their key + value bytes: o1 k = 3 "
      "(AMF0 number, 9 bytes), o2 k = \"s\" (4 bytes) (%s)" % use)
adm.close()
for x in (q0, q1, q2):
    x.close()

# ---- conflict = lww: the same old-version write from two nodes is applied both times
x, y = Client(nodes[0], room="free/r"), Client(nodes[2], room="free/r")
check(x.use() and y.use(), "clients of a last-writer-wins application on n0 and n2")
nx = len(x.msgs)
x.change({"k": "x"})
check(wait_for(lambda: x.events_since(nx, "success") and y.snapshot()[0].get("k") == "x", 5.0),
      "x's write reaches n2")
ny = len(y.msgs)
y.change({"k": "y"}, version=0)
check(wait_for(lambda: y.events_since(ny, "success") and x.snapshot()[0].get("k") == "y", 5.0),
      "y's write based on version 0 is not stale there: Success, and n0 sees it")
x.close()
y.close()

# ---- kill -9 of a node: its client comes back on another node with a diff
stc, vc = watchers[2].snapshot()  # a subscriber of n2 (writers' copies are not modelled)
watchers[2].close()
c.close()
cl.kill(2)
a.change({"while": "n2 died"})
check(wait_for(lambda: b.snapshot()[0].get("while") == "n2 died", 5.0), "n2 killed with -9; "
      "a write on n0 reaches n1")
back = Client(nodes[0], state=stc, version=vc)
nb = len(back.msgs)
check(back.use(version=vc), "n2's watcher uses the object again on n0 with version %d" % vc)
check(wait_for(lambda: back.snapshot() == watchers[0].snapshot(), 5.0) and
      not back.events_since(nb, "clear"),
      "it gets only what changed (no Clear) and has the same state and version (%d)"
      % back.snapshot()[1])
check(cl.restart(2) and links_up([nodes[2]], 2), "n2 started again")
c = back

# ---- every node restarts: persistent objects come back from Redis
old_state, old_version = watchers[0].snapshot()
a.change({"pre-restart": 1})
check(wait_for(lambda: watchers[0].snapshot()[0].get("pre-restart") == 1, 5.0),
      "one more change before the restart")
final_state, final_version = watchers[0].snapshot()
for x in [a, b, c] + watchers:
    x.close()
check(cl.stop() == [0, 0, 0], "all three nodes stopped")
ups = [n.log_text().count(UP) for n in nodes]
check(all(cl.restart(i) for i in range(3)) and
      all(links_up([n], k + 1) for n, k in zip(nodes, ups)),
      "all three nodes started again, their links up")
fresh = [Client(n) for n in nodes]
check(all(x.use() for x in fresh), "new clients on each node use %s" % OBJ)
check(wait_for(lambda: all(x.snapshot() == (final_state, final_version) for x in fresh), 5.0),
      "each gets the state and version %d it had before (%d slots)" %
      (final_version, len(final_state)))
a, b, c = fresh
# a client that had an older version comes back to a node that has just read the room: its
# history was seeded from the object's stream, so it gets a diff
back = Client(nodes[1], state=old_state, version=old_version)
nb = len(back.msgs)
check(back.use(version=old_version) and
      wait_for(lambda: back.snapshot() == (final_state, final_version), 5.0) and
      not back.events_since(nb, "clear"),
      "a client coming back with version %d after the restart gets only what changed since "
      "(history from Redis' stream), no Clear" % old_version)
back.close()

# ---- Redis stopped: writes refused with StoreFailed, reads still served
redis.stop()
check(wait_for(lambda: all("down: writes are refused" in n.log_text() for n in nodes), 5.0),
      "every node saw Redis go")
na = len(a.msgs)
a.change({"down": 1})
got = wait_for(lambda: [e for m, e in a.events_since(na, "status")
                        if e.get("code") == "SharedObject.StoreFailed"], 5.0)
check(got and not a.events_since(na, "success"),
      "a write while Redis is down is answered SharedObject.StoreFailed, no Success")
check("down" not in a.snapshot()[0], "and the client's copy is restored")
reader = Client(nodes[1])
check(reader.use() and wait_for(lambda: reader.snapshot() == (final_state, final_version), 3.0),
      "a new client of the loaded room on n1 still reads the whole state (v%d)" % final_version)
other = Client(nodes[1], room="game/r2")
no = len(other.msgs)
other.send([{"t": "use"}])
check(wait_for(lambda: [e for m, e in other.events_since(no, "status")
                        if e.get("code") == "SharedObject.StoreFailed"], 5.0),
      "a room not in memory cannot be loaded: its Use is answered StoreFailed (after "
      "timeout_ms)")
other.close()

# ---- Redis back: writes work again and every node catches up
check(redis.start(), "redis-server started again (same AOF)")


def write_until_ok(cli, slots, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = len(cli.msgs)
        cli.change(slots)
        ok = wait_for(lambda: cli.events_since(n, "success") or cli.events_since(n, "status"), 3.0)
        if cli.events_since(n, "success"):
            return True
        time.sleep(0.1)
    return False


check(write_until_ok(c, {"back": 1}), "a write on n2 succeeds once Redis is back")
check(wait_for(lambda: all(x.snapshot()[0].get("back") == 1 for x in (a, b, reader)) and
               agree([a, b, reader], redis, writers=(c,)), 10.0),
      "n0 and n1 caught up: every client has the write and Redis' version (%s)" %
      [x.snapshot()[1] for x in (a, b, c, reader)])
check(write_until_ok(a, {"after": 2}) and
      wait_for(lambda: agree([b, c, reader], redis, writers=(a,)) and
               c.snapshot()[0].get("after") == 2, 5.0),
      "writes from n0 flow again to every node")

# ---- Redis killed (-9) under writes: nothing acknowledged is lost (AOF, appendfsync always)
stop = threading.Event()


def keep_writing(cli, tag):
    i = 0
    while not stop.is_set():
        cli.change({"d-%s-%d" % (tag, i): i})
        i += 1
        time.sleep(0.003)


marks = {id(x): len(x.msgs) for x in (a, b)}
ts = [threading.Thread(target=keep_writing, args=(x, t)) for x, t in ((a, "a"), (b, "b"))]
for t in ts:
    t.start()
time.sleep(0.8)
redis.kill(signal.SIGKILL)
time.sleep(0.3)
stop.set()
for t in ts:
    t.join()
time.sleep(0.5)  # answers of the writes in flight (StoreFailed)
acked, top = set(), 0
for x in (a, b):
    for m in x.msgs[marks[id(x)]:]:
        for e in m["events"]:
            if e["t"] == "success" and str(e.get("key", "")).startswith("d-"):
                acked.add(e["key"])
                top = max(top, m["version"])
check(len(acked) >= 20, "writers on n0 and n1 got %d changes acknowledged before Redis was "
      "killed with -9" % len(acked))
check(redis.start(), "redis-server restarted from its AOF")
check(write_until_ok(a, {"after-kill": 1}), "writes are taken again")
lost = [k for k in acked if redis.cmd("HEXISTS", "so:{%s}:s:%s" % (ROOM, OBJ), k) != 1]
check(not lost, "every acknowledged change is in Redis after the crash (%d lost: %s)"
      % (len(lost), sorted(lost)[:5]))
check(redis_version(redis) > top, "the version did not go back (acknowledged up to %d, Redis "
      "now %d)" % (top, redis_version(redis)))
check(wait_for(lambda: agree([reader], redis, writers=(a, b, c)) and
               all(k in reader.snapshot()[0] for k in acked), 10.0),
      "every node caught up: n1's reader has every acknowledged change and Redis' version")

# ---- a node whose subscription was dropped catches up with one diff
# n1 is stopped (SIGSTOP), its subscription connection killed in Redis
# (CLIENT KILL), and n0 writes: n1 misses those messages.


def sub_client_id(pid):
    """Redis' id of the pub/sub connection of process pid (its local port
    found through /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].split(":")[1], 16))
    for ln in (redis.cmd("CLIENT", "LIST", "TYPE", "pubsub") or "").splitlines():
        kv = dict(x.split("=", 1) for x in ln.split() if "=" in x)
        if int(kv.get("addr", ":0").rsplit(":", 1)[1]) in ports:
            return kv["id"]
    return None


snaps0 = metric(metrics(nodes[1]), "sohub_cluster_so_snapshots_total") or 0
nb, vb = len(b.msgs), b.snapshot()[1]
sid = sub_client_id(nodes[1].proc.pid)
check(sid is not None, "found n1's subscription connection in Redis (id %s)" % sid)
os.kill(nodes[1].proc.pid, signal.SIGSTOP)
try:
    killed = redis.cmd("CLIENT", "KILL", "ID", sid) == 1
    v_before = redis_version(redis)
    for i in range(10):
        a.change({"gap%d" % (i % 3): i})
    wrote = wait_for(lambda: redis_version(redis) == v_before + 10, 10.0)
finally:
    os.kill(nodes[1].proc.pid, signal.SIGCONT)
check(killed and wrote, "n1 stopped, its subscription killed, 10 updates written meanwhile")
check(wait_for(lambda: b.snapshot()[1] == redis_version(redis) and
               b.snapshot()[0] == c.snapshot()[0], 10.0),
      "n1 read the room again: its client has Redis' version %d and the others' state"
      % redis_version(redis))
jumps = [m["version"] for m in b.msgs[nb:]]
check(not b.events_since(nb, "clear") and jumps and jumps[0] > vb + 1,
      "with one diff, no Clear (versions it got: %s, had %d)" % (jumps, vb))
check((metric(metrics(nodes[1]), "sohub_cluster_so_snapshots_total") or 0) > snaps0,
      "n1 counted the snapshot it read")
check(write_until_ok(b, {"after-gap": 1}) and
      wait_for(lambda: a.snapshot()[0].get("after-gap") == 1, 5.0),
      "n1 takes writes again and they reach n0")

# ---- Redis restarted empty: a new epoch, clients get Clear and the (empty) state
kept = redis_version(redis)
redis.kill(signal.SIGKILL)
shutil.rmtree(redis.dir, ignore_errors=True)
os.makedirs(redis.dir)
marks = [len(x.msgs) for x in (a, b, c)]
check(redis.start(), "redis-server restarted empty (its files removed)")
got = wait_for(lambda: all(x.events_since(m, "clear") for x, m in zip((a, b, c), marks)), 10.0)
check(got, "every client got Clear (the room's epoch changed)")
check(wait_for(lambda: all(x.snapshot() == ({}, 1) for x in (a, b, c)), 5.0),
      "and the state Redis has now: empty, version 1 (was %s)" % kept)
check(all("Redis lost the room's data" in n.log_text() for n in nodes),
      "each node's log says why")
check(write_until_ok(b, {"new": "epoch"}) and
      wait_for(lambda: agree([a, c], redis, writers=(b,)) and a.snapshot()[0] == {"new": "epoch"},
               5.0),
      "writes go on in the new epoch, on every node")

for x in (a, b, c, reader):
    x.close()
errs = [n.log_text() for n in nodes if "ERROR" in n.log_text()]
for e in errs:
    note(e[-1500:])
check(cl.stop() == [0, 0, 0], "the nodes stop cleanly")
redis.stop()
finish()
