#!/usr/bin/python3
"""test_api.py SERVER CLI SPEC - the server API (docs/api.md, issue 14)
end to end, every answer judged by its OpenAPI description SPEC.

Starts the real sohub-server on 127.0.0.1 (port 0 everywhere) with a
temporary data directory (a real SQLite file), admin_listen, http_listen
and two API keys, one per scope.  Real clients subscribe: sohub-cli over
RTMP (so watch, chat listen) and python3-websockets over WebSocket
(sohub.v1).  Then every request of docs/api.md:
  - auth: no key (401 + WWW-Authenticate), a wrong key (401), X-Api-Key,
    a read key on a write (403, nothing applied);
  - writes reach an RTMP and a WebSocket subscriber with the version the
    answer gave, set and remove as one version; compare-and-set (200, then
    409 conflict with the current state and nothing applied);
  - temporary and persistent objects (bad_persistence both ways; a
    temporary object nobody uses is gone; a persistent one survives a
    restart on the same SQLite file, a temporary one does not);
  - SendMessage to the subscribers of an object;
  - locks: acquire, 409 locked, writes queue (answered queued) and reach
    the subscribers as one version at the release, 409 not_locked, expiry
    after ttl_ms, the 60 s cap;
  - private messages (delivered to a connected user, queued for another,
    client_id de-duplication, chat's error codes), a user's counters, the
    presence object;
  - listings: applications, instances, objects (limit), connections with
    every filter and paging with after/limit/next;
  - disconnects: one connection (WebSocket: close 1000), every connection
    of a user (RTMP and WebSocket);
  - Idempotency-Key: a retry gets the first answer byte for byte with
    Idempotent-Replayed and makes no second version; the key on another
    request is 422; error answers replay too; the keys do not outlive a
    restart (documented);
  - bad input: malformed JSON, bodies that are not objects, bad members,
    values the AMF mapping refuses or that pass the AMF limits, a body
    over http_max_body and one over max_amf_elements (413), bad names in
    the path, unknown paths and methods (404, 405 with Allow), a request
    http-parser refuses; the server keeps serving the others.
The contract: every answer is checked against SPEC (apiutil.Contract: its
path and method exist, its status is listed, its body validates against
the schema of that status); a 2xx answer's request must validate against
the operation's requestBody; and every operation of SPEC must have been
exercised.  TAP on stdout; exit 1 when a check failed."""

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apiutil import Api, CliProc, Contract, WsClient, slots_of  # noqa: E402
from opsutil import Server, check, finish, note, wait_for  # noqa: E402

WKEY = "apitest-write-key-0123456789"
RKEY = "apitest-read-key-0123456789"
MAX_BODY = 65536
CONFIG = """[server]
admin_listen = 127.0.0.1:0
http_listen = 127.0.0.1:0
so_max_updates_per_sec = 0
http_max_body = %d
max_amf_elements = 4096

[api_key backend]
secret = %s
scope = write

[api_key monitor]
secret = %s
scope = read

[app demo]
presence = true
max_so_slots = 20

[app club]
users = alice, bob
""" % (MAX_BODY, WKEY, RKEY)

ROOM = "/api/v1/apps/demo/instances/room1"


def obj(name, query=""):
    return ROOM + "/objects/" + name + (("?" + query) if query else "")


class Env:
    def __init__(self, srv, cli, contract):
        self.srv = srv
        self.cli = cli
        self.contract = contract
        self.api = Api(srv.ports["admin"], WKEY, contract)
        self.subs = []

    def watch(self, name, user, persistent=False):
        argv = [self.cli, "-u", self.srv.rtmp_url("demo/room1"), "--user", user]
        if persistent:
            argv.append("--persistent")
        p = CliProc(argv + ["so", "watch", name, "--timeout", "300"])
        self.subs.append(p)
        return p

    def ws(self, user):
        w = WsClient(self.srv.ports["http"], "demo/room1", user)
        self.subs.append(w)
        return w

    def conns(self, query=""):
        a = self.api.call("GET", "/api/v1/connections" + (("?" + query) if query else ""))
        return a.json.get("connections", []) if a.status == 200 else []


def ws_update(w, name, version, nevents, timeout=5.0):
    """The so messages w got for name at version, once they hold nevents
    change / remove entries (a change counts one per slot)."""
    def get():
        ms = [m for m in list(w.msgs) if m.get("op") == "so" and m.get("name") == name and
              m.get("version") == version]
        n = sum(len(e.get("slots", [])) if e.get("t") == "change" else 1
                for m in ms for e in m.get("events", []) if e.get("t") in ("change", "remove"))
        return ms if n >= nevents else None
    return wait_for(get, timeout) or [m for m in list(w.msgs) if m.get("name") == name and
                                      m.get("version") == version]


def changed(msgs):
    out = {}
    for m in msgs:
        for e in m.get("events", []):
            if e.get("t") == "change":
                out.update(slots_of(e))
    return out


def removed(msgs):
    return [e.get("key") for m in msgs for e in m.get("events", []) if e.get("t") == "remove"]


def rtmp_change(p, key, version=None):
    return p.wait(lambda e: e.get("event") == "change" and e.get("key") == key and
                  (version is None or e.get("version") == version))


# ------------------------------------------------------------------ auth

