#!/usr/bin/env python3
"""test_chaos.py SOHUB_SERVER - issue 15's chaos run: kill -9 of a random
node, 20 times, under load, on three nodes sharing one Redis (appendonly,
appendfsync always).

Load, on every node from the start (WebSocket clients, clients.py):
  - a writer of the persistent object `board`: changes its own slots,
    four in flight; every change answered Success is recorded with its
    value and version;
  - a subscriber of `board`, which only watches;
  - two chat users, each sending private messages (with clientIds) to a
    user of the next node and receiving those of the previous node's;
    every answered send is recorded with its id.

Each round kills a random node with SIGKILL and starts it again.  A
client whose node died reconnects to the live node with the fewest
clients (as a load balancer's leastconn would) and resumes: a shared-object
client with Use(its version), which must be answered with a diff; a chat
user with its unanswered send retried under the same clientId.

Checked: 0 acknowledged changes lost (the final state has every slot at
or past its last acknowledged value), versions never go backwards on any
client, every subscriber ends with the state of a fresh client; every
answered private message reaches its recipient, each id with one text
(delivery is at least once: duplicates by id are counted, not failures),
ids strictly increasing on each connection, 0 ids reused, 0 messages
stored twice."""

import os
import random
import sys
import threading
import time

from clients import ChatClient, SoClient
from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for

APP = "chaos"
ROOM = APP + "/r1"
OBJ = "board"
ROUNDS = 20
LOAD_S = 1.2          # load between a restart and the next kill
WINDOW = 4            # changes a writer has in flight
EXTRA = """
[cluster]
timeout_ms = 3000
[server]
http_listen = 127.0.0.1:0
so_max_updates_per_sec = 0
[app %s]
chat_rate = 0
chat_queue = 100000
""" % APP
UP = "up: clustered applications are served"

need_redis()
seed = int(os.environ.get("CHAOS_SEED", "0")) or random.randrange(1, 1 << 30)
rng = random.Random(seed)
note("seed %d (CHAOS_SEED=%d repeats the kills)" % (seed, seed))
redis = Redis(aof=True)
check(redis.start(), "redis-server (appendfsync always) on 127.0.0.1:%d" % redis.port)
cl = Cluster(sys.argv[1], redis, n=3, extra=EXTRA)
nodes = cl.nodes


def ups(i):
    return nodes[i].log_text().count(UP)


check(cl.start() and wait_for(lambda: all(ups(i) >= 1 for i in range(3)), 10.0),
      "three nodes up, each with its Redis link")

# ---- what the actors share ----
lock = threading.Lock()
alive = [True, True, True]   # a client may connect to the node
up_since = [0.0, 0.0, 0.0]   # when it came back
load = [0, 0, 0]             # clients per node
stop = threading.Event()
errors = []                  # what went wrong in an actor (each one a failure)
stats = {"reconnects": 0, "moves": 0, "diff": 0, "full": 0, "full_uncovered": 0, "stale": 0,
         "refused": 0, "retried": 0, "dups": 0}
acked = []                   # (slot, value, version) of every Success
answered = {}                # recipient -> {id: text}
received = {}                # recipient -> {id: text}
stored_twice = []


def bump(k, n=1):
    with lock:
        stats[k] += n


def fail(what):
    with lock:
        errors.append(what)


def redis_version():
    v = redis.cmd("HGET", "so:{%s}:o" % ROOM, OBJ)
    return int(v) if isinstance(v, (int, str)) else 0


