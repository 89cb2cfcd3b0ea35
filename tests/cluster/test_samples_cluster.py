#!/usr/bin/env python3
"""test_samples_cluster.py SOHUB_SERVER - server-side writes of clustered
applications across three nodes sharing one Redis (docs/cluster.md, "Server
writes"): the server API's object writes and the samples' server code.

Checked: an API write on node B reaches the subscribers on A and C with the
version it answered; of two concurrent compare-and-sets on the same version
through two nodes exactly one wins; an API write while Redis is down is
answered 503 store_failed and nothing is applied anywhere; the auction with
bidders on different nodes: concurrent bids never both win, every node shows
the same leader and price, an item closes exactly once for the whole cluster
(one auctionClosed per watcher, one closing update in the object's stream,
one "closed" log line over all nodes), also when a node is killed with -9
during the auction and started again; the slideshow's presenter change made
on one node gives write access on another, and two first users on two nodes
make one presenter; chat-room posts made at once on every node all get
distinct ids and every node shows the same room.

Clients are WebSocket (sohub.v1 JSON), the same engine path as RTMP.  Redis
runs with appendfsync always on a free loopback port; every wait is bounded."""

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ws"))
from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for  # noqa: E402
from opsutil import Admin  # noqa: E402
from wsutil import WS  # noqa: E402

need_redis()
server = sys.argv[1]
KEY = "cluster-samples-test-key-0123456789"
EXTRA = ("[server]\nhttp_listen = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
         "so_max_updates_per_sec = 0\n[api_key t]\nsecret = %s\nscope = write\n"
         "[app game]\n[app auction]\n[app slideshow]\n[app chat]\n"
         "[sample auction]\nsnipe_window_ms = 0\n" % KEY)


class Client:
    """One WebSocket connection of `user` to APP/INST on a node: every call
    result, and per object its state, version and SendMessages."""

    def __init__(self, node, app, user=None, timeout=5.0):
        self.ws = WS(node.ports["http"], timeout=timeout)
        if self.ws.status != 101:
            raise RuntimeError("upgrade refused: %s" % self.ws.status)
        self.results = {}
        self.objs = {}          # name -> {"state", "version", "sends", "errors", "used"}
        self.next_id = 2
        self.closed = False
        msg = {"op": "connect", "id": 1, "app": app}
        if user:
            msg["user"] = user
        self.ws.send_json(msg)
        r = self.wait_result(1, timeout)
        if not r or not r.get("ok"):
            raise RuntimeError("connect refused: %r" % (r,))

    def obj(self, name):
        return self.objs.setdefault(name, {"state": {}, "version": 0, "sends": [],
                                           "errors": [], "successes": 0, "used": False})

    def _take(self, m):
        op = m.get("op")
        if op == "result":
            self.results[m.get("id")] = m
        elif op == "so":
            o = self.obj(m.get("name"))
            for ev in m.get("events", []):
                t = ev.get("t")
                if t == "clear":
                    o["state"] = {}
                elif t == "change":
                    for k, v in ev.get("slots", []):
                        o["state"][k] = v
                elif t == "remove":
                    o["state"].pop(ev.get("key"), None)
                elif t == "use_success":
                    o["used"] = True
                elif t == "send":
                    o["sends"].append((ev.get("handler"), ev.get("args")))
                elif t == "status":
                    o["errors"].append(ev.get("code"))
                elif t == "success":
                    o["successes"] += 1
            o["version"] = m.get("version", o["version"])

    def until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return pred()
            try:
                self._take(self.ws.recv_json(min(left, 0.2)))
            except Exception:
                if self.ws.eof:
                    self.closed = True
        return True

    def pump(self, seconds):
        self.until(lambda: False, seconds)

    def call(self, method, *args):
        i = self.next_id
        self.next_id += 1
        self.ws.send_json({"op": "call", "id": i, "method": method, "args": list(args)})
        return i

    def wait_result(self, i, timeout=5.0):
        self.until(lambda: i in self.results, timeout)
        return self.results.get(i)

    def use(self, name, persistent=True):
        self.ws.send_json({"op": "so", "name": name, "persistent": persistent, "version": 0,
                           "events": [{"t": "use"}]})
        return self.until(lambda: self.obj(name)["used"], 5.0)

    def change(self, name, slots):
        o = self.obj(name)
        self.ws.send_json({"op": "so", "name": name, "persistent": True,
                           "version": o["version"],
                           "events": [{"t": "change", "slots": [[k, v] for k, v in
                                                                slots.items()]}]})

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def code_of(res):
    v = res.get("value") if res else None
    return v.get("code") if isinstance(v, dict) else None