def t_auth(env):
    api = env.api
    a = api.call("GET", "/api/v1/apps", key=None)
    check(a.status == 401 and a.code() == "unauthorized" and
          a.headers.get("www-authenticate", "").startswith("Bearer"),
          "no key: 401 unauthorized with WWW-Authenticate: Bearer (%r, %r)"
          % (a, a.headers.get("www-authenticate")))
    a = api.call("GET", "/api/v1/apps", key="not-the-key-0123456789abc")
    check(a.status == 401 and a.code() == "unauthorized", "a wrong key: 401 (%r)" % a)
    a = api.call("GET", "/api/v1/apps", key=None, headers={"X-Api-Key": RKEY})
    check(a.status == 200 and isinstance((a.json or {}).get("apps"), list),
          "the read key in X-Api-Key lists the applications (%r)" % a)
    a = api.call("POST", obj("guarded"), {"persistent": False, "set": {"k": 1}}, key=RKEY)
    check(a.status == 403 and a.code() == "forbidden", "the read key on a write: 403 (%r)" % a)
    a = api.call("DELETE", "/api/v1/apps/demo/users/nobody/connections", key=RKEY)
    check(a.status == 403 and a.code() == "forbidden", "the read key on a DELETE: 403 (%r)" % a)
    a = api.call("GET", obj("guarded", "persistent=false"), key=RKEY)
    check(a.status == 200 and a.json["slots"] == {},
          "the refused write applied nothing (read key may GET: %r)" % a)
    for path, want in (("/healthz", "ok"), ("/readyz", "ok"), ("/metrics", "sohub_connections")):
        a = api.call("GET", path, key=None)
        check(a.status == 200 and want in a.body.decode() and
              a.headers.get("content-type", "").startswith("text/plain"),
              "%s answers 200 text/plain without a key" % path)


# ------------------------------------------------------- writes, CAS

def t_writes(env):
    api = env.api
    alice = env.watch("board", "alice")
    check(bool(alice.wait(lambda e: e.get("event") == "use", 10)),
          "RTMP subscriber alice (sohub-cli so watch board) is in")
    carol = env.ws("carol")
    check((carol.connected or {}).get("ok") is True, "WebSocket client carol is connected "
          "(%s)" % carol.connected)
    carol.use("board", False)
    check(bool(carol.wait_so("board", lambda v, e: e.get("t") == "use_success")),
          "carol uses board")
    env.alice, env.carol = alice, carol

    val = {"n": {"$amf": "int", "value": 3}, "title": "hello", "list": [1, "two", None]}
    a = api.call("POST", obj("board"), {"persistent": False, "set": val})
    v = (a.json or {}).get("version")
    check(a.status == 200 and isinstance(v, int) and v > 0, "API write: 200 version %s" % v)
    got = {k: (rtmp_change(alice, k, v) or {}).get("value", "<none>") for k in val}
    check(got == val, "the RTMP subscriber gets every slot at version %s, values exact (%s)"
          % (v, json.dumps(got)))
    msgs = ws_update(carol, "board", v, len(val))
    check(len(msgs) == 1 and changed(msgs) == val,
          "the WebSocket subscriber gets one message at version %s with every slot (%s)"
          % (v, json.dumps(msgs)))
    a = api.call("GET", obj("board", "persistent=false"))
    check(a.status == 200 and a.json["version"] == v and a.json["slots"] == val and
          a.json["subscribers"] == 2 and a.json["persistent"] is False and
          a.json["name"] == "board",
          "GET board: version %s, both subscribers, the slots (%r)" % (v, a))

    a = api.call("POST", obj("board"), {"persistent": False, "remove": ["title"],
                                        "set": {"n": 4}})
    v2 = (a.json or {}).get("version")
    check(a.status == 200 and v2 == v + 1, "set + remove: one new version %s" % v2)
    check(bool(alice.wait(lambda e: e.get("event") == "remove" and e.get("key") == "title"
                          and e.get("version") == v2)) and
          (rtmp_change(alice, "n", v2) or {}).get("value") == 4,
          "RTMP: the remove and the change at version %s" % v2)
    msgs = ws_update(carol, "board", v2, 2)
    check(len(msgs) == 1 and changed(msgs) == {"n": 4} and removed(msgs) == ["title"],
          "WebSocket: the remove and the change in one message at version %s (%s)"
          % (v2, json.dumps(msgs)))

    # compare-and-set
    a = api.call("POST", obj("board"), {"persistent": False, "set": {"c": 1},
                                        "expect_version": v2})
    check(a.status == 200 and a.json["version"] == v2 + 1,
          "expect_version = current: applied, version %s (%r)" % (v2 + 1, a))
    a = api.call("POST", obj("board"), {"persistent": False, "set": {"c": 2},
                                        "expect_version": v2})
    check(a.status == 409 and a.code() == "conflict" and a.json.get("version") == v2 + 1 and
          a.json.get("slots", {}).get("c") == 1,
          "expect_version stale: 409 conflict with the current version and slots (%r)" % a)
    a = api.call("POST", obj("board"), {"persistent": False, "set": {"c": 3}})
    check(a.status == 200 and a.json["version"] == v2 + 2, "a write after the conflict: "
          "version %s" % (v2 + 2))
    check(rtmp_change(alice, "c", v2 + 2) is not None and
          carol.wait_so("board", lambda ver, e: ver == v2 + 2) is not None,
          "both subscribers reach version %s" % (v2 + 2))
    seen = [e.get("value") for e in alice.events if e.get("key") == "c"]
    ws_seen = [slots_of(e).get("c") for _, e in carol.so_events("board")
               if e.get("t") == "change" and "c" in slots_of(e)]
    check(seen == [1, 3] and ws_seen == [1, 3], "the refused CAS write reached nobody "
          "(RTMP %s, WebSocket %s)" % (seen, ws_seen))
    env.board_version = v2 + 2


