#!/usr/bin/env python3
"""test_nodes.py SOHUB_SERVER - three nodes and their Redis links.

A node announces itself with a heartbeat key (its name, a TTL of
node_ttl_ms); a node killed with -9 stops beating and its key expires; a
Redis that goes away is reconnected to by every node, which announce
themselves again; a clean stop deletes the key at once."""

import signal
import sys
import time

from clusterutil import Cluster, Redis, check, finish, need_redis, note, wait_for

need_redis()
server = sys.argv[1]
redis = Redis(aof=False)
check(redis.start(), "redis-server started on 127.0.0.1:%d" % redis.port)
cl = Cluster(server, redis, n=3)
check(cl.start(), "three nodes started, each with its heartbeat key in Redis")


def node_names():
    keys = redis.cmd("KEYS", "sohub:node:*") or []
    return sorted(redis.cmd("GET", k) or "" for k in keys)


check(node_names() == ["n0", "n1", "n2"], "the keys hold the node names (%s)" % node_names())
keys = redis.cmd("KEYS", "sohub:node:*") or []
ttls = [redis.cmd("PTTL", k) for k in keys]
check(all(isinstance(t, int) and 0 < t <= 3000 for t in ttls),
      "each key expires within node_ttl_ms = 3000 (%s)" % ttls)
ids = [k.split(":")[-1] for k in keys]
check(len(set(ids)) == 3 and all(len(i) == 16 for i in ids), "three distinct 16-digit node ids")

# kill -9: the key of the dead node expires; the others keep beating
t0 = time.monotonic()
cl.kill(1)
gone = wait_for(lambda: node_names() == ["n0", "n2"], 6.0)
dt = time.monotonic() - t0
check(gone and dt <= 4.5, "node n1 killed with -9: its key expired after %.1f s (ttl 3 s)" % dt)
time.sleep(1.5)
check(node_names() == ["n0", "n2"], "the live nodes keep their keys past a TTL")

# Redis goes away and comes back empty: every node reconnects and beats again
redis.kill(signal.SIGKILL)
time.sleep(0.5)
check(redis.start(), "redis-server restarted (empty: no persistence)")
back = wait_for(lambda: node_names() == ["n0", "n2"], 8.0)
check(back, "both live nodes reconnected and announced themselves again")
# the heartbeat key is written as soon as the command connection is back;
# the link is "up" (and logged so) once the subscription connection is too
def down_and_up():
    log0 = cl.nodes[0].log_text()
    return "down: writes are refused" in log0 and log0.count("up: clustered") >= 2
check(wait_for(down_and_up, 5.0), "n0's log says when the link went down and came back")

# a clean stop deletes the key at once
st = cl.nodes[2].stop()
check(st == 0, "n2 stopped cleanly (status %s)" % st)
check(node_names() == ["n0"], "its key is gone at once, not after the TTL (%s)" % node_names())

# restart n1: a new node id, the same name
check(cl.restart(1), "n1 restarted")
check(wait_for(lambda: node_names() == ["n0", "n1"], 5.0), "it announced itself")
new_ids = [k.split(":")[-1] for k in (redis.cmd("KEYS", "sohub:node:*") or [])]
check(len(set(new_ids) - set(ids)) == 1,
      "the restarted node has a new id")

statuses = [cl.nodes[0].stop(), cl.nodes[1].stop()]
check(statuses == [0, 0], "the other nodes stop cleanly (%s)" % statuses)
check(node_names() == [], "no node key left")
for n in cl.nodes:
    if "ERROR" in n.log_text():
        note(n.log_text()[-2000:])
redis.stop()
finish()