def api(node):
    return Admin(node.ports["admin"], KEY)


def post(node, room, name, body, timeout=10.0):
    st, data = api(node).request("POST", "/api/v1/apps/%s/instances/%s/objects/%s"
                                 % (room.split("/")[0], room.split("/")[1], name),
                                 json.dumps(body), timeout=timeout)
    try:
        return st, json.loads(data or b"{}")
    except ValueError:
        return st, {}


def redis_obj_version(redis, room, name):
    v = redis.cmd("HGET", "so:{%s}:o" % room, name)
    return int(v) if v is not None and not isinstance(v, Exception) else None


def log_count(cl, needle):
    return sum(n.log_text().count(needle) for n in cl.nodes)


redis = Redis(aof=True)
check(redis.start(), "redis-server started (appendfsync always)")
cl = Cluster(server, redis, 3, EXTRA)
check(cl.start(), "three nodes up, heartbeats in Redis")
A, B, C = cl.nodes

# ------------------------------------------------------------ API writes
ROOM = "game/r1"
ca, cc = Client(A, ROOM), Client(C, ROOM)
check(ca.use("board") and cc.use("board"), "clients on A and C use board")
st, body = post(B, ROOM, "board", {"set": {"x": 1, "y": "one"}})
check(st == 200 and isinstance(body.get("version"), int),
      "API write on B answered 200 {version} (%s %s)" % (st, body))
v1 = body.get("version")
for cli, nm in ((ca, "A"), (cc, "C")):
    ok = cli.until(lambda: cli.obj("board")["version"] == v1 and
                   cli.obj("board")["state"].get("x") == 1, 5.0)
    check(ok, "the API write reached the subscriber on %s at version %s (%s)"
          % (nm, v1, cli.obj("board")))
check(redis_obj_version(redis, ROOM, "board") == v1, "Redis has the object at the same version")
st, body = post(B, ROOM, "board", {"remove": ["y"]})
check(st == 200 and body.get("version") == v1 + 1, "API remove on B: version + 1 (%s)" % body)
check(ca.until(lambda: "y" not in ca.obj("board")["state"], 5.0), "the remove reached A")
st, data = api(C).request("GET", "/api/v1/apps/game/instances/r1/objects/board")
got = json.loads(data or b"{}")
check(st == 200 and got.get("version") == v1 + 1 and got.get("slots") == {"x": 1},
      "GET on C shows the write (%s)" % got)