def t_persistence(env):
    api = env.api
    a = api.call("POST", obj("scores"), {"set": {"alice": 10, "when": {"$amf": "date",
                                                                       "ms": 1700000000123,
                                                                       "tz": 0}}})
    p = (a.json or {}).get("version")
    check(a.status == 200 and isinstance(p, int), "a persistent write (the default) is "
          "answered once stored: version %s" % p)
    a = api.call("GET", obj("scores"))
    check(a.status == 200 and a.json["persistent"] is True and a.json["version"] == p and
          a.json["slots"]["alice"] == 10 and a.json["slots"]["when"]["ms"] == 1700000000123,
          "GET scores: persistent, version %s, the date exact (%r)" % (p, a))
    a = api.call("GET", obj("scores", "persistent=false"))
    check(a.status == 409 and a.code() == "bad_persistence", "GET as temporary: 409 "
          "bad_persistence (%r)" % a)
    a = api.call("POST", obj("scores"), {"persistent": False, "set": {"x": 1}})
    check(a.status == 409 and a.code() == "bad_persistence", "a temporary write to it: 409 "
          "bad_persistence (%r)" % a)
    a = api.call("POST", obj("board"), {"persistent": True, "set": {"x": 1}})
    check(a.status == 409 and a.code() == "bad_persistence", "a persistent write to a "
          "temporary object: 409 bad_persistence (%r)" % a)
    a = api.call("POST", obj("levels/1/map"), {"set": {"w": 64}})
    check(a.status == 200, "an object name with '/' (levels/1/map): %r" % a)
    a = api.call("GET", obj("levels/1/map"))
    check(a.status == 200 and a.json["name"] == "levels/1/map" and a.json["slots"] == {"w": 64},
          "GET levels/1/map (%r)" % a)
    api.call("POST", obj("both"), {"set": {"k": 1, "j": 1}})
    a = api.call("POST", obj("both"), {"set": {"k": 2}, "remove": ["k", "j"]})
    g = api.call("GET", obj("both")).json
    check(a.status == 200 and g["slots"] == {"k": 2}, "remove is applied before set: a key "
          "in both ends up set (%s)" % json.dumps(g["slots"]))
    a = api.call("POST", obj("scratch"), {"persistent": False, "set": {"x": 1}})
    check(a.status == 200, "a temporary write with no subscriber: %r" % a)
    v = (a.json or {}).get("version")
    a = api.call("GET", obj("scratch", "persistent=false"))
    check(a.status == 200 and a.json["slots"] == {} and a.json["version"] != v,
          "... is gone once written, nobody uses it: a new empty object (%r)" % a)
    env.scores_version = p


def t_messages(env):
    api, alice, carol = env.api, env.alice, env.carol
    args = ["hi", {"$amf": "int", "value": 7}, {"k": [1, 2]}]
    a = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                              "handler": "ping", "args": args})
    check(a.status == 200 and a.json == {}, "SendMessage: 200 {} (%r)" % a)
    m = alice.wait(lambda e: e.get("event") == "message" and e.get("handler") == "ping")
    check(m is not None and m.get("args") == args, "RTMP subscriber gets ping with its "
          "arguments exact (%s)" % (m and json.dumps(m.get("args"))))
    w = carol.wait_so("board", lambda v, e: e.get("t") == "send" and e.get("handler") == "ping")
    check(w is not None and w[1].get("args") == args, "WebSocket subscriber gets ping (%s)"
          % (w and json.dumps(w[1])))
    a = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                              "handler": "h", "args": [{"$amf": "nope"}]})
    check(a.status == 400 and a.code() == "bad_value", "an argument the mapping refuses: 400 "
          "bad_value (%r)" % a)
    a = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False})
    check(a.status == 400 and a.code() == "bad_request", "no handler: 400 (%r)" % a)
    a = api.call("POST", ROOM + "/messages", {"object": "board", "handler": "h",
                                              "args": list(range(65))})
    check(a.status == 400 and a.code() == "bad_request", "65 arguments: 400 (%r)" % a)
    a = api.call("POST", ROOM + "/messages", {"object": "scores", "persistent": False,
                                              "handler": "h"})
    check(a.status == 409 and a.code() == "bad_persistence", "to a persistent object as "
          "temporary: 409 bad_persistence (%r)" % a)
    deep = 0
    for _ in range(40):
        deep = [deep]
    a = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                              "handler": "h", "args": [deep]})
    check(a.status == 422 and a.code() == "limit", "an argument past max_amf_depth: 422 "
          "limit (%r)" % a)
    check(not any(e.get("event") == "message" and e.get("handler") == "h"
                  for e in alice.events), "no refused message reached a subscriber")


def t_locks(env):
    api, alice, carol = env.api, env.alice, env.carol
    L = ROOM + "/locks"
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": True,
                             "ttl_ms": 10000})
    check(a.status == 200 and a.json == {"ttl_ms": 10000}, "lock: 200 ttl_ms 10000 (%r)" % a)
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": True})
    check(a.status == 409 and a.code() == "locked", "lock again: 409 locked (%r)" % a)
    a = api.call("GET", ROOM + "/objects")
    b = [o for o in (a.json or {}).get("objects", []) if o["name"] == "board"]
    check(b and b[0]["locked"] is True, "the object list shows board locked")
    vb = api.call("GET", obj("board", "persistent=false")).json["version"]
    a = api.call("POST", obj("board"), {"persistent": False, "set": {"q": 1}})
    check(a.status == 200 and a.json == {"version": vb, "queued": True},
          "a write while locked: queued, the version still %s (%r)" % (vb, a))
    a = api.call("POST", obj("board"), {"persistent": False, "set": {"r": 2}, "remove": ["c"]})
    check(a.status == 200 and a.json.get("queued") is True, "a second write queues too")
    a = api.call("GET", obj("board", "persistent=false"))
    check(a.json["version"] == vb and "q" not in a.json["slots"] and a.json["slots"]["c"] == 3,
          "reads during the lock show the committed state")
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": False})
    check(a.status == 200 and a.json == {}, "release: 200 {} (%r)" % a)
    msgs = ws_update(carol, "board", vb + 1, 3)
    check(len(msgs) == 1 and changed(msgs) == {"q": 1, "r": 2} and removed(msgs) == ["c"],
          "WebSocket: both queued writes arrive in one message at version %s (%s)"
          % (vb + 1, json.dumps(msgs)))
    check(rtmp_change(alice, "q", vb + 1) is not None and
          rtmp_change(alice, "r", vb + 1) is not None and
          alice.wait(lambda e: e.get("event") == "remove" and e.get("key") == "c" and
                     e.get("version") == vb + 1) is not None,
          "RTMP: q, r and the removal of c at version %s" % (vb + 1))
    a = api.call("GET", obj("board", "persistent=false"))
    check(a.json["version"] == vb + 1, "one version for the lock's writes (%s)"
          % a.json["version"])
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": False})
    check(a.status == 409 and a.code() == "not_locked", "release again: 409 not_locked (%r)" % a)

    # expiry
    t0 = time.monotonic()
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": True,
                             "ttl_ms": 700})
    check(a.status == 200 and a.json == {"ttl_ms": 700}, "lock with ttl_ms 700 (%r)" % a)
    api.call("POST", obj("board"), {"persistent": False, "set": {"exp": 1}})
    early = api.call("GET", obj("board", "persistent=false")).json
    early_t = time.monotonic() - t0
    w = carol.wait_so("board", lambda v, e: e.get("t") == "change" and "exp" in slots_of(e),
                      timeout=5)
    took = time.monotonic() - t0
    check((early_t > 0.6 or "exp" not in early["slots"]) and w is not None and took >= 0.65,
          "the lock expires by itself after its ttl: the queued write arrives after %.2f s"
          % took)
    a = api.call("GET", ROOM + "/objects")
    b = [o for o in (a.json or {}).get("objects", []) if o["name"] == "board"]
    check(b and b[0]["locked"] is False, "board is not locked any more")
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": True,
                             "ttl_ms": 3600000})
    check(a.status == 200 and a.json == {"ttl_ms": 60000}, "ttl_ms is capped at 60 s (%r)" % a)
    a = api.call("POST", L, {"object": "board", "persistent": False, "lock": False})
    check(a.status == 200, "release")
    a = api.call("POST", L, {"object": "scores", "persistent": False, "lock": True})
    check(a.status == 409 and a.code() == "bad_persistence", "lock with the other "
          "persistence: 409 bad_persistence (%r)" % a)
    a = api.call("POST", L, {"object": "board", "lock": "yes"})
    check(a.status == 400 and a.code() == "bad_request", "lock not a boolean: 400 (%r)" % a)


