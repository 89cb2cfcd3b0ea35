#!/usr/bin/env python3
"""test_chat_cluster.py SOHUB_SERVER - private messages and presence of a
clustered application across three nodes (docs/cluster-chat.md).

A redis-server of the test's own (appendonly, appendfsync always), three
sohub-server nodes pointed at it, and browsers' clients: the sohub.v1
WebSocket protocol spoken by tests/ws/wsutil.py's client (frames checked by
python3-websockets).  Every message a sender had answered must reach its
recipient, in strictly increasing id order on each connection, across
nodes, a kill -9 of the recipient's node and Redis going away."""

import os
import shutil
import signal
import sys
import time

import json

from clients import ChatClient
from clusterutil import Admin, Cluster, Redis, check, finish, need_redis, note, wait_for

APP = "pm"
WKEY = "cluster-chat-write-key-0123456789"
# timeout_ms: Redis fsyncs every write (appendfsync always) on a disk the
# test shares with others; a stall of a second must not fail a send.
EXTRA = """
[cluster]
timeout_ms = 3000
[server]
http_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
[api_key backend]
secret = %s
scope = write
[app %s]
presence = true
chat_rate = 0
chat_queue = 100000
""" % (WKEY, APP)


def Client(node, user, inst="room1", timeout=5.0):
    """A user's WebSocket connection to instance inst of APP on a node."""
    return ChatClient(node, APP, user, inst, timeout)


def subscribed(user, n=1, timeout=5.0):
    """Waits until n nodes subscribed to user's channel (so a send is
    answered 'delivered')."""
    ch = "sohub:chat:{%d:%s:%s}:c" % (len(APP), APP, user)

    def numsub():
        r = redis.cmd("PUBSUB", "NUMSUB", ch)
        return isinstance(r, list) and len(r) == 2 and r[1] >= n
    return bool(wait_for(numsub, timeout))