# ------------------------------------------------------------ API compare-and-set across nodes
wins = 0
for rnd in range(5):
    ver = redis_obj_version(redis, ROOM, "board")
    out = {}

    def cas(node, tag, ver=ver, out=out):
        out[tag] = post(node, ROOM, "board", {"set": {"cas": tag}, "expect_version": ver})

    ts = [threading.Thread(target=cas, args=(n, t)) for n, t in ((B, "b"), (C, "c"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    sts = sorted(out[t][0] for t in out)
    winner = [t for t in out if out[t][0] == 200]
    loser = [t for t in out if out[t][0] == 409]
    ok = sts == [200, 409] and out[loser[0]][1].get("version") == ver + 1 and \
        out[loser[0]][1].get("error", {}).get("code") == "conflict"
    check(ok, "round %d: two CAS on version %d through B and C: one 200, one 409 conflict "
          "naming version %d (%s)" % (rnd, ver, ver + 1, out))
    if ok:
        wins += 1
        w = winner[0]
        check(ca.until(lambda: ca.obj("board")["state"].get("cas") == w and
                       ca.obj("board")["version"] == ver + 1, 5.0),
              "round %d: A shows the winner's value at version %d" % (rnd, ver + 1))
note("CAS rounds with exactly one winner: %d/5" % wins)

# ------------------------------------------------------------ API write while Redis is down
before = redis_obj_version(redis, ROOM, "board")
state_before = dict(ca.obj("board")["state"])
redis.kill()
check(wait_for(lambda: api(B).request("GET", "/readyz")[0] == 503, 5.0),
      "B noticed Redis is gone (/readyz 503)")
t0 = time.monotonic()
st, body = post(B, ROOM, "board", {"set": {"down": True}}, timeout=10.0)
check(st == 503 and body.get("error", {}).get("code") == "store_failed",
      "API write with Redis down: 503 store_failed (%s %s, %.0f ms)"
      % (st, body, (time.monotonic() - t0) * 1000))
st, data = api(B).request("GET", "/api/v1/apps/game/instances/r1/objects/board")
got = json.loads(data or b"{}")
check(st == 200 and got.get("version") == before and "down" not in got.get("slots", {}),
      "nothing applied on B (version %s, %s)" % (got.get("version"), got.get("slots")))
check(redis.start(), "redis-server started again from its AOF")
check(wait_for(lambda: all(api(n).request("GET", "/readyz")[0] == 200 for n in cl.nodes), 15.0),
      "every node ready again")
check(redis_obj_version(redis, ROOM, "board") == before, "Redis has no trace of the refused "
      "write (version %s)" % redis_obj_version(redis, ROOM, "board"))
ca.pump(0.5)
check(ca.obj("board")["state"] == state_before and "down" not in cc.obj("board")["state"],
      "the clients on A and C never saw it")
st, body = post(B, ROOM, "board", {"set": {"back": 1}})
check(st == 200 and body.get("version") == before + 1, "writes work again (%s %s)" % (st, body))
ca.close()
cc.close()

# ------------------------------------------------------------ auction
INST = "auction/a1"
admin = Client(A, INST, "admin")
bob, carol = Client(B, INST, "bob"), Client(C, INST, "carol")
watchers = [Client(n, INST) for n in cl.nodes]
r = admin.wait_result(admin.call("auction.create", "vase", "Ming vase", 10, 6, 1))
check(r and r.get("ok"), "admin on A creates vase, 6 s (%s)" % r)
for w in watchers:
    w.use("items/vase")
check(all(w.until(lambda w=w: w.obj("items/vase")["state"].get("state") == "open", 5.0)
          for w in watchers), "watchers on A, B and C see the item open")
# clients only call methods: a direct write to the item is refused on any node
watchers[2].change("items/vase", {"price": 1})
check(watchers[2].until(lambda: "SharedObject.NoWriteAccess" in
                        watchers[2].obj("items/vase")["errors"], 5.0),
      "a client on C writing the item directly gets NoWriteAccess")
# equal first bids on two nodes at once: one wins
ib, ic = bob.call("auction.bid", "vase", 10), carol.call("auction.bid", "vase", 10)
rb, rc = bob.wait_result(ib), carol.wait_result(ic)
check(rb and rc and rb.get("ok") != rc.get("ok") and
      code_of(rb if not rb.get("ok") else rc) == "Auction.TooLow",
      "equal bids of bob (B) and carol (C) at once: one accepted, the other TooLow (%s %s)"
      % (rb, rc))
def agreed():
    sts = [w.obj("items/vase")["state"] for w in watchers]
    return all((s.get("leader"), s.get("price"), s.get("bids")) ==
               (sts[0].get("leader"), sts[0].get("price"), sts[0].get("bids")) for s in sts)


def agreed_now():
    for w in watchers:
        w.pump(0.02)
    return agreed()


# each round the two bidders who do not lead bid the same valid amount at
# once, on two nodes: exactly one is accepted, the other is TooLow
dave = Client(A, INST, "dave")
bidders = {"bob": bob, "carol": carol, "dave": dave}
rounds_ok = 0
for k in range(6):
    watchers[0].until(lambda: agreed_now(), 3.0)
    st = watchers[0].obj("items/vase")["state"]
    amount = st.get("price") + 1
    two = [u for u in sorted(bidders) if u != st.get("leader")][:2]
    calls = [(u, bidders[u].call("auction.bid", "vase", amount)) for u in two]
    res = [bidders[u].wait_result(i) for u, i in calls]
    oks = [x for x in res if x and x.get("ok")]
    errs = [code_of(x) for x in res if x and not x.get("ok")]
    good = len(oks) == 1 and errs == ["Auction.TooLow"]
    rounds_ok += good
    check(good, "round %d: %s and %s bid %s at once: one accepted, one TooLow (%s)"
          % (k, two[0], two[1], amount, res))
    for w in watchers:
        w.pump(0.05)
check(rounds_ok == 6, "6/6 rounds of concurrent bids had exactly one winner")
# every node agrees on the leader and the price
check(all(w.until(agreed, 3.0) for w in watchers), "A, B and C show the same leader, price "
      "and bid count (%s)" % [w.obj("items/vase")["state"].get("price") for w in watchers])
# the close: once for the cluster
closed = all(w.until(lambda w=w: w.obj("items/vase")["state"].get("state") == "closed", 15.0)
             for w in watchers)
check(closed, "the item closed for the watchers on A, B and C")
for w in watchers:
    w.pump(1.0)
counts = [sum(1 for h, _ in w.obj("items/vase")["sends"] if h == "auctionClosed")
          for w in watchers]
check(counts == [1, 1, 1], "each watcher got exactly one auctionClosed (%s)" % counts)
sts = [w.obj("items/vase")["state"] for w in watchers]
check(all(s.get("winner") == sts[0].get("leader") and s.get("winner") == sts[0].get("winner")
          and s.get("price") == sts[0].get("price") for s in sts) and sts[0].get("winner"),
      "every node: the same winner %r at %r" % (sts[0].get("winner"), sts[0].get("price")))
args = [a for w in watchers for h, a in w.obj("items/vase")["sends"] if h == "auctionClosed"]
check(all(a and a[0].get("winner") == sts[0].get("winner") and a[0].get("price") ==
          sts[0].get("price") for a in args), "auctionClosed names that winner and price")
xs = redis.cmd("XRANGE", "so:{%s}:x:items/vase" % INST, "-", "+")
ncl = sum(1 for e in (xs or []) if b"closed" in (e[1][1] if isinstance(e[1][1], bytes)
                                                  else e[1][1].encode("latin-1", "replace")))
check(ncl == 1, "one update in Redis' stream closed the item (%d)" % ncl)
check(log_count(cl, "auction: a1/vase closed") == 1,
      "one node logged the close (%d)" % log_count(cl, "auction: a1/vase closed"))

# a node killed with -9 during an auction, started again before its end
r = admin.wait_result(admin.call("auction.create", "lamp", "Lamp", 5, 5, 1))
check(r and r.get("ok"), "admin on A creates lamp, 5 s (%s)" % r)
# bob's node knows the item once the catalog names it (the creator's node
# writes the catalog after the item)
check(watchers[1].use("catalog") and watchers[1].until(
    lambda: "lamp" in watchers[1].obj("catalog")["state"], 5.0), "B's catalog lists lamp")
r = bob.wait_result(bob.call("auction.bid", "lamp", 5))
check(r and r.get("ok"), "bob (B) bids on lamp (%s)" % r)
for w in watchers[::2]:
    w.use("items/lamp")
cl.kill(1)
note("node B killed with -9")
bob.close()
check(cl.restart(1), "node B started again")
wb = Client(B, INST)
check(wb.use("items/lamp"), "a watcher on the restarted B uses lamp")
watchers2 = [watchers[0], wb, watchers[2]]
check(all(w.until(lambda w=w: w.obj("items/lamp")["state"].get("state") == "closed", 15.0)
          for w in watchers2), "lamp closed for the watchers on A, the restarted B and C")
for w in watchers2:
    w.pump(1.5)
counts = [sum(1 for h, _ in w.obj("items/lamp")["sends"] if h == "auctionClosed")
          for w in watchers2]
check(counts == [1, 1, 1], "one auctionClosed each (%s)" % counts)
check(log_count(cl, "auction: a1/lamp closed") == 1,
      "one node logged lamp's close (%d)" % log_count(cl, "auction: a1/lamp closed"))
check(all(w.obj("items/lamp")["state"].get("winner") == "bob" for w in watchers2),
      "bob won lamp on every node")
vv = redis_obj_version(redis, INST, "items/lamp")
cl.kill(2)
check(cl.restart(2), "node C killed with -9 and started again after the close")
time.sleep(1.5)
check(redis_obj_version(redis, INST, "items/lamp") == vv and
      log_count(cl, "auction: a1/lamp closed") == 1, "the close is not repeated (version %s)"
      % redis_obj_version(redis, INST, "items/lamp"))
for w in [admin, carol, dave, wb] + watchers:
    w.close()

# ------------------------------------------------------------ slideshow
SS = "slideshow/talk"
alice = Client(A, SS, "alice")
check(alice.use("stage") and alice.until(
    lambda: alice.obj("stage")["state"].get("presenter") == "alice", 5.0),
    "alice (A), first to connect, presents")
bobs = Client(B, SS, "bob")
viewer = Client(C, SS, "viewer")
check(bobs.use("show") and viewer.use("show") and viewer.use("stage"), "bob (B) and a viewer "
      "(C) use show and stage")
bobs.change("show", {"slide": 9})
check(bobs.until(lambda: "SharedObject.NoWriteAccess" in bobs.obj("show")["errors"], 5.0),
      "bob cannot write show yet (NoWriteAccess)")
r = alice.wait_result(alice.call("slideshow.handoff", "bob"))
check(r and r.get("ok"), "alice hands over to bob (%s)" % r)
check(viewer.until(lambda: viewer.obj("stage")["state"].get("presenter") == "bob", 5.0),
      "the viewer on C sees bob present")
# bob's node learns the hand-off within a poll period: his write goes through
ok = False
deadline = time.monotonic() + 5.0
while time.monotonic() < deadline and not ok:
    n0 = bobs.obj("show")["successes"]
    bobs.change("show", {"slide": 3})
    bobs.until(lambda: bobs.obj("show")["successes"] > n0 or
               len(bobs.obj("show")["errors"]) > 1, 1.0)
    ok = bobs.obj("show")["successes"] > n0
    if not ok:
        bobs.obj("show")["errors"][1:] = []
        time.sleep(0.1)
check(ok, "bob, on B, may now write show")
check(viewer.until(lambda: viewer.obj("show")["state"].get("slide") == 3, 5.0),
      "the viewer on C sees bob's slide")
r = alice.wait_result(alice.call("slideshow.handoff", "alice"))
check(r and not r.get("ok") and code_of(r) == "Slideshow.Denied",
      "alice no longer presents: Slideshow.Denied (%s)" % r)
for x in (alice, bobs, viewer):
    x.close()
# two first users at once on two nodes: one presenter
firsts = []
ts = [threading.Thread(target=lambda n=n, u=u: firsts.append(Client(n, "slideshow/t2", u)))
      for n, u in ((B, "carol"), (C, "dave"))]
for t in ts:
    t.start()
for t in ts:
    t.join(10)
check(len(firsts) == 2, "carol (B) and dave (C) connected at once")
for f in firsts:
    f.use("stage")
pres = [None, None]
check(all(f.until(lambda f=f: f.obj("stage")["state"].get("presenter") in ("carol", "dave"),
                  5.0) for f in firsts), "both see a presenter")
time.sleep(0.5)
for f in firsts:
    f.pump(0.3)
pres = [f.obj("stage")["state"].get("presenter") for f in firsts]
check(pres[0] == pres[1] and log_count(cl, "presents slideshow/t2 (first to connect)") == 1,
      "one presenter for both (%s), set once (%d)"
      % (pres, log_count(cl, "presents slideshow/t2 (first to connect)")))
for f in firsts:
    f.close()

# ------------------------------------------------------------ chat room
CR = "chat/lobby"
posters = [Client(n, CR, "u%d" % i) for i, n in enumerate(cl.nodes)]
for p in posters:
    p.use("room")
N = 10
calls = [[p.call("room.post", "hello %d from %d" % (k, i)) for k in range(N)]
         for i, p in enumerate(posters)]
res = [[p.wait_result(c, 10.0) for c in cs] for p, cs in zip(posters, calls)]
flat = [x for rs in res for x in rs]
check(all(x and x.get("ok") for x in flat), "30 posts at once, 10 on each node: all answered "
      "ok (%d ok)" % sum(1 for x in flat if x and x.get("ok")))
ids = [x["value"]["id"] for x in flat if x and x.get("ok")]
check(len(set(ids)) == len(ids) == 3 * N, "30 distinct message ids (%d distinct)" % len(set(ids)))
def same_room():
    for p in posters:
        p.pump(0.02)
    sts = [p.obj("room")["state"] for p in posters]
    return len(sts[0]) == 3 * N and all(s == sts[0] for s in sts)
check(wait_for(same_room, 5.0), "every node shows the same 30 messages")
texts = sorted(v["text"] for v in posters[0].obj("room")["state"].values())
check(texts == sorted("hello %d from %d" % (k, i) for i in range(3) for k in range(N)),
      "each post is there once")
for p in posters:
    p.close()

st = cl.stop()
check(all(s == 0 for s in st), "every node stopped cleanly (%s)" % st)
redis.stop()
finish()