# ------------------------------------------------------ chat, presence

def t_chat(env):
    api = env.api
    bob = CliProc([env.cli, "-u", env.srv.rtmp_url("demo/room1"), "--user", "bob", "chat",
                   "listen", "--timeout", "300"])
    env.subs.append(bob)
    env.bob = bob

    def presence():
        a = api.call("GET", ROOM + "/presence")
        users = (a.json or {}).get("users", {}) if a.status == 200 else {}
        return users if {"alice", "bob", "carol"} <= set(users) else None
    users = wait_for(presence, 10, 0.1)
    check(users is not None and users["bob"]["connections"] == 1 and
          isinstance(users["bob"]["since"], (int, float)) and users["bob"]["since"] > 1.6e12,
          "presence lists alice, bob and carol, each with since and connections (%s)"
          % json.dumps(users))

    a = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "bob", "text": "hello bob"})
    check(a.status == 200 and a.json.get("status") == "delivered" and a.json.get("id", 0) >= 1,
          "a private message to bob (connected): delivered (%r)" % a)
    m = bob.wait(lambda e: e.get("text") == "hello bob")
    check(m is not None and m.get("from") == "system", "bob's RTMP client gets it from "
          "'system' (%s)" % (m and json.dumps(m)))
    a = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "dave", "text": "later",
                                                            "from": "shop"})
    check(a.status == 200 and a.json.get("status") == "queued", "to dave (offline): queued "
          "(%r)" % a)
    a = api.call("GET", "/api/v1/apps/demo/chat/users/dave")
    check(a.status == 200 and a.json == {"user": "dave", "last_id": 1, "acked": 0, "queued": 1,
                                         "connections": 0},
          "dave's counters: last_id 1, acked 0, queued 1, no connection (%r)" % a)

    def bob_acked():
        a = api.call("GET", "/api/v1/apps/demo/chat/users/bob")
        j = a.json or {}
        return j if j.get("last_id", 0) >= 1 and j.get("acked") == j.get("last_id") else None
    j = wait_for(bob_acked, 5, 0.1)
    check(j is not None and j["queued"] == 0 and j["connections"] == 1,
          "bob's counters once he acknowledged: queued 0, one connection (%s)" % j)
    a1 = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "dave", "text": "once",
                                                             "client_id": "cid-1"})
    a2 = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "dave", "text": "once",
                                                             "client_id": "cid-1"})
    check(a1.status == 200 and a2.status == 200 and a1.json["id"] == a2.json["id"],
          "client_id: the retry gets the same id (%r, %r)" % (a1, a2))
    a = api.call("GET", "/api/v1/apps/demo/chat/users/dave")
    check(a.json.get("queued") == 2, "dave has 2 messages queued, not 3 (%r)" % a)
    a = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "bob"})
    check(a.status == 400 and a.code() == "bad_request", "no text: 400 (%r)" % a)
    a = api.call("POST", "/api/v1/apps/demo/chat/messages", {"to": "bob", "text": "x" * 5000})
    check(a.status == 400 and a.code() == "Chat.TooLong", "a text over chat_max_text: 400 "
          "Chat.TooLong (%r)" % a)
    a = api.call("POST", "/api/v1/apps/club/chat/messages", {"to": "zed", "text": "hi",
                                                            "from": "alice"})
    check(a.status == 404 and a.code() == "Chat.UnknownUser", "a user not in [app club] users: "
          "404 Chat.UnknownUser (%r)" % a)
    a = api.call("POST", "/api/v1/apps/club/chat/messages", {"to": "bob", "text": "hi"})
    check(a.status == 400 and a.code() == "Chat.Denied", "with a users list the default "
          "sender 'system' must be on it: 400 Chat.Denied (%r)" % a)
    a = api.call("POST", "/api/v1/apps/club/chat/messages", {"to": "bob", "text": "hi",
                                                            "from": "alice"})
    check(a.status == 200 and a.json["status"] == "queued", "from alice to bob, both listed: "
          "queued (%r)" % a)
    a = api.call("GET", "/api/v1/apps/demo/chat/users/bad%09name")
    check(a.status == 400 and a.code() == "bad_request", "a user name with a control "
          "character: 400 (%r)" % a)