def send_when_up(c, to, text, timeout=15.0):
    """Sends until a node whose link is back stores it; the answer's value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = ok_value(c.send(to, text))
        if r:
            return r
        time.sleep(0.1)
    return None


UP = "up: clustered applications are served"


def ups():
    return [n.log_text().count(UP) for n in cl.nodes]


def all_back(before, timeout=15.0):
    """Every node logged its link up again since `before` (ups())."""
    return bool(wait_for(lambda: all(a > b for a, b in zip(ups(), before)), timeout))


def increasing(ids):
    return all(a < b for a, b in zip(ids, ids[1:]))


def ok_value(r):
    return r["value"] if r and r.get("ok") else None


need_redis()
server = sys.argv[1]
redis = Redis(aof=True)
check(redis.start(), "redis-server (appendfsync always) on 127.0.0.1:%d" % redis.port)
cl = Cluster(server, redis, n=3, extra=EXTRA)
check(cl.start(), "three nodes up, each with its heartbeat key")
n0, n1, n2 = cl.nodes

# ---- 1. from a user on n0 to a user on n1 ----
alice = Client(n0, "alice")
bob = Client(n1, "bob")
check(subscribed("bob") and subscribed("alice"), "n1 subscribed to bob's channel, n0 to alice's")
r = ok_value(alice.send("bob", "hello bob"))
# an id is Redis' clock in microseconds (docs/cluster-chat.md, Ids)
check(r and abs(r["id"] / 1e6 - time.time()) < 60 and r["status"] == "delivered",
      "alice (n0) -> bob (n1): answered with an id from Redis' clock, delivered (%s)" % r)
bob.until(lambda: len(bob.msgs) >= 1, 5.0)
m = bob.msgs[0] if bob.msgs else {}
check(r and m.get("id") == r["id"] and m.get("from") == "alice" and m.get("to") == "bob" and
      m.get("text") == "hello bob", "bob got it on n1 with the same id (%s)" % m)
r = ok_value(bob.send("alice", "hi alice"))
alice.until(lambda: len(alice.msgs) >= 1, 5.0)
check(r and r["status"] == "delivered" and alice.msgs and alice.msgs[0]["id"] == r["id"] and
      alice.msgs[0]["text"] == "hi alice", "and back from n1 to n0 (%s)" % r)
odd = "two\nlines, \u00e9t\u00e9 \U0001f600 and {braces}"
r = ok_value(alice.send("bob", odd))
bob.until(lambda: len(bob.msgs) >= 2, 5.0)
check(r and bob.msgs[-1:] and bob.msgs[-1]["text"] == odd and bob.msgs[-1]["id"] == r["id"],
      "a text with a newline and non-ASCII characters arrives unchanged")
# the server API of a third node takes the same path
api = Admin(n2.ports["admin"], WKEY)
st, body = api.request("POST", "/api/v1/apps/%s/chat/messages" % APP,
                       json.dumps({"to": "bob", "text": "from the API"}))
v = json.loads(body or b"{}")
bob.until(lambda: bob.msgs[-1:] and bob.msgs[-1]["text"] == "from the API", 5.0)
check(st == 200 and v.get("status") == "delivered" and bob.msgs[-1]["id"] == v.get("id") and
      bob.msgs[-1]["from"] == "system", "POST .../chat/messages on n2 reaches bob on n1 (%s %s)" %
      (st, v))
st, body = api.request("GET", "/api/v1/apps/%s/chat/users/bob" % APP)
v = json.loads(body or b"{}")
check(st == 200 and v.get("last_id") == bob.msgs[-1]["id"] and v.get("acked") == 0 and
      v.get("queued") == len(bob.msgs) == 3,
      "GET .../chat/users/bob on n2 reads bob's counters from Redis (%s)" % v)
api.close()
r = bob.send("bob", "me")
check(r and not r["ok"] and r["value"]["code"] == "Chat.Denied", "to oneself still refused")

# ---- 2. offline queue, delivered on a third node, then live ones ----
N_OFF = 150
sent = [alice.call("chat.sendPrivate", "carol", "off %d" % i) for i in range(N_OFF)]
res = [alice.wait_result(i) for i in sent]
vals = [ok_value(x) for x in res]
check(all(v and v["status"] == "queued" for v in vals),
      "%d messages to carol (offline) answered queued" % N_OFF)
cids = [v["id"] for v in vals if v]
check(len(cids) == N_OFF and increasing(cids), "with ids increasing in the order sent")
check(redis.cmd("ZCARD", "sohub:chat:{%d:%s:carol}:q" % (len(APP), APP)) == N_OFF,
      "Redis holds carol's %d messages" % N_OFF)
carol = Client(n2, "carol")
# live messages while the backlog goes out: they must come after it
live = [alice.call("chat.sendPrivate", "carol", "live %d" % i) for i in range(30)]
lres = [ok_value(alice.wait_result(i)) for i in live]
check(all(v for v in lres), "30 more answered while carol's backlog goes out (%s)" %
      sorted(set(v["status"] for v in lres if v)))
total = N_OFF + 30
carol.until(lambda: len(carol.msgs) >= total, 10.0)
ids = carol.ids()
want = cids + [v["id"] for v in lres if v]
texts = dict(zip(want, ["off %d" % i for i in range(N_OFF)] + ["live %d" % i for i in range(30)]))
check(ids == want,
      "carol on n2 got the %d answered ids in order, each once (got %d, first missing %s)" %
      (total, len(ids), [x for x in want if x not in ids][:5]))
check(all(m["text"] == texts.get(m["id"]) for m in carol.msgs),
      "every id carries the text it was answered for")

# ---- 3. ack trims; unacked are redelivered after a reconnect elsewhere ----
a = ok_value(carol.ack(want[99]))
check(a and a["acked"] == want[99], "carol acks her 100th (%s)" % a)
check(redis.cmd("ZCARD", "sohub:chat:{%d:%s:carol}:q" % (len(APP), APP)) == total - 100,
      "Redis trimmed the queue to %d" % (total - 100))
a = ok_value(carol.ack(want[-1] + 10 ** 9))
check(a and a["acked"] == want[-1], "an ack past the last id stops at it (%s)" % a)
a = ok_value(carol.ack(want[119]))
check(a and a["acked"] == want[-1], "acks are cumulative: a lower one changes nothing (%s)" % a)
carol.close()
later = [(ok_value(alice.send("carol", "later %d" % i)) or {}).get("id") for i in range(5)]
carol = Client(n0, "carol")
carol.until(lambda: len(carol.msgs) >= 5, 5.0)
carol.pump(0.3)
check(carol.ids() == later and increasing(later),
      "reconnected on n0: only the 5 unacked ones (%s)" % carol.ids())
carol.close()
carol = Client(n1, "carol")
carol.until(lambda: len(carol.msgs) >= 5, 5.0)
carol.pump(0.3)
check(carol.ids() == later,
      "not acked: delivered again on n1 (%s)" % carol.ids())
carol.ack(later[-1])
carol.close()

# ---- 4. two connections of one user on two nodes ----
dan1 = Client(n0, "dan")
dan2 = Client(n2, "dan")
check(subscribed("dan", 2), "two nodes subscribed to dan's channel")
dan_ids = [(ok_value(bob.send("dan", "both %d" % i)) or {}).get("id") for i in range(20)]
dan1.until(lambda: len(dan1.msgs) >= 20, 5.0)
dan2.until(lambda: len(dan2.msgs) >= 20, 5.0)
check(all(dan_ids) and increasing(dan_ids) and
      dan1.ids() == dan_ids and dan2.ids() == dan_ids,
      "dan's connections on n0 and n2 both got his 20 ids in order")
dan1.close()
dan2.close()

# ---- 5. kill -9 of the recipient's node while messages flow ----
eve = Client(n1, "eve")
subscribed("eve")
N_FLOW = 400
calls = [alice.call("chat.sendPrivate", "eve", "flow %d" % i, "c%d" % i)
         for i in range(N_FLOW // 2)]
alice.wait_result(calls[N_FLOW // 4])
eve.until(lambda: len(eve.msgs) >= 10, 5.0)
cl.kill(1)  # eve's node, while the rest of the first half is on its way
calls += [alice.call("chat.sendPrivate", "eve", "flow %d" % i, "c%d" % i)
          for i in range(N_FLOW // 2, N_FLOW)]
answered = {}
for k, i in enumerate(calls):
    v = ok_value(alice.wait_result(i))
    if v:
        answered[v["id"]] = "flow %d" % k
check(len(answered) == N_FLOW, "n1 killed with -9 mid-flow: all %d sends from n0 answered "
      "(the recipient's node is not in the path)" % len(answered))
check(len(set(answered)) == len(answered), "no id answered twice")
got_before = list(eve.msgs)
eve2 = Client(n2, "eve")
eve2.until(lambda: set(answered) <= set(eve2.ids()), 10.0)
ids = eve2.ids()
check(set(answered) <= set(ids), "eve reconnected on n2: 0 answered messages lost (%d missing)" %
      len(set(answered) - set(ids)))
check(len(got_before) >= 10 and increasing(ids) and
      increasing([m["id"] for m in got_before]),
      "ids strictly increasing on each of eve's connections (%d before the kill)" %
      len(got_before))
check(all(answered.get(m["id"], m["text"]) == m["text"] for m in eve2.msgs),
      "each id carries the text it was answered for")
r = ok_value(alice.send("eve", "after the kill"))
check(r and r["id"] > max(answered), "the next id is above every one given (%s): none "
      "reused" % r)
eve2.until(lambda: eve2.ids()[-1:] == [r["id"]], 5.0)
check(eve2.ids()[-1:] == [r["id"]], "and goes out live after the backlog")
# a retry of a clientId gets its first answer, from any node
again = ok_value(alice.send("eve", "flow 0", "c0"))
first = [k for k, t in answered.items() if t == "flow 0"]
check(again and first and again["id"] == first[0],
      "a retried clientId is answered with its first id (%s)" % again)
check(cl.restart(1), "n1 restarted")

# ---- 5b. kill -9 of the sender's node: retries with the same clientIds ----
kim = Client(n1, "kim")
lee = Client(n2, "lee")
subscribed("lee")
N_K = 300
kcalls = [kim.call("chat.sendPrivate", "lee", "k%d" % i, "k%d" % i) for i in range(N_K)]
kim.wait_result(kcalls[N_K // 3])
cl.kill(1)
kim.pump(0.2)
kanswered = {}
for k, i in enumerate(kcalls):
    v = ok_value(kim.results.get(i))
    if v:
        kanswered["k%d" % k] = v["id"]
note("%d of %d answered before kim's node died" % (len(kanswered), N_K))
kim = Client(n0, "kim")
retry = {}
for k in range(N_K):
    if "k%d" % k not in kanswered:
        retry["k%d" % k] = kim.call("chat.sendPrivate", "lee", "k%d" % k, "k%d" % k)
for t, i in retry.items():
    v = ok_value(kim.wait_result(i))
    if v:
        kanswered[t] = v["id"]
check(len(kanswered) == N_K, "kim reconnected on n0, retried %d unanswered sends with their "
      "clientIds: all %d answered" % (len(retry), N_K))
lee.until(lambda: len(lee.msgs) >= N_K, 8.0)
lee.pump(0.3)
texts = [m["text"] for m in lee.msgs]
check(sorted(texts) == sorted(kanswered) and increasing(lee.ids()),
      "lee got each of the %d texts exactly once, in id order (%d messages)" %
      (N_K, len(texts)))
check(all(kanswered[m["text"]] == m["id"] for m in lee.msgs),
      "under the id its sender was answered, also for the retried ones")
kim.close()
lee.close()
check(cl.restart(1), "n1 restarted")

# ---- 6. presence from every node; a killed node's users disappear ----
frank = Client(n0, "frank", inst="lobby")
gina = Client(n1, "gina", inst="lobby")
gina2 = Client(n2, "gina", inst="lobby")
watch = Client(n2, "watch", inst="lobby")
check(watch.use_presence(), "a client on n2 uses the lobby's presence object")
want = {"frank": 1, "gina": 2, "watch": 1}


def counts(c):
    return {k: v.get("connections") for k, v in c.presence.items()}


watch.until(lambda: counts(watch) == want, 5.0)
check(counts(watch) == want, "n2 shows users of every node with their totals (%s)" % counts(watch))
check(frank.use_presence() and frank.until(lambda: counts(frank) == want, 5.0),
      "n0 shows the same (%s)" % counts(frank))
s = watch.presence.get("frank", {}).get("since", 0)
check(abs(s / 1000.0 - time.time()) < 60, "since is a wall-clock time in ms (%s)" % s)
gina2.close()
want["gina"] = 1
check(watch.until(lambda: counts(watch) == want, 5.0),
      "gina's second connection closed on n2: 1 left (%s)" % counts(watch))
ttl_ms = 3000
t0 = time.monotonic()
cl.kill(1)
gone = watch.until(lambda: "gina" not in watch.presence, 8.0)
dt = (time.monotonic() - t0) * 1000
check(gone and dt <= ttl_ms + ttl_ms // 6 + 1000,
      "n1 killed: its user gone from n2's presence after %.0f ms (node_ttl_ms %d, sweep "
      "every %d)" % (dt, ttl_ms, ttl_ms // 6))
check(frank.until(lambda: "gina" not in frank.presence, 2.0), "and from n0's")
check(counts(watch) == {"frank": 1, "watch": 1}, "the others stay (%s)" % counts(watch))
frank.close()
check(watch.until(lambda: "frank" not in watch.presence, 3.0),
      "frank leaves n0: gone at once from n2's")
watch.close()
check(cl.restart(1), "n1 restarted")

# ---- 7. Redis away: sends refused with a clear error, nothing answered lost ----
hank = Client(n1, "hank")
subscribed("hank")
before = [ok_value(alice.send("hank", "pre %d" % i)) for i in range(10)]
check(all(before), "10 messages to hank answered before Redis goes")
hank.until(lambda: len(hank.msgs) >= 10, 5.0)
hank.close()  # hank did not ack them
pend = [alice.call("chat.sendPrivate", "hank", "racing %d" % i) for i in range(50)]
ups0 = ups()
redis.kill(signal.SIGKILL)
res = [alice.wait_result(i, 8.0) for i in pend]
racing_ok = {v["id"]: "racing %d" % k for k, v in enumerate(ok_value(x) for x in res) if v}
racing_err = [x for x in res if x and not x.get("ok")]
check(len(racing_ok) + len(racing_err) == 50,
      "sends racing Redis' death: each answered, %d stored, %d refused" %
      (len(racing_ok), len(racing_err)))
time.sleep(0.5)
r = alice.send("hank", "while down")
code = r and not r["ok"] and r["value"]["code"]
desc = r and not r["ok"] and r["value"]["description"]
check(code == "Chat.StoreFailed" and "Redis" in desc,
      "a send while Redis is down: %s (%s)" % (code, desc))
r = alice.ack(1)
check(r and not r["ok"] and r["value"]["code"] == "Chat.StoreFailed",
      "an ack while Redis is down is refused too")
check(redis.start(), "redis-server restarted from its AOF")
check(all_back(ups0), "every node's link is up again (%s)" % ups())
r = send_when_up(alice, "hank", "after")
last_before = max([v["id"] for v in before] + list(racing_ok))
check(r and r["id"] > last_before,
      "sends work again; the id %s follows every answered one (%d)" % (r and r["id"], last_before))
hank = Client(n2, "hank")
want_ids = set(v["id"] for v in before) | set(racing_ok) | {r["id"] if r else -1}
hank.until(lambda: want_ids <= set(hank.ids()), 8.0)
check(want_ids <= set(hank.ids()) and increasing(hank.ids()),
      "hank on n2 got every answered message in order, none lost (%d missing)" %
      len(want_ids - set(hank.ids())))
check(all(racing_ok.get(m["id"], m["text"]) == m["text"] for m in hank.msgs),
      "each id carries its text")

# a connection that stays open through the outage gets what was sent meanwhile
ivy = Client(n0, "ivy")
subscribed("ivy")
ivy1 = (ok_value(alice.send("ivy", "one")) or {}).get("id")
ivy.until(lambda: len(ivy.msgs) >= 1, 5.0)
ups0 = ups()
redis.kill(signal.SIGKILL)
time.sleep(0.5)
check(redis.start(), "Redis killed and restarted again, ivy's connection open on n0")
check(all_back(ups0), "every node's link is up again (%s)" % ups())
r = send_when_up(alice, "ivy", "two")
ivy.until(lambda: len(ivy.msgs) >= 2, 8.0)
check(ivy1 and r and ivy.ids() == [ivy1, r["id"]] and r["id"] > ivy1 and ivy.msgs[1]["text"] == "two",
      "ivy got the message sent after the outage on the same connection (%s)" % ivy.ids())

# ---- 8. Redis restarted empty: ids go on above every id given before ----
# (no persistence: the counters are gone; ids come from Redis' clock, so no
# id comes twice and a client's cumulative chat.ack does not hide new
# messages)
jon = Client(n1, "jon")
subscribed("jon")
old_jon = [(ok_value(alice.send("jon", "old %d" % i)) or {}).get("id") for i in range(10)]
jon.until(lambda: len(jon.msgs) >= 10, 5.0)
a = ok_value(jon.ack(old_jon[-1] or 0))
check(all(old_jon) and jon.ids() == old_jon and a and a["acked"] == old_jon[-1],
      "jon (n1) got 10 messages and acknowledged them all (up to %s)" % old_jon[-1])
pam = Client(n2, "pam")
subscribed("pam")
old_pam = [(ok_value(alice.send("pam", "old %d" % i)) or {}).get("id") for i in range(5)]
pam.until(lambda: len(pam.msgs) >= 5, 5.0)
a = ok_value(pam.ack(old_pam[-1] or 0))
check(all(old_pam) and pam.ids() == old_pam and a and a["acked"] == old_pam[-1],
      "pam (n2) got 5 and acknowledged them, then leaves")
pam.close()
ups0 = ups()
redis.kill(signal.SIGKILL)
shutil.rmtree(redis.dir, ignore_errors=True)
os.makedirs(redis.dir)
check(redis.start(), "redis-server restarted empty (its files removed)")
check(all_back(ups0), "every node's link is up again (%s)" % ups())
check(redis.cmd("EXISTS", "sohub:chat:{%d:%s:jon}:n" % (len(APP), APP)) == 0,
      "jon's counters are gone from Redis")
r = send_when_up(alice, "jon", "new 0")
new_jon = [r and r["id"]] + [(ok_value(alice.send("jon", "new %d" % i)) or {}).get("id")
                             for i in range(1, 5)]
check(all(new_jon) and min(new_jon) > old_jon[-1] and increasing(new_jon),
      "5 new messages to jon: ids %s.. above every id he was given before (up to %d)" %
      (new_jon[0], old_jon[-1]))
jon.until(lambda: len(jon.msgs) >= 15, 8.0)
check(jon.ids() == old_jon + new_jon and
      [m["text"] for m in jon.msgs[10:]] == ["new %d" % i for i in range(5)],
      "jon's connection, open through the loss on n1, got the 5 new ones in order (%d "
      "messages)" % len(jon.msgs))
a = ok_value(jon.ack(new_jon[1]))
check(a and a["acked"] == new_jon[1], "jon acknowledges two of them (%s)" % a)
jon.close()
new_pam = [(ok_value(alice.send("pam", "new %d" % i)) or {}).get("id") for i in range(3)]
check(all(new_pam) and min(new_pam) > old_pam[-1],
      "3 new messages to pam (offline), ids above her acknowledged %d" % old_pam[-1])
pam = Client(n0, "pam")
pam.until(lambda: len(pam.msgs) >= 3, 5.0)
pam.pump(0.3)
check(pam.ids() == new_pam and all(i > old_pam[-1] for i in pam.ids()),
      "pam back on n0 gets them: a client that skips ids up to its last ack loses none")
jon = Client(n0, "jon")
jon.until(lambda: len(jon.msgs) >= 3, 5.0)
jon.pump(0.3)
check(jon.ids() == new_jon[2:], "jon back on n0 gets the 3 he did not acknowledge (%s)" %
      jon.ids())

# ---- 8b. Redis gone back in time for a user (a failover to a replica that
# lacked the last writes, an everysec AOF short of its last second): the
# user's keys put back as they were before 5 more messages ----
kn, kq = ("sohub:chat:{%d:%s:jon}:%s" % (len(APP), APP, x) for x in "nq")
saved = [(k, redis.cmd("DUMP", k)) for k in (kn, kq)]
more = [(ok_value(alice.send("jon", "more %d" % i)) or {}).get("id") for i in range(5)]
jon.until(lambda: len(jon.msgs) >= 8, 5.0)
a = ok_value(jon.ack(more[-1] or 0))
check(all(more) and jon.ids()[3:] == more and a and a["acked"] == more[-1],
      "jon got 5 more and acknowledged them (up to %s)" % more[-1])
back = [redis.cmd("RESTORE", k, 0, v, "REPLACE") for k, v in saved]
check(back == ["OK", "OK"] and int(redis.cmd("HGET", kn, "last")) < more[0],
      "jon's keys put back as they were before those 5 (%s)" % back)
r = ok_value(alice.send("jon", "after the rollback"))
check(r and r["id"] > more[-1], "the next id (%s) is still above every id given (%s)" %
      (r and r["id"], more[-1]))
jon.until(lambda: jon.ids()[-1:] == [r and r["id"]], 5.0)
check(jon.ids()[3:] == more + [r and r["id"]],
      "jon's open connection (acknowledged past the rolled-back counter) gets it")

for c in (alice, bob, eve, eve2, gina, hank, ivy, jon, pam):
    try:
        c.close()
    except Exception:
        pass
node_ids = [k.split(":")[-1] for k in redis.cmd("KEYS", "sohub:node:*") or []]
statuses = cl.stop()
check(statuses == [0, 0, 0], "nodes stop cleanly (%s)" % statuses)
left = []
for k in redis.cmd("KEYS", "sohub:pres:*") or []:
    if redis.cmd("TYPE", k) == "hash":
        left += [v for v in (redis.cmd("HVALS", k) or []) if any(i in v for i in node_ids)]
check(len(node_ids) == 3 and left == [],
      "a clean stop takes the node's users out of presence in Redis (%s)" % left)
for n in cl.nodes:
    t = n.log_text()
    if "ERROR" in t or "AddressSanitizer" in t:
        note(t[-3000:])
redis.stop()
finish()
