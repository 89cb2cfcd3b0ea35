#!/usr/bin/python3
"""test_ws_interop.py - RTMP and WebSocket clients on one server.

- values: an RTMP client (ws_rtmp_peer, AMF0 and AMF3) writes every kind
  of AMF value into a shared object; the WebSocket client must read the
  exact tagged JSON of docs/amf-json.md, write it back unchanged, and
  both RTMP clients must read the identical AMF value (amf_equal); the
  same through SendMessage both ways, and echo calls;
- limits: a value as deep as an RTMP client may send passes, one level
  more closes the WebSocket with 4400, the others go on;
- chat: chat.sendPrivate between an RTMP user (sohub-cli chat) and a
  WebSocket user, chat.onPrivate, chat.ack, queued delivery;
- connect refusals: the same descriptions over RTMP and WebSocket (token
  auth, unknown application, max_connections), 4403 after the answer;
- origins: [app] origins allow-list;
- protocol: connect first (1008), malformed messages (4400), the app in
  the path, too many JSON values;
- a slow WebSocket subscriber is caught up (rule 7) with the last value.

Usage: test_ws_interop.py [SECTION...]  (env SOHUB_SERVER, SOHUB_CLI, WS_RTMP_PEER)
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import wsutil
from wsutil import OP_CLOSE, WS, Closed

T = wsutil.Checks()
srv = None
SECRET = "interop-secret"


# ---------------------------------------------------------------- ordered JSON

class Pairs(list):
    """A JSON object as its (name, value) pairs: order and duplicates kept."""


def loads(text):
    return json.loads(text, object_pairs_hook=Pairs)


def dumps(v):
    if isinstance(v, Pairs):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dumps(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def member(o, k):
    for name, v in o:
        if name == k:
            return v
    return None


def recv_pairs(ws, pred, timeout=10.0):
    """Next message (ordered form) for which pred holds."""
    deadline = time.monotonic() + timeout
    while True:
        op, data = ws.recv_msg(max(0.01, deadline - time.monotonic()))
        if op == OP_CLOSE:
            raise Closed("close frame %r" % data[:60])
        m = loads(data.decode())
        if pred(m):
            return m


def so_msg(name, events, version=0):
    return {"op": "so", "name": name, "version": version, "persistent": False,
            "events": events}


def close_handshake(ws):
    """The client's close 1000, the server's answer, then TCP closed: by
    then the server has ended the session."""
    ws.send_frame(OP_CLOSE, wsutil.close_payload(1000))
    code, _ = ws.expect_close(5)
    ok = code == 1000 and ws.wait_eof(5)
    ws.close()
    return ok


def ws_use(ws, name):
    ws.send_json(so_msg(name, [{"t": "use"}]))
    ws.wait_json(lambda m: m.get("op") == "so" and m["name"] == name and
                 any(e["t"] == "use_success" for e in m["events"]))


# ---------------------------------------------------------------- values

# The JSON a WebSocket client reads for each value: written here by hand
# in the form docs/amf-json.md prescribes (tagged only where plain JSON
# would lose something).
VALUES = [
    "null", "true", "false", "0", "-1.5", "0.30000000000000004", "1.7976931348623157e+308",
    "5e-324", "-2147483649", "2147483648", "9007199254740992", "1e+21",
    '{"$amf":"undefined"}', '{"$amf":"unsupported"}',
    '{"$amf":"int","value":42}', '{"$amf":"int","value":-268435456}',
    '{"$amf":"int","value":268435455}',
    '{"$amf":"number","value":"NaN"}', '{"$amf":"number","value":"Infinity"}',
    '{"$amf":"number","value":"-Infinity"}', '{"$amf":"number","value":"-0"}',
    '"caf\u00e9 \u20ac \U0001F600 \\" \\\\ \\n"', '""',
    '{"$amf":"string","hex":"6100ff62"}',
    '{"$amf":"date","ms":1700000000123,"tz":-120}', '{"$amf":"date","ms":0,"tz":0}',
    '{"$amf":"date","ms":{"$amf":"number","value":"NaN"},"tz":0}',
    '{"$amf":"xmldoc","text":"<a b=\'1\'/>"}', '{"$amf":"xml","text":"<x><y/></x>"}',
    '{"$amf":"bytes","hex":"00ff7f80"}', '{"$amf":"bytes","hex":""}',
    '{"$amf":"object","class":"com.example.Item","members":{"id":1,"title":"vase"}}',
    '{"$amf":"object","class":"com.example.Mix","dynamic":true,"sealed":1,'
    '"members":{"s":1,"d":2}}',
    '{"$amf":"object","dynamic":false,"members":{"a":1}}',
    '{"$amf":"object","class":"flex.messaging.io.ArrayCollection","external":[1,"a"]}',
    '{"$amf":"object","members":{"$amf":"looks like a tag"}}',
    '{"$amf":"ecma","count":7,"members":{"a":1}}',
    '{"$amf":"ecma","members":{"a":1,"b":[2]},"dense":[true,null]}',
    '{"$amf":"vector-int","fixed":true,"items":[-1,2,2147483647]}',
    '{"$amf":"vector-uint","fixed":false,"items":[0,4294967295]}',
    '{"$amf":"vector-double","fixed":false,"items":[0.5,{"$amf":"number","value":"NaN"},'
    '0.30000000000000004]}',
    '{"$amf":"vector-object","class":"com.T","fixed":false,"items":[null,{"a":1}]}',
    '{"$amf":"dict","weak":true,"entries":[["k",1],[{"$amf":"int","value":2},"v"],'
    '[{"o":1},[1]]]}',
    "[]", "{}", '[1,[2,[3,{"deep":[{"x":null}]}]]]', '{"b":1,"a":2,"b":3}',
    '{"nested":{"int":{"$amf":"int","value":7},"when":{"$amf":"date","ms":86400000,"tz":0},'
    '"list":[{"$amf":"bytes","hex":"01"}]}}',
]


def values_section():
    ws, res = wsutil.connect_app(srv.http_port, "conf/vals")
    T.check(res.get("ok"), "WebSocket client connected")
    peers = {enc: wsutil.Peer(srv.rtmp_port, "conf/vals", enc) for enc in (0, 3)}
    ws_use(ws, "vals")
    for enc, p in peers.items():
        T.eq(p.cmd("use vals"), "ok", "AMF%d peer uses the object" % enc)

    for writer_enc in (0, 3):
        writer = peers[writer_enc]
        for i, text in enumerate(VALUES):
            key = "a%d_%02d" % (writer_enc, i)
            r = writer.cmd("set vals %s %s" % (key, text))
            if not T.eq(r, "ok", "AMF%d peer writes %s" % (writer_enc, text)):
                continue
            try:
                m = recv_pairs(ws, lambda m: member(m, "op") == "so" and any(
                    member(e, "t") == "change" and member(e, "slots")[0][0] == key
                    for e in member(m, "events")))
            except (Closed, TimeoutError) as e:
                T.check(False, "WebSocket reads %s (%s)" % (key, e))
                continue
            ev = [e for e in member(m, "events") if member(e, "t") == "change"][0]
            got = member(ev, "slots")[0][1]
            T.eq(dumps(got), dumps(loads(text)), "WebSocket reads the exact JSON of %s" % key)
            # write it back as it came, and have both RTMP peers compare
            back = "b%d_%02d" % (writer_enc, i)
            ws.send_text('{"op":"so","name":"vals","version":0,"events":[{"t":"change",'
                         '"slots":[[%s,%s]]}]}' % (json.dumps(back), dumps(got)))
            for enc, p in peers.items():
                T.eq(p.cmd("expect vals %s %s 5000" % (back, text)), "ok",
                     "AMF%d peer reads %s back identical (amf_equal)" % (enc, back))

    # SendMessage both ways with every value (max_args is 64)
    args = "[" + ",".join(VALUES) + "]"
    T.eq(peers[0].cmd("send vals fromRtmp " + args), "ok", "AMF0 peer sends every value")
    m = recv_pairs(ws, lambda m: member(m, "op") == "so" and any(
        member(e, "t") == "send" for e in member(m, "events")))
    ev = [e for e in member(m, "events") if member(e, "t") == "send"][0]
    T.eq(member(ev, "handler"), "fromRtmp", "WebSocket gets the SendMessage")
    T.eq(dumps(member(ev, "args")), dumps(loads(args)), "its arguments as exact JSON")
    ws.send_text('{"op":"so","name":"vals","version":0,"events":[{"t":"send",'
                 '"handler":"fromWs","args":%s}]}' % dumps(member(ev, "args")))
    for enc, p in peers.items():
        T.eq(p.cmd("expect_send vals fromWs 5000 " + args), "ok",
             "AMF%d peer gets the WebSocket's SendMessage, every argument identical" % enc)

    # echo: each value there and back as a call result
    ok = True
    for i, text in enumerate(VALUES):
        ws.send_text('{"op":"call","id":%d,"method":"echo","args":[%s]}' % (1000 + i, text))
        m = recv_pairs(ws, lambda m: member(m, "op") == "result" and member(m, "id") == 1000 + i)
        if not (member(m, "ok") is True and dumps(member(m, "value")) == dumps(loads(text))):
            print("# echo %s -> %s" % (text, dumps(member(m, "value"))))
            ok = False
    T.check(ok, "echo answers every value with its exact JSON")
    for p in peers.values():
        p.stop()
    ws.close()


def limits_section():
    """A value nested as deep as max_amf_depth allows over RTMP passes
    over WebSocket too; one more level closes the writer (4400); a
    subscriber and an RTMP peer go on."""
    w, _ = wsutil.connect_app(srv.http_port, "conf/lim")
    sub, _ = wsutil.connect_app(srv.http_port, "conf/lim")
    peer = wsutil.Peer(srv.rtmp_port, "conf/lim", 0)
    ws_use(w, "deep")
    ws_use(sub, "deep")
    T.eq(peer.cmd("use deep"), "ok", "RTMP peer uses the object")
    # the RTMP side's depth: the deepest value an RTMP client may write (a
    # deeper one closes it, so a throw-away peer finds it)
    probe = wsutil.Peer(srv.rtmp_port, "conf/lim", 0)
    T.eq(probe.cmd("use deep"), "ok", "probing RTMP peer uses the object")
    deepest = None
    for d in range(20, 80):
        v = "1"
        for _ in range(d):
            v = "[" + v + "]"
        try:
            if probe.cmd("set deep probe%d %s" % (d, v), timeout=5) != "ok":
                break
        except (OSError, Closed, TimeoutError):
            break
        deepest = d
    probe.stop()
    T.check(deepest is not None and deepest < 79, "RTMP client writes a value %s deep, no deeper"
            % deepest)
    good = "1"
    for _ in range(deepest):
        good = "[" + good + "]"
    w.send_text('{"op":"so","name":"deep","events":[{"t":"change","slots":[["ok",%s]]}]}' % good)
    m = w.wait_json(lambda m: m.get("op") == "so" and m["events"][0]["t"] == "success")
    T.eq(m["events"][0]["key"], "ok", "WebSocket writes a value as deep (%d)" % deepest)
    m = sub.wait_json(lambda m: m.get("op") == "so" and any(
        e["t"] == "change" and e["slots"][0][0] == "ok" for e in m["events"]))
    T.check(True, "the other WebSocket subscriber gets it")
    T.eq(peer.cmd("expect deep ok %s 5000" % good), "ok", "the RTMP peer gets it")
    w.send_text('{"op":"so","name":"deep","events":[{"t":"change","slots":[["bad",[%s]]]}]}'
                % good)
    op, data = w.recv_msg(5)
    T.check(op == OP_CLOSE and data[:2] == b"\x11\x30",
            "one level deeper: the writer's next frame is a close with 4400 (%d %r)"
            % (op, data[:60]))
    T.check(w.wait_eof(5), "and its TCP closed")
    sub.send_json(so_msg("deep", [{"t": "change", "slots": [["after", 1]]}]))
    sub.wait_json(lambda m: m.get("op") == "so" and m["events"][0]["t"] == "success")
    T.eq(peer.cmd("expect deep after 1 5000"), "ok", "subscriber and RTMP peer go on")
    # too many JSON values for max_amf_elements: refused before parsing
    n = 70000
    sub.send_text('{"op":"call","id":9,"method":"echo","args":[[' + ",".join(["0"] * n) + ']]}')
    code, _ = sub.expect_close(5)
    T.eq(code, 4400, "a message with more JSON values than max_amf_elements: 4400")
    peer.stop()


# ---------------------------------------------------------------- chat

def chat_section():
    url = srv.rtmp_url("talk/room1")
    listen = wsutil.CliLines(["chat", "listen", "-u", url, "--user", "rob", "--count", "1",
                              "--timeout", "30"])
    T.check(srv.wait_log("user=rob", 10), "rob (RTMP, sohub-cli chat listen) is connected")
    ws, res = wsutil.connect_app(srv.http_port, "talk/room2", user="wendy")
    T.check(res.get("ok"), "WebSocket user wendy connects (another instance)")
    ws.send_json({"op": "call", "id": 2, "method": "chat.sendPrivate",
                  "args": ["rob", "hi rob \u00e9\u20ac"]})
    r = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 2)
    T.check(r.get("ok") and r["value"].get("status") == "delivered" and r["value"].get("id"),
            "wendy -> rob: delivered (%r)" % r.get("value"))
    try:
        msg = listen.next_event(10)
    except (Closed, TimeoutError) as e:
        msg = {"error": str(e)}
    T.check(msg.get("from") == "wendy" and msg.get("text") == "hi rob \u00e9\u20ac" and
            msg.get("to") == "rob", "rob (RTMP) gets chat.onPrivate from wendy (%r)" % msg)

    rc, out, err = wsutil.cli(["chat", "send", "wendy", "hello wendy", "-u", url, "--user", "rob"])
    T.eq(rc, 0, "rob -> wendy with sohub-cli chat send")
    sent = json.loads(out) if rc == 0 else {}
    T.eq(sent.get("status"), "delivered", "rob -> wendy: delivered")
    call = ws.wait_json(lambda m: m.get("op") == "call" and m.get("method") == "chat.onPrivate")
    p = call["args"][0]
    T.check(p.get("from") == "rob" and p.get("to") == "wendy" and p.get("text") == "hello wendy" and
            p.get("id") == sent.get("id") and isinstance(p.get("ts"), (int, float)),
            "wendy (WebSocket) gets chat.onPrivate (%r)" % p)
    T.check("id" not in call, "chat.onPrivate wants no answer")
    ws.send_json({"op": "call", "id": 3, "method": "chat.ack", "args": [p["id"]]})
    r = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 3)
    T.check(r.get("ok") and r["value"].get("acked") == p["id"], "chat.ack answered %r" % r)
    T.check(close_handshake(ws), "wendy leaves (close handshake, TCP closed)")

    # rob writes while wendy is away: queued; wendy gets it when she comes back
    rc, out, err = wsutil.cli(["chat", "send", "wendy", "while away", "-u", url, "--user", "rob"])
    T.eq(json.loads(out).get("status") if rc == 0 else err, "queued", "rob -> wendy offline: queued")
    ws, res = wsutil.connect_app(srv.http_port, "talk", user="wendy")
    call = ws.wait_json(lambda m: m.get("op") == "call" and m.get("method") == "chat.onPrivate")
    T.eq(call["args"][0].get("text"), "while away", "the acknowledged one is not sent again, "
         "the queued one comes on connect")
    ws.send_json({"op": "call", "id": 4, "method": "chat.ack", "args": [call["args"][0]["id"]]})
    ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 4)
    ws.close()
    ws, res = wsutil.connect_app(srv.http_port, "talk", user="wendy")
    try:
        m = ws.wait_json(lambda m: m.get("op") == "call", 1.0)
        T.check(False, "nothing redelivered after chat.ack (got %r)" % m)
    except TimeoutError:
        T.check(True, "nothing redelivered after chat.ack")
    # errors are the RTMP API's
    ws.send_json({"op": "call", "id": 5, "method": "chat.sendPrivate", "args": ["wendy", "me"]})
    r = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 5)
    T.check(r.get("ok") is False and r["value"].get("code") == "Chat.Denied",
            "a message to oneself: Chat.Denied (%r)" % r.get("value"))
    ws.send_json({"op": "call", "id": 6, "method": "no.such", "args": []})
    r = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 6)
    T.check(r.get("ok") is False and r["value"].get("code") == "NetConnection.Call.Failed",
            "an unknown method: NetConnection.Call.Failed")
    ws.close()
    listen.stop()


# ---------------------------------------------------------------- refusals, origins

def token(app, user, expires):
    mac = hmac.new(SECRET.encode(), ("%s\n%s\n%d" % (app, user, expires)).encode(),
                   hashlib.sha256).digest()
    return "%d.%s" % (expires, base64.urlsafe_b64encode(mac).decode().rstrip("="))


def ws_refusal(app, user=None, tok=None, origin=None):
    """(description, close code, TCP closed) of a refused WebSocket connect."""
    ws = WS(srv.http_port, origin=origin)
    msg = {"op": "connect", "id": 7, "app": app}
    if user is not None:
        msg["user"] = user
    if tok is not None:
        msg["token"] = tok
    ws.send_json(msg)
    r = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 7)
    if r.get("ok"):
        ws.close()
        return None, None, None
    v = r["value"]
    assert v["code"] == "NetConnection.Connect.Rejected" and v["level"] == "error", v
    code, _ = ws.expect_close(5)
    closed = ws.wait_eof(5)
    ws.close()
    return v["description"], code, closed


def rtmp_refusal(app, user=None, tok=None):
    args = ["call", "echo", '"x"', "-u", srv.rtmp_url(app)]
    if user is not None:
        args += ["--user", user]
    if tok is not None:
        args += ["--token", tok]
    rc, out, err = wsutil.cli(args)
    return None if rc == 0 else err


def refusals_section():
    now = int(time.time())
    cases = [
        ("Missing user name", "secure", None, token("secure", "alice", now + 600)),
        ("Missing token", "secure", "alice", None),
        ("Malformed token", "secure", "alice", "not-a-token"),
        ("Invalid token", "secure", "alice", token("secure", "bob", now + 600)),
        ("Invalid token", "secure", "alice", token("other", "alice", now + 600)),
        ("Token expired", "secure", "alice", token("secure", "alice", now - 10)),
        ("Application not found", "nope", None, None),
    ]
    for want, app, user, tok in cases:
        desc, code, closed = ws_refusal(app, user, tok)
        T.eq(desc, want, "WebSocket refused: %s" % want)
        T.eq(code, 4403, "%s: close code 4403" % want)
        T.check(closed, "%s: TCP closed" % want)
        err = rtmp_refusal(app, user, tok)
        T.check(err is not None and want in err, "RTMP refused with the same description (%s)"
                % (err or "").strip()[:120])
    good = token("secure", "alice", now + 600)
    ws, res = wsutil.connect_app(srv.http_port, "secure", user="alice", token=good)
    T.check(res.get("ok"), "a good token connects over WebSocket")
    ws.close()
    ws, res = wsutil.connect_app(srv.http_port, "secure?user=alice&token=" + good)
    T.check(res.get("ok"), "user and token in the app's query")
    ws.close()
    T.eq(rtmp_refusal("secure", "alice", good), None, "a good token connects over RTMP")
    # max_connections = 1: the second, RTMP or WebSocket, is refused alike
    first, res = wsutil.connect_app(srv.http_port, "tiny")
    T.check(res.get("ok"), "first client of a max_connections = 1 application")
    desc, code, closed = ws_refusal("tiny")
    want = "Too many connections to this application"
    T.check(desc == want and code == 4403 and closed, "second WebSocket: %s" % desc)
    err = rtmp_refusal("tiny")
    T.check(err is not None and want in err, "second RTMP client: the same")
    first.close()


def origins_section():
    for origin, ok in (("http://good.example", True), ("https://x.example:8443", True),
                       ("HTTP://GOOD.EXAMPLE", True), ("http://evil.example", False),
                       ("http://good.example.evil", False), ("null", False), (None, True)):
        desc, code, closed = ws_refusal("web", origin=origin)
        if ok:
            T.eq(desc, None, "origin %s allowed" % origin)
        else:
            T.check(desc == "Origin not allowed" and code == 4403 and closed,
                    "origin %s refused: Origin not allowed, 4403" % origin)
    desc, _, _ = ws_refusal("conf", origin="http://evil.example")
    T.eq(desc, None, "an application without origins takes any origin")
    T.eq(rtmp_refusal("web"), None, "RTMP clients (no Origin) are not checked")


# ---------------------------------------------------------------- protocol

def protocol_section():
    def fresh():
        return WS(srv.http_port)
    ws = fresh()
    ws.send_json({"op": "call", "id": 1, "method": "echo", "args": [1]})
    T.eq(ws.expect_close(5)[0], 1008, "a call before connect: 1008")
    ws = fresh()
    ws.send_json(so_msg("x", [{"t": "use"}]))
    T.eq(ws.expect_close(5)[0], 1008, "an so message before connect: 1008")
    for text, what in (("[1]", "an array"), ('{"id":1}', "no op"), ('{"op":"fly"}', "an unknown op"),
                       ("{", "not JSON"), ('{"op":"call","id":2}', "a call without method")):
        ws, _ = wsutil.connect_app(srv.http_port, "conf")
        ws.send_text(text)
        T.eq(ws.expect_close(5)[0], 4400, "%s: 4400" % what)
    # the application from the path
    peer = wsutil.Peer(srv.rtmp_port, "conf/pathroom", 0)
    T.eq(peer.cmd("use p"), "ok", "RTMP peer in conf/pathroom")
    ws = WS(srv.http_port, path="/ws/conf/pathroom")
    ws.send_json({"op": "connect", "id": 1})
    r = ws.wait_json(lambda m: m.get("op") == "result")
    T.check(r.get("ok"), "connect without app on /ws/conf/pathroom")
    ws_use(ws, "p")
    ws.send_json(so_msg("p", [{"t": "change", "slots": [["k", "from path"]]}]))
    T.eq(peer.cmd('expect p k "from path" 5000'), "ok", "it joined conf/pathroom")
    peer.stop()
    ws.close()


# ---------------------------------------------------------------- slow subscriber

def slow_section():
    """Rule 7 over WebSocket: a subscriber that stops reading is not sent
    every change; when it reads again it ends with the last value."""
    n, size = 3000, 4000
    slow, _ = wsutil.connect_app(srv.http_port, "conf/flood", rcvbuf=4096)
    writer, _ = wsutil.connect_app(srv.http_port, "conf/flood")
    peer = wsutil.Peer(srv.rtmp_port, "conf/flood", 0)
    ws_use(slow, "flood")
    ws_use(writer, "flood")
    T.eq(peer.cmd("use flood"), "ok", "RTMP peer subscribed")
    blob = "x" * size
    frames = b"".join(
        wsutil.frame_bytes(1, json.dumps(so_msg("flood", [{"t": "change", "slots": [
            ["k", "%s %d" % (blob, i)]]}])).encode()) for i in range(n))
    writer.send_raw(frames)
    last = None
    deadline = time.monotonic() + 60
    got = 0
    while got < n and time.monotonic() < deadline:
        m = writer.recv_json(30)
        if m.get("op") == "so":
            got += sum(1 for e in m["events"] if e["t"] == "success")
            last = m["version"]
    T.eq(got, n, "the writer's %d changes all succeeded" % n)
    # the RTMP peer (reading) has the last value
    T.eq(peer.cmd('expect flood k "%s %d" 20000' % (blob, n - 1)), "ok",
         "the RTMP peer reads the last value")
    # now the slow one reads
    state, msgs, version = {}, 0, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            m = slow.recv_json(3)
        except TimeoutError:
            break
        if m.get("op") != "so":
            continue
        msgs += 1
        version = m["version"]
        for e in m["events"]:
            if e["t"] == "clear":
                state = {}
            elif e["t"] == "change":
                for k, v in e["slots"]:
                    state[k] = v
        if state.get("k") == "%s %d" % (blob, n - 1) and version == last:
            break
    T.check(state.get("k") == "%s %d" % (blob, n - 1),
            "the slow subscriber ends with the last value")
    T.eq(version, last, "at the object's last version")
    T.check(msgs < n, "and was not sent every change (%d messages for %d changes)" % (msgs, n))
    T.check("catching up" in srv.log_text(), "the server caught it up (log)")
    peer.stop()
    slow.close()
    writer.close()


CONFIG = """
[server]
ping_interval_ms = 600000
idle_timeout_ms = 1200000
so_max_updates_per_sec = 0
so_congestion_bytes = 65536
[app conf]
store = memory
[app talk]
store = memory
[app secure]
auth = token
secret = %s
store = memory
[app tiny]
max_connections = 1
store = memory
[app web]
origins = http://good.example, https://x.example:8443
store = memory
""" % SECRET

SECTIONS = [("values", values_section), ("limits", limits_section), ("chat", chat_section),
            ("refusals", refusals_section), ("origins", origins_section),
            ("protocol", protocol_section), ("slow", slow_section)]


def main():
    global srv
    only = sys.argv[1:]
    srv = wsutil.Server(CONFIG, log_level="debug")
    try:
        for name, fn in SECTIONS:
            if only and name not in only:
                continue
            print("# section %s" % name, flush=True)
            try:
                fn()
            except (Closed, TimeoutError, RuntimeError, ValueError, KeyError, AssertionError) as e:
                T.check(False, "%s: %s: %s" % (name, type(e).__name__, e))
    finally:
        T.eq(srv.stop(), 0, "server stopped cleanly")
    return T.done()


if __name__ == "__main__":
    sys.exit(main())