# ------------------------------------------------------------ listings

def t_listings(env):
    api = env.api
    a = api.call("GET", "/api/v1/apps")
    apps = {x["name"]: x for x in (a.json or {}).get("apps", [])}
    check(apps.get("demo", {}).get("configured") is True and apps["demo"].get("auth") == "none"
          and apps["demo"].get("connections", 0) >= 3 and apps.get("club", {}).get("configured")
          is True, "apps: demo (configured, auth none, >= 3 connections) and club (%s)"
          % json.dumps(apps.get("demo")))
    a = api.call("GET", "/api/v1/apps/demo/instances")
    inst = {x["name"]: x for x in (a.json or {}).get("instances", [])}
    r1 = inst.get("room1", {})
    check(r1.get("so_clients", 0) >= 2 and r1.get("objects", 0) >= 3 and
          r1.get("connections", 0) >= 3, "instances: room1 with its SO clients, objects and "
          "connections (%s)" % json.dumps(r1))
    a = api.call("GET", "/api/v1/apps/demo/instances?limit=1")
    check(a.status == 200 and len(a.json["instances"]) == 1, "instances ?limit=1: one")
    a = api.call("GET", ROOM + "/objects")
    objs = {x["name"]: x for x in (a.json or {}).get("objects", [])}
    b = objs.get("board", {})
    board = api.call("GET", obj("board", "persistent=false")).json
    check({"board", "scores", "levels/1/map"} <= set(objs) and b.get("persistent") is False and
          b.get("subscribers") == 2 and b.get("slots") == len(board["slots"]) and
          b.get("version") == board["version"] and b.get("bytes", 0) > 0 and
          objs["scores"]["persistent"] is True,
          "objects: board (temporary, 2 subscribers, its slot count and version), scores "
          "(persistent), levels/1/map (%s)" % json.dumps(b))
    a = api.call("GET", ROOM + "/objects?limit=2")
    check(a.status == 200 and len(a.json["objects"]) == 2, "objects ?limit=2: two")

    # paging by name: every page sorted, each starting after the previous
    # page's "next", together the whole list once, the last with next null
    def pages(path, key):
        seen, after, sizes = [], None, []
        for _ in range(50):
            q = "limit=2" + ("&after=" + urllib.parse.quote(after, safe="") if after else "")
            a = api.call("GET", path + ("&" if "?" in path else "?") + q)
            if a.status != 200:
                return None, sizes, a
            names = [x["name"] for x in a.json[key]]
            sizes.append(len(names))
            seen += names
            after = a.json["next"]
            if after is None:
                return seen, sizes, a
            if after != names[-1]:
                return None, sizes, a
        return None, sizes, None
    for path, key, whole in (("/api/v1/apps", "apps", None),
                             ("/api/v1/apps/demo/instances", "instances", None),
                             (ROOM + "/objects", "objects", objs)):
        got, sizes, last = pages(path, key)
        if whole is None:
            a = api.call("GET", path + "?limit=1000")
            whole = {x["name"] for x in a.json[key]}
        check(got is not None and got == sorted(got, key=lambda n: n.encode()) and
              len(got) == len(set(got)) and set(got) == set(whole) and
              all(n == 2 for n in sizes[:-1]) and 1 <= sizes[-1] <= 2,
              "%s in pages of 2 by name (after/next): %s, sizes %s" % (key, got, sizes))
    a = api.call("GET", ROOM + "/objects?after=levels%2F1%2Fmap")
    check(a.status == 200 and "levels/1/map" not in [x["name"] for x in a.json["objects"]] and
          all(x["name"] > "levels/1/map" for x in a.json["objects"]),
          "objects ?after= takes a percent-encoded name (levels%2F1%2Fmap)")
    a = api.call("GET", ROOM + "/objects?after=%zz")
    check(a.status == 400 and a.code() == "bad_request", "a malformed after: 400 (%r)" % a)

    everyone = env.conns()
    ids = [c["id"] for c in everyone]
    by_user = {c["user"]: c for c in everyone}
    check(ids == sorted(ids) and len(ids) == len(set(ids)), "connections sorted by id: %s" % ids)
    check({"alice", "bob", "carol"} <= set(by_user) and by_user["carol"]["transport"] == "ws" and
          by_user["alice"]["transport"] == "rtmp" and by_user["bob"]["transport"] == "rtmp" and
          all(c["app"] == "demo" and c["instance"] == "room1" and c["connected"] is True and
              c["peer"].startswith("127.0.0.1:") and c["bytes_in"] > 0 and c["bytes_out"] > 0
              for c in (by_user["alice"], by_user["bob"], by_user["carol"])),
          "connections: alice and bob over RTMP, carol over WebSocket, in demo/room1, with "
          "peer and byte counts")
    check(all(c["transport"] != "http" for c in everyone), "the API's own connection is not "
          "listed")
    ws = env.conns("transport=ws")
    check(ws and all(c["transport"] == "ws" for c in ws) and
          "carol" in [c["user"] for c in ws], "?transport=ws: WebSocket connections only")
    b = env.conns("user=bob")
    check(len(b) == 1 and b[0]["user"] == "bob" and b[0]["transport"] == "rtmp",
          "?user=bob: bob's one connection")
    d = env.conns("app=demo&instance=room1")
    check({"alice", "bob", "carol"} <= {c["user"] for c in d}, "?app=demo&instance=room1")
    a = api.call("GET", "/api/v1/connections?app=nowhere")
    check(a.status == 200 and a.json == {"connections": [], "next": None},
          "?app=nowhere: empty, next null (%r)" % a)
    a = api.call("GET", "/api/v1/connections?instance=elsewhere")
    check(a.status == 200 and a.json["connections"] == [], "?instance=elsewhere: empty")
    pages, after, guard = [], None, 0
    while guard < 50:
        guard += 1
        q = "limit=1" + ("&after=%d" % after if after is not None else "")
        a = api.call("GET", "/api/v1/connections?" + q)
        page = a.json["connections"]
        pages.append([c["id"] for c in page])
        after = a.json["next"]
        if after is None:
            break
        if not (len(page) == 1 and after == page[0]["id"]):
            break
    flat = [i for p in pages for i in p]
    check(flat == ids and all(len(p) == 1 for p in pages),
          "paging with limit=1 and after=next walks every connection once, in order "
          "(%s)" % pages)
    a = api.call("GET", "/api/v1/connections?limit=2")
    check(len(a.json["connections"]) == 2 and a.json["next"] == a.json["connections"][1]["id"],
          "limit=2: two connections and next = the last id")