def place(make, home=None, timeout=10.0):
    """Connects with make(node) to home, or to the live node with the fewest
    clients; returns (node index, client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lock:
            up = [i for i in range(3) if alive[i]]
            i = home if home is not None else (min(up, key=lambda k: load[k]) if up else None)
            if i is not None:
                load[i] += 1
        if i is None:
            time.sleep(0.05)
            continue
        try:
            return i, make(nodes[i])
        except Exception:
            with lock:
                load[i] -= 1
            home = None
            time.sleep(0.05)
    raise RuntimeError("no node took a connection within %.0f s" % timeout)


def leave(i):
    with lock:
        load[i] -= 1


def back_home(a):
    """a's node is not its home, and home has been up for a's delay: a
    client spread is what a balancer gives new clients, so the next kill
    finds writers and chat users on every node."""
    with lock:
        return (a.i != a.home and alive[a.home] and
                time.monotonic() - up_since[a.home] > a.delay)


class SoActor:
    """A client of `board` that survives its node: Use(version) elsewhere.
    `versions` is every version it was sent, in order, over every
    connection."""

    def __init__(self, home):
        self.home, self.delay = home, rng.uniform(0.1, 0.5)
        self.i, self.c = place(lambda n: SoClient(n, ROOM, OBJ), home)
        self.versions = []
        self.seen = 0
        if not self.c.use(0):
            raise RuntimeError("first Use not answered")

    def note_versions(self):
        with self.c.lock:
            new = self.c.msgs[self.seen:]
            self.seen = len(self.c.msgs)
        for m in new:
            if self.versions and m["version"] < self.versions[-1]:
                fail("%s: version %d after %d" % (self.name, m["version"], self.versions[-1]))
            self.versions.append(m["version"])

    def resume(self, home=None):
        """The node died (or we go home): connect elsewhere and Use with
        what we had."""
        self.note_versions()
        leave(self.i)
        bump("moves" if home is not None else "reconnects")
        state, v = self.c.snapshot()
        self.c.close()
        deadline = time.monotonic() + 20
        while True:
            self.i, self.c = place(lambda n: SoClient(n, ROOM, OBJ, state=state, version=v),
                                   home)
            home = None
            self.seen = 0
            if self.c.use(v):
                break
            leave(self.i)  # that node died too, or did not answer: elsewhere
            self.c.close()
            if time.monotonic() > deadline:
                raise RuntimeError("%s: no node answered Use(%d) in 20 s" % (self.name, v))
        with self.c.lock:
            first = [e["t"] for m in self.c.msgs for e in m["events"]]
            at = self.c.msgs[-1]["version"] if self.c.msgs else v
        if "clear" in first:
            # the stream (and so the node's history) keeps 256 updates at
            # least: a client less far behind must get a diff
            bump("full")
            if at - v <= 256:
                fail("%s: Clear and everything for version %d (node at %d)" %
                     (self.name, v, at))
            else:
                bump("full_uncovered")
        else:
            bump("diff")
        self.note_versions()


class Writer(SoActor):
    def __init__(self, k):
        self.name = "writer%d" % k
        self.k = k
        super().__init__(k)

    def run(self):
        seq, pending = 0, {}  # slot -> (value, when sent): WINDOW changes in flight
        self.scan = len(self.c.msgs)
        while True:
            if self.c.closed:
                pending.clear()  # unanswered: stored or not, nothing is claimed
            moving = not self.c.closed and back_home(self)
            if self.c.closed or (moving and not pending):
                self.resume(self.home if moving else None)
                self.scan = len(self.c.msgs)
            if stop.is_set() and not pending:
                break
            while not stop.is_set() and not moving and len(pending) < WINDOW:
                seq += 1
                slot = next("w%d-%d" % (self.k, j) for j in range(WINDOW)
                            if "w%d-%d" % (self.k, j) not in pending)
                pending[slot] = (seq, time.monotonic())
                try:
                    self.c.change({slot: seq})
                except OSError:
                    self.c.closed = True
                    break
            self.answers(pending)
            late = [k for k, (_, t) in pending.items() if time.monotonic() - t > 5.0]
            if late and not self.c.closed:
                fail("%s: changes of %s not answered in 5 s" % (self.name, late))
                for k in late:
                    del pending[k]
            self.note_versions()
            time.sleep(0.004)
        self.note_versions()

    def answers(self, pending):
        """Success for a pending slot: acknowledged at that message's
        version; a Change of one: refused as stale (rule 3).  Stale
        happens here when a change the dead node had sent reached Redis
        after our Use on the next node: the new connection is another
        writer to Redis, and its change was based on an older version."""
        with self.c.lock:
            new = self.c.msgs[self.scan:]
            self.scan += len(new)
        for m in new:
            for e in m["events"]:
                if e["t"] == "success" and e.get("key") in pending:
                    with lock:
                        acked.append((e["key"], pending.pop(e["key"])[0], m["version"]))
                elif e["t"] == "change":
                    for k, _ in e["slots"]:
                        if pending.pop(k, None):
                            bump("stale")
                elif e["t"] == "status":
                    fail("%s: %r" % (self.name, e))


class Watcher(SoActor):
    def __init__(self, k):
        self.name = "watcher%d" % k
        super().__init__(k)

    def run(self):
        while not stop.is_set():
            if self.c.closed:
                self.resume()
            elif back_home(self):
                self.resume(self.home)
            self.note_versions()
            time.sleep(0.05)
        self.note_versions()


class ChatUser:
    """A user sending to `to` and receiving from another one.  Each send
    waits for its answer; one without an answer (its node died) is sent
    again with the same clientId from the next node."""

    def __init__(self, k, to, home):
        self.name, self.to = "u%d" % k, to
        self.home, self.delay = home, rng.uniform(0.1, 0.5)
        self.i, self.c = place(lambda n: ChatClient(n, APP, self.name), home)
        self.conn = 0
        self.last = 0          # last id on this connection
        self.seen = 0
        self.sent = 0
        with lock:
            answered.setdefault(to, {})
            received.setdefault(self.name, {})

    def reconnect(self, home=None):
        leave(self.i)
        bump("moves" if home is not None else "reconnects")
        self.c.close()
        self.i, self.c = place(lambda n: ChatClient(n, APP, self.name), home)
        self.conn += 1
        self.last = 0
        self.seen = 0

    def take(self):
        """Records what arrived: ids strictly increasing on a connection,
        one text per id."""
        new = self.c.msgs[self.seen:]
        self.seen = len(self.c.msgs)
        mine = received[self.name]
        for m in new:
            i, t = m["id"], m["text"]
            if i <= self.last:
                fail("%s: id %d after %d on one connection" % (self.name, i, self.last))
            self.last = i
            with lock:
                if i in mine:
                    stats["dups"] += 1
                    if mine[i] != t:
                        fail("%s: id %d given to %r and %r" % (self.name, i, mine[i], t))
                mine[i] = t
        if new:
            try:
                self.c.call("chat.ack", self.last)  # cumulative; answer not awaited
            except OSError:
                self.c.closed = True

    def send_one(self, text, deadline):
        """Sends text (clientId = text) until answered or deadline."""
        tries = 0
        while time.monotonic() < deadline:
            if self.c.closed:
                self.reconnect()
            try:
                r = self.c.send(self.to, text, text, timeout=5.0)
            except OSError:
                self.c.closed = True
                r = None
            self.take()
            tries += 1
            if r and r.get("ok"):
                v = r["value"]
                with lock:
                    ids = answered[self.to]
                    if v["id"] in ids and ids[v["id"]] != text:
                        fail("id %d of %s answered for %r and %r" %
                             (v["id"], self.to, ids[v["id"]], text))
                    ids[v["id"]] = text
                    if tries > 1:
                        stats["retried"] += 1
                return True
            if r:  # refused (StoreFailed while a node's link came up): again
                time.sleep(0.05)
            elif not self.c.closed:
                fail("%s: send %s not answered in 5 s on a live node" % (self.name, text))
        fail("%s: send %s never answered" % (self.name, text))
        return False

    def run(self):
        while not stop.is_set():
            if not self.c.closed and back_home(self):
                self.reconnect(self.home)
            self.sent += 1
            self.send_one("%s-%d" % (self.name, self.sent), time.monotonic() + 20)
            time.sleep(0.01)

    def drain(self, timeout):
        """After the load: reads until every message answered to us came."""
        deadline = time.monotonic() + timeout
        want = answered[self.name]
        while time.monotonic() < deadline:
            if self.c.closed:
                self.reconnect()
            if set(want) <= set(received[self.name]):
                return True
            self.c.until(lambda: len(self.c.msgs) > self.seen, 0.2)
            self.take()
        return set(want) <= set(received[self.name])


def guarded(fn):
    def run():
        try:
            fn()
        except Exception as e:  # an actor that dies is a failure, said once
            fail("%s: %r" % (fn.__qualname__, e))
    return run


writers = [Writer(k) for k in range(3)]
watchers = [Watcher(k) for k in range(3)]
users = [ChatUser(k, "u%d" % ((k + 2) % 6), k // 2) for k in range(6)]
threads = [threading.Thread(target=guarded(a.run), daemon=True)
           for a in writers + watchers + users]
t0 = time.monotonic()
for t in threads:
    t.start()
time.sleep(LOAD_S)

# ---- the rounds ----
kills = []
for r in range(ROUNDS):
    i = rng.randrange(3)
    before = ups(i)
    with lock:
        alive[i] = False
        on_it = load[i]
    cl.kill(i)
    kills.append((i, on_it))
    ok = cl.restart(i) and wait_for(lambda: ups(i) > before, 10.0)
    if not ok:
        fail("round %d: node n%d did not come back" % (r + 1, i))
        break
    with lock:
        alive[i] = True
        up_since[i] = time.monotonic()
    time.sleep(LOAD_S)
load_s = time.monotonic() - t0
stop.set()
for t in threads:
    t.join(30)
check(not any(t.is_alive() for t in threads), "every client stopped within 30 s")
check(len(kills) == ROUNDS, "%d rounds of kill -9 of a random node (%s) and its restart, "
      "under load" % (len(kills), " ".join("n%d:%d" % k for k in kills)))

# ---- chat: every answered message arrived ----
drained = all(u.drain(15.0) for u in users)
n_answered = sum(len(v) for v in answered.values())
lost = {u: sorted(set(answered[u]) - set(received[u]))[:5]
        for u in answered if set(answered[u]) - set(received[u])}
check(drained and not lost, "every one of the %d answered private messages reached its "
      "recipient (missing: %s)" % (n_answered, lost))
unordered = [u for u in answered
             if any(a >= b for a, b in zip(list(answered[u]), list(answered[u])[1:]))]
check(not unordered, "each user's ids, in the order its one sender was answered, strictly "
      "increase: 0 ids reused (%s)" % unordered)
wrong = [(u, i) for u in answered for i, t in answered[u].items()
         if received[u].get(i, t) != t]
check(not wrong, "each under the id its sender was answered (%s)" % wrong[:5])
for u in received:
    texts = {}
    for i, t in received[u].items():
        if t in texts:
            stored_twice.append((u, t, texts[t], i))
        texts[t] = i
check(not stored_twice, "no message stored twice: a retried clientId got its first answer "
      "(%s)" % stored_twice[:5])

# ---- shared object: nothing acknowledged lost, one state everywhere ----
check(wait_for(lambda: all(w.c.snapshot()[1] == redis_version() for w in watchers), 10.0),
      "every subscriber reached Redis' version %d (%s)" %
      (redis_version(), [w.c.snapshot()[1] for w in watchers]))
fresh = [SoClient(n, ROOM, OBJ) for n in nodes]
check(all(f.use(0) for f in fresh) and
      wait_for(lambda: all(f.snapshot()[1] == redis_version() for f in fresh), 5.0),
      "a new client on each node reads the object at Redis' version")
final = fresh[0].snapshot()[0]
check(all(f.snapshot()[0] == final for f in fresh) and
      all(w.c.snapshot()[0] == final for w in watchers),
      "every subscriber, after its resumes with a diff, has the state of a new client")
last = {}
for slot, value, version in acked:
    if value > last.get(slot, (0, 0))[0]:
        last[slot] = (value, version)
behind = [(s, final.get(s), v) for s, (v, _) in last.items()
          if not isinstance(final.get(s), int) or final[s] < v]
check(acked and not behind, "0 of the %d acknowledged changes lost: every slot holds its "
      "last acknowledged value or a later one (%s)" % (len(acked), behind[:5]))
top = max(v for _, _, v in acked) if acked else 0
check(redis_version() >= top, "Redis' version %d is not below the highest acknowledged (%d)"
      % (redis_version(), top))
for a in writers + watchers:
    for x, y in zip(a.versions, a.versions[1:]):
        if y < x:
            fail("%s: version %d after %d" % (a.name, y, x))
check(not errors, "versions never went backwards, every change and send was answered, "
      "every resume was a diff (%d problems: %s)" % (len(errors), errors[:5]))
check(stats["full"] == stats["full_uncovered"], "no Clear where the history covered the "
      "client's version")
note("figures: %d rounds in %.1f s of load; %d changes acknowledged (%d stale, %d refused), "
     "%d private messages answered (%d after a retry with the same clientId, %d delivered "
     "again by id); %d reconnects after a kill, %d moves back to a restarted node; resumes of the object: %d with a diff, %d with Clear and "
     "everything (%d beyond the history)" %
     (len(kills), load_s, len(acked), stats["stale"], stats["refused"], n_answered,
      stats["retried"], stats["dups"], stats["reconnects"], stats["moves"], stats["diff"], stats["full"],
      stats["full_uncovered"]))

for f in fresh:
    f.close()
for a in writers + watchers:
    a.c.close()
for u in users:
    u.c.close()
for n in nodes:
    t = n.log_text()
    if "AddressSanitizer" in t or "runtime error" in t:
        note(t[-3000:])
        check(False, "a node's log has a sanitizer report")
check(cl.stop() == [0, 0, 0], "the nodes stop cleanly")
redis.stop()
finish()