# --------------------------------------------------------- disconnects

def t_disconnects(env):
    api = env.api
    carol_id = [c["id"] for c in env.conns("user=carol")]
    a = api.call("DELETE", "/api/v1/connections/%d" % (carol_id or [0])[0])
    check(a.status == 200 and a.json == {"disconnected": 1}, "DELETE carol's connection: "
          "disconnected 1 (%r)" % a)
    check(env.carol.wait_closed(5) == 1000, "carol's WebSocket gets a close frame 1000 (%s)"
          % env.carol.close_code)
    a = api.call("DELETE", "/api/v1/connections/%d" % (carol_id or [0])[0])
    check(a.status == 404 and a.code() == "not_found", "DELETE it again: 404 (%r)" % a)
    a = api.call("DELETE", "/api/v1/apps/demo/users/bob/connections")
    check(a.status == 200 and a.json == {"disconnected": 1}, "DELETE bob's connections: "
          "1 (%r)" % a)
    check(env.bob.exited(5) is not None, "bob's sohub-cli ends once disconnected")
    gone = wait_for(lambda: "bob" not in api.call("GET", ROOM + "/presence").json["users"], 5,
                    0.1)
    check(gone, "bob leaves the presence object")

    eve_rtmp = env.watch("board", "eve")
    eve_ws = env.ws("eve")
    check(bool(eve_rtmp.wait(lambda e: e.get("event") == "use", 10)) and
          (eve_ws.connected or {}).get("ok") is True, "eve is in over RTMP and WebSocket")
    eve = env.conns("user=eve")
    check(sorted(c["transport"] for c in eve) == ["rtmp", "ws"], "eve's two connections are "
          "listed")
    a = api.call("DELETE", "/api/v1/apps/demo/users/eve/connections")
    check(a.status == 200 and a.json == {"disconnected": 2}, "DELETE eve's connections: 2 "
          "(%r)" % a)
    check(eve_ws.wait_closed(5) == 1000 and eve_rtmp.exited(5) is not None,
          "eve's WebSocket gets 1000 and her RTMP client ends (%s)" % eve_ws.close_code)
    check(bool(wait_for(lambda: env.conns("user=eve") == [], 5, 0.1)),
          "no connection of eve is left")
    a = api.call("DELETE", "/api/v1/apps/demo/users/nobody/connections")
    check(a.status == 200 and a.json == {"disconnected": 0}, "a user with no connection: 0")


# --------------------------------------------------------- idempotency

def t_idempotency(env):
    api = env.api
    body = {"set": {"total": 5}}
    a1 = api.call("POST", obj("ledger"), body, headers={"Idempotency-Key": "idem-1"})
    a2 = api.call("POST", obj("ledger"), body, headers={"Idempotency-Key": "idem-1"})
    check(a1.status == 200 and "idempotent-replayed" not in a1.headers,
          "first request with Idempotency-Key idem-1: 200 (%r)" % a1)
    check(a2.status == 200 and a2.body == a1.body and
          a2.headers.get("idempotent-replayed") == "true",
          "the retry: the same answer byte for byte, Idempotent-Replayed: true (%r)" % a2)
    v = api.call("GET", obj("ledger")).json["version"]
    check(v == a1.json["version"], "no second version (%s)" % v)
    a = api.call("POST", obj("ledger"), {"set": {"total": 6}},
                 headers={"Idempotency-Key": "idem-1"})
    check(a.status == 422 and a.code() == "idempotency_key_reused",
          "the key with another body: 422 idempotency_key_reused (%r)" % a)
    a = api.call("POST", obj("ledger2"), body, headers={"Idempotency-Key": "idem-1"})
    check(a.status == 422 and a.code() == "idempotency_key_reused",
          "the key on another path: 422 (%r)" % a)
    g = api.call("GET", obj("ledger")).json
    check(g["version"] == v and g["slots"] == {"total": 5}, "nothing applied by either")
    a = api.call("POST", obj("ledger"), body, headers={"Idempotency-Key": "k" * 129})
    check(a.status == 400 and a.code() == "bad_request", "a 129-character key: 400 (%r)" % a)
    e1 = api.call("POST", obj("ledger"), "{\"set\":", headers={"Idempotency-Key": "idem-2"})
    e2 = api.call("POST", obj("ledger"), "{\"set\":", headers={"Idempotency-Key": "idem-2"})
    check(e1.status == 400 and e1.code() == "bad_json" and e2.status == 400 and
          e2.body == e1.body and e2.headers.get("idempotent-replayed") == "true",
          "an error answer is replayed as it was (%r / %r)" % (e1, e2))
    m1 = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                               "handler": "once"},
                  headers={"Idempotency-Key": "idem-3"})
    m2 = api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                               "handler": "once"},
                  headers={"Idempotency-Key": "idem-3"})
    api.call("POST", ROOM + "/messages", {"object": "board", "persistent": False,
                                          "handler": "marker"})
    env.alice.wait(lambda e: e.get("handler") == "marker")
    n = sum(1 for e in env.alice.events if e.get("handler") == "once")
    check(m1.status == 200 and m2.status == 200 and
          m2.headers.get("idempotent-replayed") == "true" and n == 1,
          "a SendMessage retried with its key reaches the subscriber once (%d)" % n)
    w = env.ws("frank")
    fid = [c["id"] for c in env.conns("user=frank")]
    d1 = api.call("DELETE", "/api/v1/connections/%d" % (fid or [0])[0],
                  headers={"Idempotency-Key": "idem-4"})
    d2 = api.call("DELETE", "/api/v1/connections/%d" % (fid or [0])[0],
                  headers={"Idempotency-Key": "idem-4"})
    check(d1.status == 200 and d1.json == {"disconnected": 1} and d2.status == 200 and
          d2.body == d1.body and w.wait_closed(5) == 1000,
          "a DELETE retried with its key gets its first answer, not 404 (%r / %r)" % (d1, d2))
    env.ledger_version = v


# ----------------------------------------------------------- bad input

def raw_exchange(port, data, timeout=5.0):
    """Sends data on a fresh socket; returns (status, headers, body,
    closed) of the first answer, closed = the server closed after it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        end = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf and time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            return 0, {}, b"", True
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(rest) < n and time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, extra = rest[:n], rest[n:]
        closed = False
        try:
            s.settimeout(2)
            more = extra or s.recv(1)
            closed = more == b""
        except OSError:
            closed = True
        return status, hdrs, body, closed
    finally:
        s.close()


def t_bad_input(env):
    api, port = env.api, env.srv.ports["admin"]
    before = api.call("GET", obj("board", "persistent=false")).json

    def bad(body, status, code, what, raw=False):
        a = api.call("POST", obj("board"), raw=body) if raw else \
            api.call("POST", obj("board"), body)
        check(a.status == status and a.code() == code, "%s: %d %s (%r)" % (what, status, code, a))
    bad(b"{\"set\":", 400, "bad_json", "malformed JSON", raw=True)
    bad(b"[1,2]", 400, "bad_json", "a JSON array, not an object", raw=True)
    bad(b"", 400, "bad_request", "no body", raw=True)
    bad({"persistent": "yes", "set": {"a": 1}}, 400, "bad_request", "persistent a string")
    bad({"persistent": False, "set": [1]}, 400, "bad_request", "set an array")
    bad({"persistent": False, "set": {"a": 1}, "expect_version": -1}, 400, "bad_request",
        "expect_version -1")
    bad({"persistent": False, "remove": [1]}, 400, "bad_request", "remove with a number")
    bad({"persistent": False}, 400, "bad_request", "nothing to do")
    bad({"persistent": False, "set": {"a": 1, "b": {"$amf": "int", "value": 1.5}}}, 400,
        "bad_value", "an int that is not an integer")
    bad({"persistent": False, "set": {"a": 1, "b": {"$amf": "bytes", "hex": "zz"}}}, 400,
        "bad_value", "bytes that are not hex")
    bad({"persistent": False, "set": {"a": 1, "b": {"$amf": "martian"}}}, 400, "bad_value",
        "an unknown tag")
    deep = 0
    for _ in range(40):
        deep = [deep]
    bad({"persistent": False, "set": {"a": 1, "deep": deep}}, 422, "limit",
        "a value nested past max_amf_depth")
    after = api.call("GET", obj("board", "persistent=false")).json
    check(after["version"] == before["version"] and "a" not in after["slots"] and
          "deep" not in after["slots"], "none of them applied anything (version %s)"
          % after["version"])
    a = api.call("POST", obj("deep"), {"set": {"deep": deep}})
    check(a.status == 422, "a deep value to a persistent object is refused too (%r)" % a)

    a = api.call("POST", obj("full"), {"set": {"k%d" % i: i for i in range(25)}})
    check(a.status == 422 and a.code() == "limit", "25 slots with max_so_slots = 20: 422 "
          "limit (%r)" % a)
    a = api.call("GET", obj("full"))
    check(a.status == 200 and a.json["slots"] == {}, "... and none of them applied (%d "
          "slots)" % len(a.json["slots"]))
    a = api.call("POST", obj("full"), {"set": {"k%d" % i: i for i in range(20)}})
    check(a.status == 200, "20 slots fit (%r)" % a)
    a = api.call("POST", obj("full"), {"set": {"k0": "changed", "k20": 20}})
    g = api.call("GET", obj("full")).json
    check(a.status == 422 and g["slots"]["k0"] == 0 and len(g["slots"]) == 20,
          "a 21st slot refuses the whole write, k0 unchanged (%r)" % a)
    a = api.call("POST", obj("full"), {"remove": ["k19"], "set": {"k20": 20}})
    g = api.call("GET", obj("full")).json
    check(a.status == 200 and "k19" not in g["slots"] and g["slots"]["k20"] == 20,
          "removing one makes room in the same write (%r)" % a)

    a = api.call("POST", obj("board"), {"persistent": False, "set": {"a": [0] * 5000}})
    check(a.status == 413 and a.code() == "too_large", "a body with more JSON values than "
          "max_amf_elements: 413 too_large (%r)" % a)
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
            "application/json\r\nContent-Length: %d\r\n\r\n" % (obj("board"), WKEY,
                                                                 MAX_BODY + 1)).encode()
    st, hd, body, closed = raw_exchange(port, head)
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    check(st == 413 and code == "too_large" and closed,
          "a body over http_max_body: 413 too_large as JSON at its header, then the "
          "connection closes (%d %r)" % (st, body[:120]))
    for p in env.contract.judge("POST", obj("board"), None, st, hd.get("content-type"), body):
        check(False, "contract: " + p)
    st, hd, body, closed = raw_exchange(port, b"BREW /api/v1/apps HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    check(st == 400 and code == "bad_request" and closed,
          "a method http-parser does not know: 400 bad_request as JSON, then closed (%d %r)"
          % (st, body[:120]))

    a = api.call("GET", "/api/v1/nothing-here", off_spec=True)
    check(a.status == 404 and a.code() == "not_found", "an unknown path: 404 (%r)" % a)
    a = api.call("GET", ROOM + "/presence/extra", off_spec=True)
    check(a.status == 404, "a known path with a segment more: 404 (%r)" % a)
    a = api.call("DELETE", "/api/v1/apps/demo/users/alice/connections/extra", off_spec=True)
    check(a.status == 404 and env.alice.proc.poll() is None,
          "DELETE .../users/alice/connections/extra: 404, alice still connected (%r)" % a)
    a = api.call("GET", "/api/v1/apps/bad!name/instances")
    check(a.status == 400 and a.code() == "bad_request", "a bad application name: 400 (%r)" % a)
    a = api.call("GET", "/api/v1/apps/%s/instances" % ("a" * 129))
    check(a.status == 400 and a.code() == "bad_request", "a 129-byte application name: 400 "
          "(%r)" % a)
    a = api.call("GET", "/api/v1/apps/demo/instances/%s/objects" % ("i" * 129))
    check(a.status == 400, "a 129-byte instance name: 400 (%r)" % a)
    a = api.call("GET", "/api/v1/apps/demo/instances/bad!inst/objects")
    check(a.status == 400 and a.code() == "bad_request", "a bad instance name: 400 (%r)" % a)
    a = api.call("DELETE", "/api/v1/connections/12abc")
    check(a.status == 400 and a.code() == "bad_request", "a connection id with letters: 400 "
          "(%r)" % a)
    a = api.call("PUT", "/api/v1/apps", {"x": 1}, off_spec=True)
    check(a.status == 405 and a.code() == "method_not_allowed" and
          a.headers.get("allow") == "GET, HEAD", "PUT /apps: 405 with Allow: GET, HEAD (%r %s)"
          % (a, a.headers.get("allow")))
    a = api.call("PATCH", obj("board"), {"x": 1}, off_spec=True)
    check(a.status == 405 and a.headers.get("allow") == "GET, HEAD, POST",
          "PATCH an object: 405 with Allow: GET, HEAD, POST (%r)" % a)
    a = api.call("POST", ROOM + "/objects", {"set": {"a": 1}}, off_spec=True)
    check(a.status == 405 and a.headers.get("allow") == "GET, HEAD",
          "POST the object list: 405 (%r)" % a)
    a = api.call("GET", ROOM + "/locks", off_spec=True)
    check(a.status == 405 and a.headers.get("allow") == "POST", "GET locks: 405 Allow: POST "
          "(%r)" % a)

    # the others were served throughout
    other = Api(port, WKEY, env.contract)
    a = other.call("POST", obj("board"), {"persistent": False, "set": {"still": "here"}})
    check(a.status == 200 and rtmp_change(env.alice, "still", a.json["version"]) is not None,
          "after all that a write still reaches the RTMP subscriber")
    other.close()


# ------------------------------------------------------------- restart

def t_restart(env, srv):
    for s in env.subs:
        if isinstance(s, CliProc):
            s.stop()
        else:
            s.close()
    env.api.close()
    rc = srv.stop()
    check(rc == 0, "the server stops cleanly (status %s)" % rc)
    ok = srv.start()
    check(ok and "admin" in srv.ports, "the server starts again on the same data directory")
    if not ok:
        note(srv.log_text()[-3000:])
        return
    env.api = Api(srv.ports["admin"], WKEY, env.contract)
    a = env.api.call("GET", obj("scores"))
    check(a.status == 200 and a.json["version"] == env.scores_version and
          a.json["slots"]["alice"] == 10 and a.json["persistent"] is True,
          "scores survived the restart: version %s, its slots (%r)" % (env.scores_version, a))
    a = env.api.call("GET", obj("levels/1/map"))
    check(a.status == 200 and a.json["slots"] == {"w": 64}, "levels/1/map too (%r)" % a)
    a = env.api.call("GET", obj("board", "persistent=false"))
    check(a.status == 200 and a.json["slots"] == {} and a.json["version"] < env.board_version,
          "the temporary board did not: a new empty object (%r)" % a)
    a = env.api.call("POST", obj("ledger"), {"set": {"total": 5}},
                     headers={"Idempotency-Key": "idem-1"})
    check(a.status == 200 and "idempotent-replayed" not in a.headers and
          a.json["version"] == env.ledger_version + 1,
          "Idempotency-Keys are kept in memory only: after a restart the key applies again "
          "(docs/api.md) (%r)" % a)


def main():
    if len(sys.argv) != 4:
        print("usage: test_api.py SERVER CLI SPEC", file=sys.stderr)
        return 2
    server_bin, cli_bin, spec = sys.argv[1:4]
    contract = Contract(spec)
    workdir = tempfile.mkdtemp(prefix="sohub-api-")
    srv = Server(server_bin, CONFIG, workdir=workdir)
    env = None
    try:
        if not check(srv.start() and "admin" in srv.ports and "http" in srv.ports,
                     "the server starts with admin_listen, http_listen and a SQLite store"):
            note(srv.log_text()[-3000:])
            finish()
        env = Env(srv, cli_bin, contract)
        for t in (t_auth, t_writes, t_persistence, t_messages, t_locks, t_chat, t_listings,
                  t_disconnects, t_idempotency, t_bad_input):
            t(env)
        t_restart(env, srv)
        missing = sorted(contract.operations() - contract.covered)
        check(not missing, "every operation of the spec was exercised (%d of %d): missing %s"
              % (len(contract.covered), len(contract.operations()), missing))
        check(contract.judged > 100, "%d answers were judged against the spec"
              % contract.judged)
        env.api.close()
        rc = srv.stop()
        check(rc == 0, "the server stops cleanly (status %s)" % rc)
        log = srv.log_text()
        check("ERROR" not in log and "Sanitizer" not in log, "no error in the server's log")
        for line in [x for x in log.split("\n") if "ERROR" in x][:5]:
            note(line)
    finally:
        if env:
            for s in env.subs:
                if isinstance(s, CliProc):
                    s.stop()
                else:
                    s.close()
        srv.stop()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            note("kept " + workdir)
    finish()


if __name__ == "__main__":
    main()
