#!/usr/bin/env python3
"""Writes the small generated seeds of fuzz/corpus/<target>/.

The AMF targets take their seeds from tests/data/amf (the codec's test
vectors) with a mode byte in front; every other target gets hand-built
inputs from here: valid handshakes, chunk streams carrying the messages a
real client sends, command bodies, shared-object bodies, engine scripts
and configuration files.  Run from anywhere: python3 fuzz/make_seeds.py
(the seeds are committed; rerun only when the formats change).
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
AMF_VECTORS = os.path.join(ROOT, "tests", "data", "amf")
HS = 1536


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- AMF0 writers (enough for seeds) ----
def a0_num(x):
    return b"\x00" + struct.pack(">d", x)


def a0_bool(b):
    return b"\x01" + (b"\x01" if b else b"\x00")


def a0_str(s):
    s = s.encode()
    return b"\x02" + struct.pack(">H", len(s)) + s


def a0_null():
    return b"\x05"


def a0_obj(pairs):
    out = b"\x03"
    for k, v in pairs:
        k = k.encode()
        out += struct.pack(">H", len(k)) + k + v
    return out + b"\x00\x00\x09"


def a0_ecma(pairs):
    out = b"\x08" + struct.pack(">I", len(pairs))
    for k, v in pairs:
        k = k.encode()
        out += struct.pack(">H", len(k)) + k + v
    return out + b"\x00\x00\x09"


def a0_amf3_int(i):
    # 0x11 switch, AMF3 integer (small positive)
    return b"\x11\x04" + bytes([i & 0x7F])


# ---- AMF3 writers (for the memory and raw AMF3 seeds) ----
def a3_u29(v):
    if v < 0x80:
        return bytes([v])
    if v < 0x4000:
        return bytes([v >> 7 | 0x80, v & 0x7F])
    if v < 0x200000:
        return bytes([v >> 14 | 0x80, (v >> 7 & 0x7F) | 0x80, v & 0x7F])
    return bytes([v >> 22 | 0x80, (v >> 15 & 0x7F) | 0x80, (v >> 8 & 0x7F) | 0x80, v & 0xFF])


def a3_inline(s):
    # U29S of an inline string (no marker)
    s = s.encode() if isinstance(s, str) else s
    return a3_u29(len(s) << 1 | 1) + s


def a3_string_refs(n, s):
    # array [s, then n - 1 references to it (06 00)]
    return b"\x09" + a3_u29(n << 1 | 1) + b"\x01" + b"\x06" + a3_inline(s) + b"\x06\x00" * (n - 1)


def a3_shared_class(n, cls):
    # array of n objects of one traits (inline once, then traits references)
    out = b"\x09" + a3_u29(n << 1 | 1) + b"\x01" + b"\x0a\x03" + a3_inline(cls)
    return out + b"\x0a\x01" * (n - 1)


def a3_key_refs(n, key):
    # dynamic object whose n member names are one string by reference
    out = b"\x0a\x0b\x01" + a3_inline(key) + b"\x01"
    return out + b"\x00\x01" * (n - 1) + b"\x01"


def a0_nulls(n):
    return b"\x0a" + struct.pack(">I", n) + b"\x05" * n


def command(name, txid, obj, *args):
    body = a0_str(name) + a0_num(txid) + (obj if obj is not None else a0_null())
    for a in args:
        body += a
    return body


CONNECT = command("connect", 1, a0_obj([
    ("app", a0_str("chat")), ("flashVer", a0_str("LNX 9,0,124,2")),
    ("tcUrl", a0_str("rtmp://127.0.0.1/chat")), ("objectEncoding", a0_num(0))]))


# ---- shared-object bodies ----
def so_header(name, version, persistent, amf3=False):
    n = name.encode()
    out = b"\x00" if amf3 else b""
    return out + struct.pack(">H", len(n)) + n + struct.pack(">III", version,
                                                            2 if persistent else 0, 0)


def so_event(etype, body):
    return struct.pack(">BI", etype, len(body)) + body


def so_key(k):
    k = k.encode()
    return struct.pack(">H", len(k)) + k


def so_use(name, version=0, persistent=False, amf3=False):
    return so_header(name, version, persistent, amf3) + so_event(1, b"")


def so_change(name, version, pairs, persistent=False, amf3=False):
    body = b"".join(so_key(k) + v for k, v in pairs)
    return so_header(name, version, persistent, amf3) + so_event(3, body)


def so_remove(name, version, keys, persistent=False):
    return so_header(name, version, persistent) + b"".join(so_event(10, so_key(k)) for k in keys)


def so_send(name, version, handler, *args):
    return so_header(name, version, False) + so_event(6, a0_str(handler) + b"".join(args))


def so_raw_header(name, version, lead):
    n = name.encode()
    return bytes([lead]) + struct.pack(">H", len(n)) + n + struct.pack(">III", version, 0, 0)


def so_release(name, version=0):
    return so_header(name, version, False) + so_event(2, b"")


# ---- chunk writer: type 0 first chunk, type 3 continuations ----
def basic_header(fmt, csid):
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    c = csid - 64
    return bytes([(fmt << 6) | 1, c & 0xFF, c >> 8])


def chunks(msgs, chunk_size=128):
    out = b""
    for (csid, mtype, sid, ts, body) in msgs:
        ext = ts >= 0xFFFFFF
        t = 0xFFFFFF if ext else ts
        out += basic_header(0, csid) + struct.pack(">I", t)[1:] + struct.pack(">I", len(body))[1:]
        out += bytes([mtype]) + struct.pack("<I", sid)
        if ext:
            out += struct.pack(">I", ts)
        first = True
        for i in range(0, max(len(body), 1), chunk_size):
            if not first:
                out += basic_header(3, csid)
                if ext:
                    out += struct.pack(">I", ts)
            out += body[i:i + chunk_size]
            first = False
    return out


def handshake_c012():
    c1 = struct.pack(">II", 0, 0) + bytes((i * 7) & 0xFF for i in range(HS - 8))
    c2 = bytes(HS)
    return b"\x03" + c1 + c2


def main():
    # AMF: test vectors with a mode byte (0 = default limits, 1 = tight)
    for enc in ("amf0", "amf3"):
        target = "fuzz_" + enc
        if os.path.isdir(AMF_VECTORS):
            for f in sorted(os.listdir(AMF_VECTORS)):
                if not f.endswith("." + enc + ".bin"):
                    continue
                data = open(os.path.join(AMF_VECTORS, f), "rb").read()
                if len(data) > 4096:
                    continue
                put(target, f.split(".")[0], b"\x00" + data)
    put("fuzz_amf0", "command_connect", b"\x00" + CONNECT)
    put("fuzz_amf0", "tight_connect", b"\x01" + CONNECT)
    # memory: references that must stay shared, values that hold more
    # than their bytes (issue 12), tight mode reaches the budget
    refs = a3_string_refs(300, "s" * 64)
    put("fuzz_amf3", "mem_string_refs", b"\x00" + refs)
    put("fuzz_amf3", "mem_string_refs_tight", b"\x01" + a3_string_refs(40, "s" * 12))
    put("fuzz_amf3", "mem_shared_class", b"\x00" + a3_shared_class(100, "C" * 200))
    put("fuzz_amf3", "mem_key_refs", b"\x00" + a3_key_refs(20, "k" * 100))
    put("fuzz_amf0", "mem_avmplus_refs", b"\x00" + CONNECT + b"\x11" + refs)
    put("fuzz_amf0", "mem_nulls", b"\x00" + a0_nulls(3000))
    put("fuzz_amf0", "mem_nulls_tight", b"\x01" + a0_nulls(200))

    # handshake: mode byte, seed byte, then peer bytes or xor mutations
    hs = handshake_c012()
    put("fuzz_handshake", "server_simple", b"\x00\x00" + hs)
    put("fuzz_handshake", "server_simple_split", b"\x38\x00" + hs)
    put("fuzz_handshake", "server_genuine", b"\x02\x01")
    put("fuzz_handshake", "server_genuine_digest", b"\x06\x02")
    put("fuzz_handshake", "server_genuine_digest_mut", b"\x06\x03" + b"\x00\x08\x01")
    put("fuzz_handshake", "client_genuine", b"\x03\x04")
    put("fuzz_handshake", "client_genuine_digest", b"\x07\x05")
    put("fuzz_handshake", "client_raw", b"\x01\x06" + b"\x03" + bytes(2 * HS))

    # chunk streams (mode byte: 0 = default limits)
    stream = chunks([
        (3, 20, 0, 0, CONNECT),
        (2, 5, 0, 0, struct.pack(">I", 2500000)),
        (3, 20, 0, 10, command("createStream", 2, None)),
        (3, 19, 0, 20, so_use("room/list", 0, True)),
        (3, 19, 0, 30, so_change("room/list", 1, [("a", a0_num(1)), ("b", a0_str("x"))])),
        (4, 8, 1, 40, bytes(300)),
        (2, 3, 0, 50, struct.pack(">I", 4000)),
        (2, 4, 0, 60, struct.pack(">HI", 6, 12345)),
    ])
    put("fuzz_chunk", "client_session", b"\x00" + stream)
    put("fuzz_chunk", "client_session_tight", b"\x01" + stream)
    put("fuzz_chunk", "set_chunk_size", b"\x00" + chunks([
        (2, 1, 0, 0, struct.pack(">I", 4096)),
    ]) + chunks([(3, 20, 0, 0, CONNECT + bytes(5000))], 4096))
    put("fuzz_chunk", "ext_timestamp", b"\x00" + chunks([
        (5, 18, 1, 0x1000000, a0_str("@setDataFrame") + bytes(400)),
        (300, 9, 1, 0x1000010, bytes(200)),
        (65599, 8, 1, 0x12, bytes(10)),
    ]))
    put("fuzz_chunk", "abort", b"\x00" + chunks([(6, 9, 1, 0, bytes(300))])[:150] +
        chunks([(2, 2, 0, 0, struct.pack(">I", 6))]) + chunks([(6, 9, 1, 0, bytes(20))]))

    # conn: mode byte, then bytes after the handshake the harness sends
    put("fuzz_conn", "session", b"\x00" + stream)
    put("fuzz_conn", "session_split", b"\x3e" + stream)
    put("fuzz_conn", "chunk_size_ack", b"\x00" + chunks([
        (2, 1, 0, 0, struct.pack(">I", 4096)),
        (2, 5, 0, 0, struct.pack(">I", 1000)),
        (2, 6, 0, 0, struct.pack(">IB", 1000, 2)),
        (3, 17, 0, 0, b"\x00" + CONNECT),
        (2, 4, 0, 0, struct.pack(">HI", 7, 1)),
        (2, 4, 0, 0, struct.pack(">HI", 3, 1) + struct.pack(">I", 100)),
    ]))

    # command bodies: mode byte (bit 0: type 17; bit 1: tight limits)
    put("fuzz_cmd", "connect", b"\x00" + CONNECT)
    put("fuzz_cmd", "connect_amf3", b"\x01\x00" + CONNECT)
    put("fuzz_cmd", "call_args", b"\x00" + command("sendMessage", 5, None, a0_str("hi"),
                                                   a0_ecma([("k", a0_bool(True))]),
                                                   a0_amf3_int(7)))
    put("fuzz_cmd", "name_only", b"\x00" + a0_str("ping"))
    put("fuzz_cmd", "tight", b"\x02" + CONNECT)

    # SO bodies: mode byte (bit 0: type 16 body; bit 1: tight limits)
    put("fuzz_so_wire", "use", b"\x00" + so_use("room/x", 0, True))
    put("fuzz_so_wire", "use_amf3", b"\x01" + so_use("room/x", 3, False, True))
    put("fuzz_so_wire", "change", b"\x00" + so_change("o", 4, [("a", a0_num(1)),
                                                              ("b", a0_obj([("c", a0_str("d"))]))]))
    put("fuzz_so_wire", "remove", b"\x00" + so_remove("o", 4, ["a", "b"]))
    put("fuzz_so_wire", "send", b"\x00" + so_send("o", 1, "onMsg", a0_str("hi"), a0_num(2)))
    put("fuzz_so_wire", "server_events", b"\x00" + so_header("o", 9, True) +
        so_event(11, b"") + so_event(8, b"") + so_event(4, so_key("a") + a0_num(5)) +
        so_event(5, so_key("a")) + so_event(9, so_key("b")) +
        so_event(7, so_key("SharedObject.NoWriteAccess") + so_key("error")) +
        so_event(99, b"xyz"))
    put("fuzz_so_wire", "tight", b"\x02" + so_change("o", 1, [("k%d" % i, a0_num(i)) for i in range(10)]))
    # type 16 with raw AMF3 values (Red5's form), after a leading 0 or 3
    raw = (so_key("i") + b"\x04\x05" + so_key("s") + b"\x06" + a3_inline("hello") +
           so_key("t") + b"\x0a\x23" + a3_inline("pt") + a3_inline("x") + a3_inline("y") +
           b"\x04\x01\x06" + a3_inline("a") + so_key("r") + b"\x06\x00" +
           so_key("a") + b"\x09\x05\x01\x03\x01")
    put("fuzz_so_wire", "raw_amf3_lead0", b"\x01" + so_raw_header("o", 2, 0) + so_event(3, raw))
    put("fuzz_so_wire", "raw_amf3_lead3", b"\x01" + so_raw_header("o", 2, 3) + so_event(3, raw))
    put("fuzz_so_wire", "raw_amf3_mixed", b"\x01" + so_raw_header("o", 2, 0) +
        so_event(3, so_key("n") + a0_num(2)) + so_event(3, so_key("m") + b"\x04\x07") +
        so_event(6, a0_str("onRaw") + b"\x06" + a3_inline("hi") + b"\x04\x01"))
    put("fuzz_so_wire", "raw_amf3_tight", b"\x03" + so_raw_header("o", 2, 0) + so_event(3, raw))
    # memory: values that hold far more than their bytes
    put("fuzz_so_wire", "mem_nulls", b"\x00" + so_change("o", 1, [("a", a0_nulls(1000)),
                                                                 ("b", a0_nulls(1000))]))
    put("fuzz_so_wire", "mem_refs_value", b"\x00" + so_change("o", 1, [
        ("r", b"\x11" + a3_string_refs(200, "s" * 100))]))
    put("fuzz_so_wire", "mem_raw_refs_across_values", b"\x01" + so_raw_header("o", 1, 0) +
        so_event(3, so_key("a") + b"\x06" + a3_inline("z" * 200) +
                 b"".join(so_key("b%d" % i) + b"\x06\x00" for i in range(30))))
    put("fuzz_so_wire", "mem_tight", b"\x02" + so_change("o", 1, [("a", a0_nulls(100)),
                                                                 ("b", a0_nulls(100))]))

    # SO engine script: records of [op, client, len16, body] (see fuzz_so_engine.c)
    def rec(op, client, body=b""):
        return bytes([op, client]) + struct.pack(">H", len(body)) + body
    script = (rec(0, 0, so_use("chat/users", 0, False)) +
              rec(0, 1, so_use("chat/users", 0, False)) +
              rec(0, 0, so_change("chat/users", 0, [("alice", a0_str("hi"))])) +
              rec(0, 1, so_change("chat/users", 0, [("alice", a0_str("me too"))])) +
              rec(0, 1, so_send("chat/users", 1, "msg", a0_str("x"))) +
              rec(0, 2, so_use("scores", 0, True)) +
              rec(0, 2, so_change("scores", 0, [("s", a0_num(10))], persistent=True)) +
              rec(1, 2) +
              rec(0, 0, so_remove("chat/users", 1, ["alice"])) +
              rec(0, 0, so_release("chat/users", 2)))
    put("fuzz_so_engine", "chat", b"\x00" + script)
    # client 2 is the observer (read-only, modelled): it should end up with
    # the same copy as the server
    observed = (rec(0, 2, so_use("room", 0, False)) +
                rec(0, 0, so_use("room", 0, False)) +
                rec(0, 1, so_use("room", 0, False)) +
                rec(0, 0, so_change("room", 0, [("a", a0_num(1)), ("b", a0_str("x"))])) +
                rec(3, 2) +
                rec(0, 1, so_change("room", 1, [("a", a0_num(2))])) +
                rec(0, 1, so_remove("room", 2, ["b"])) +
                rec(0, 2, so_change("room", 3, [("c", a0_num(3))])) +
                rec(4, 2) +
                rec(0, 0, so_use("saved", 0, True)) +
                rec(0, 2, so_use("saved", 0, True)) +
                rec(0, 0, so_change("saved", 0, [("k", a0_obj([("x", a0_num(1))]))], persistent=True)) +
                rec(1, 0) + rec(2, 0) +
                rec(0, 2, so_use("saved", 1, True)))
    put("fuzz_so_engine", "observer", b"\x00" + observed)
    put("fuzz_so_engine", "observer_persist", b"\x08" + observed)
    put("fuzz_so_engine", "lww_tight", b"\x03" + script)
    put("fuzz_so_engine", "congest", b"\x00" + rec(0, 0, so_use("a", 0, False)) +
        rec(0, 1, so_use("a", 0, False)) + rec(2, 1) +
        rec(0, 0, so_change("a", 0, [("k", a0_num(1))])) +
        rec(0, 0, so_change("a", 1, [("k", a0_num(2))])) + rec(3, 1) + rec(4, 1) +
        rec(0, 1, so_use("a", 0, False)))
    # client 3 is alone in room app/b: it writes a persistent object, the
    # batch is stored, it leaves (away: who bit 7), the room is unloaded
    # (op 1, who bit 7, by client 0) and read again when client 3 comes back
    put("fuzz_so_engine", "unload_reload", b"\x00" +
        rec(0, 3, so_use("saved", 0, True)) +
        rec(0, 3, so_change("saved", 1, [("x", a0_num(7))], persistent=True)) +
        rec(1, 3) + rec(2, 3) + rec(5, 0x83) + rec(1, 0x80) +
        rec(0, 3, so_use("saved", 0, True)) +
        rec(0, 3, so_change("saved", 2, [("y", a0_num(8))], persistent=True)))
    # rooms load late (mode 0x40): clients and the server (op 6) act while
    # app/a and app/b wait for their loads; op 1 with who bit 6 answers the
    # oldest load (app/a first), with bit 5 too it fails it, and the next
    # message asks again
    waiting = (rec(0, 2, so_use("saved", 0, True)) +
               rec(0, 0, so_use("saved", 0, True)) +
               rec(0, 0, so_change("saved", 0, [("k", a0_num(1))], persistent=True)) +
               rec(6, 0x80, b"saved") +
               rec(0, 3, so_use("other", 0, True)) +
               rec(0, 1, so_send("saved", 0, "msg", a0_str("x"))))
    put("fuzz_so_engine", "late_load", b"\x40" + waiting +
        rec(1, 0x40) + rec(1, 0) + rec(2, 0) + rec(1, 0x40) +
        rec(0, 3, so_change("other", 1, [("o", a0_num(3))], persistent=True)))
    put("fuzz_so_engine", "late_load_fail", b"\x40" + waiting +
        rec(1, 0x60) + rec(0, 1, so_use("saved", 0, True)) + rec(1, 0x60) +
        rec(0, 2, so_use("saved", 0, True)) + rec(1, 0x40) + rec(1, 0) + rec(2, 0))
    # tight caps (mode 2): quotas of 3 persistent objects / 300 bytes for
    # application "app" (a fourth object and a growth past 300 bytes are
    # refused), a 128-byte reply budget (the observer's Use of p1 is
    # answered with UseSuccess alone) and paced catch-ups (op 4, who bit
    # 7: budget 16 x the first body byte).  who 0x7C..0x7F moves the clock
    # 1.1 s so the update-rate cap (5/s) does not refuse the writes.
    v50, v60 = a0_str("x" * 50), a0_str("y" * 60)
    put("fuzz_so_engine", "quota_paced", b"\x02" +
        rec(0, 0x7C, so_use("p1", 0, True)) +
        rec(0, 0x7C, so_change("p1", 1, [("k1", v50), ("k2", v50)], persistent=True)) +
        rec(0, 0x7C, so_use("p2", 0, True)) +
        rec(0, 0x7C, so_change("p2", 1, [("k", v50)], persistent=True)) +
        rec(0, 0x7C, so_use("p3", 0, True)) +
        rec(0, 0x7C, so_change("p3", 1, [("k", v50)], persistent=True)) +
        rec(0, 0x7D, so_use("p4", 0, True)) +
        rec(0, 0x7D, so_change("p4", 1, [("k", v50)], persistent=True)) +
        rec(0, 0x7C, so_change("p1", 2, [("k3", v60)], persistent=True)) +
        rec(0, 0x7C, so_change("p1", 3, [("k4", v60)], persistent=True)) +
        rec(1, 0) + rec(2, 0) +
        rec(0, 0x7E, so_use("p1", 0, True)) +
        rec(3, 2) +
        rec(0, 0x7C, so_change("p1", 3, [("k1", v60)], persistent=True)) +
        rec(1, 0) + rec(2, 0) +
        rec(4, 0x82, b"\x01") + rec(4, 0x82, b"\x00") +
        rec(0, 0x7E, so_use("p2", 0, True)) +
        rec(4, 0x82, b"\x00"))

    # auth: user NUL token NUL app [now u64]; secret as in fuzz_auth.c
    import base64
    import hashlib
    import hmac

    def token(app, user, expiry, secret=b"fuzz-secret-0123456789"):
        msg = app + b"\n" + user + b"\n" + str(expiry).encode()
        mac = hmac.new(secret, msg, hashlib.sha256).digest()
        return str(expiry).encode() + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")
    now = struct.pack(">Q", 1700000000 << 1)
    put("fuzz_auth", "valid", b"alice\0" + token(b"chat", b"alice", 1800000000) + b"\0chat\0" + now)
    put("fuzz_auth", "expired", b"bob\0" + token(b"chat", b"bob", 1600000000) + b"\0chat\0" + now)
    put("fuzz_auth", "other_user", b"eve\0" + token(b"chat", b"alice", 1800000000) + b"\0chat\0" + now)
    put("fuzz_auth", "malformed", b"alice\0" + b"01.abc" + b"\0chat\0")

    # config files
    put("fuzz_config", "server", b"""[server]
listen = 127.0.0.1:1935
log_level = info
max_connections = 100
max_connections_per_ip = 10
max_message_size = 65536
idle_timeout_ms = 30000

[app chat]
auth = token
secret = s3cret
read_access = /
write_access = chat;users
conflict = lww
store = memory

[app:*]
store = sqlite
commit_interval_ms = 20
""")
    put("fuzz_config", "empty", b"")
    put("fuzz_config", "bad", b"[server]\nlisten = [::1]:99999\nnope = 1\n[app]\n")
    http_seeds()
    ws_in_seeds()
    ws_json_seeds()
    api_seeds()
    return 0


# ---- HTTP and WebSocket (fuzz_http_req, fuzz_ws_in, fuzz_ws_json) ----
def http_seeds():
    upgrade = (b"GET /ws/chat/room1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sohub.v1\r\n"
               b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               b"Origin: http://127.0.0.1:8080\r\n\r\n\x81\x85\x01\x02\x03\x04hello")
    page = (b"GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"1-2\"\r\n"
            b"Accept: text/html,  */*  \r\n\r\n")
    pipelined = (b"GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"POST /api/objects HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":[1,2]}"
                 b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
                 b"HEAD / HTTP/1.0\r\n\r\n")
    bad = b"GET /%zz/%4 HTTP/1.1\r\nX:\r\n  folded\r\n\r\nGET http://h/../x#f HTTP/1.1\r\n\r\n"
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(70)) + b"\r\n"
    for mode, seed in ((0, b"\x00\x00\x00\x00"), (1, b"\x07\x12\x34\x56"),
                       (2, b"\x30\xaa\x55\x01"), (3, b"\x01\x00\x00\x09")):
        put("fuzz_http_req", "upgrade_%d" % mode, bytes([mode]) + seed + upgrade)
        put("fuzz_http_req", "page_%d" % mode, bytes([mode]) + seed + page)
        put("fuzz_http_req", "pipelined_%d" % mode, bytes([mode]) + seed + pipelined)
    put("fuzz_http_req", "bad", b"\x01\x05\x00\x00\x01" + bad)
    put("fuzz_http_req", "many_headers", b"\x01\x09\x00\x00\x01" + many)
    put("fuzz_http_req", "long_target", b"\x00\x03\x00\x00\x01GET /" + b"a" * 70 + b" HTTP/1.1\r\n\r\n")


# ---- the server API (fuzz_api): a mode byte (bits 0-3: write size 1 << n),
# then the requests of one admin connection ----
def api_req(method, target, body=None, key="w", extra=b""):
    secret = {"w": b"fuzz-write-key-0123456789", "r": b"fuzz-read-key-0123456789"}.get(key)
    h = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method.encode(), target.encode())
    if secret:
        h += b"Authorization: Bearer " + secret + b"\r\n"
    h += extra
    if body is not None:
        h += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return h + b"\r\n" + (body or b"")


def api_seeds():
    room = "/api/v1/apps/demo/instances/room1"
    seeds = {
        "write_read": [
            api_req("POST", room + "/objects/doc", b'{"set":{"a":1,"b":{"$amf":"int","value":2}}}'),
            api_req("GET", room + "/objects/doc"),
            api_req("GET", room + "/objects?limit=5"),
            api_req("POST", room + "/objects/doc", b'{"remove":["a"],"set":{"c":[1,"x",null]}}'),
            api_req("GET", room + "/objects/doc?persistent=true", key="r")],
        "temporary_cas": [
            api_req("POST", room + "/objects/t/a/b", b'{"persistent":false,"set":{"k":1}}'),
            api_req("POST", room + "/objects/t/a/b",
                    b'{"persistent":false,"set":{"k":2},"expect_version":7}'),
            api_req("GET", room + "/objects/t/a/b?persistent=false"),
            api_req("POST", room + "/objects/t/a/b", b'{"persistent":true,"set":{"k":3}}')],
        "locks": [
            api_req("POST", room + "/locks", b'{"object":"l","persistent":false,"lock":true,"ttl_ms":50}'),
            api_req("POST", room + "/objects/l", b'{"persistent":false,"set":{"q":1}}'),
            api_req("POST", room + "/locks", b'{"object":"l","persistent":false,"lock":true}'),
            api_req("POST", room + "/locks", b'{"object":"l","persistent":false,"lock":false}'),
            api_req("POST", room + "/locks", b'{"object":"l","persistent":false,"lock":false}'),
            api_req("POST", room + "/locks", b'{"object":"p","lock":true,"ttl_ms":999999}')],
        "idempotency": [
            api_req("POST", room + "/objects/i", b'{"set":{"n":1}}', extra=b"Idempotency-Key: k1\r\n"),
            api_req("POST", room + "/objects/i", b'{"set":{"n":1}}', extra=b"Idempotency-Key: k1\r\n"),
            api_req("POST", room + "/objects/i", b'{"set":{"n":2}}', extra=b"Idempotency-Key: k1\r\n"),
            api_req("POST", room + "/objects/i", b'{"set":', extra=b"Idempotency-Key: k2\r\n"),
            api_req("DELETE", "/api/v1/connections/1", extra=b"Idempotency-Key: k3\r\n"),
            api_req("DELETE", "/api/v1/connections/1", extra=b"Idempotency-Key: k3\r\n")],
        "messages": [
            api_req("POST", room + "/messages",
                    b'{"object":"m","persistent":false,"handler":"h","args":["a",{"$amf":"date","ms":1,"tz":0},'
                    b'{"$amf":"bytes","hex":"00ff"},[[[1]]]]}'),
            api_req("POST", room + "/messages", b'{"object":"m","handler":"h","args":[{"$amf":"nope"}]}'),
            api_req("POST", room + "/messages", b'{"object":"m","handler":"h","args":' +
                    b"[" + b",".join([b"0"] * 65) + b"]}")],
        "listings": [
            api_req("GET", "/api/v1/apps"),
            api_req("GET", "/api/v1/apps/demo/instances?limit=1"),
            api_req("GET", "/api/v1/connections?app=demo&instance=room1&user=u&transport=ws&after=0&limit=2"),
            api_req("GET", room + "/presence"),
            api_req("GET", "/api/v1/apps/demo/chat/users/bob"),
            api_req("POST", "/api/v1/apps/demo/chat/messages", b'{"to":"bob","text":"hi","client_id":"c1"}'),
            api_req("DELETE", "/api/v1/apps/demo/users/bob/connections"),
            api_req("HEAD", "/api/v1/apps")],
        "errors": [
            api_req("GET", "/api/v1/apps", key=None),
            api_req("GET", "/api/v1/apps", key="bad"),
            api_req("POST", room + "/objects/x", b'{"set":{"a":1}}', key="r"),
            api_req("PUT", "/api/v1/apps", b"{}"),
            api_req("GET", "/api/v1/apps/" + "a" * 130 + "/instances"),
            api_req("GET", "/api/v1/apps/demo/instances/b%21d/objects"),
            api_req("DELETE", "/api/v1/connections/12x"),
            api_req("POST", room + "/objects/x", b"[1,2]"),
            api_req("POST", room + "/objects/x", b'{"set":{"d":[[[[[[[[[[1]]]]]]]]]]}}'),
            api_req("POST", room + "/objects/x", b'{"set":{' +
                    b",".join(b'"k%d":%d' % (i, i) for i in range(10)) + b"}}"),
            api_req("GET", "/api/v1/nothing")],
        "health": [
            api_req("GET", "/healthz", key=None),
            api_req("GET", "/readyz", key=None),
            api_req("GET", "/metrics", key=None)],
        "too_large": [
            b"POST " + room.encode() + b"/objects/x HTTP/1.1\r\nAuthorization: Bearer "
            b"fuzz-write-key-0123456789\r\nContent-Length: 5000\r\n\r\n{"],
    }
    for name, reqs in seeds.items():
        data = b"".join(reqs)
        put("fuzz_api", name, b"\x0f" + data)
        put("fuzz_api", name + "_pieces", b"\x03" + data)
    put("fuzz_api", "write_read_bytewise", b"\x00" + b"".join(seeds["write_read"][:2]))


def ws_frame(op, payload, fin=True, rsv=0, mask=b"\x11\x22\x33\x44"):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def raw_deflate(data):
    import zlib
    z = zlib.compressobj(wbits=-15)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def ws_in_seeds():
    call = b'{"op":"call","id":2,"method":"echo","args":["caf\xc3\xa9"]}'
    session = (ws_frame(1, b'{"op":"connect","id":1,"app":"chat"}') + ws_frame(9, b"ping") +
               ws_frame(1, call[:10], fin=False) + ws_frame(9, b"") + ws_frame(0, call[10:20], fin=False) +
               ws_frame(10, b"pong") + ws_frame(0, call[20:]) + ws_frame(2, b"\x00\x01") +
               ws_frame(8, b"\x03\xe8bye \xc3\xa9"))
    mid = ws_frame(1, b"x" * 200) + ws_frame(1, b"y" * 70000)
    z = raw_deflate(call * 20)
    compressed = (ws_frame(1, z[:5], fin=False, rsv=4) + ws_frame(9, b"zz") + ws_frame(0, z[5:]) +
                  ws_frame(1, raw_deflate(b"")[:1] or b"\x00", rsv=4))
    bad = [ws_frame(1, b"abc", mask=None), ws_frame(9, b"p" * 126), ws_frame(9, b"a", fin=False),
           ws_frame(8, b"\x03"), ws_frame(8, b"\x03\xe7"), ws_frame(8, b"\x03\xe8\xed\xa0\x80"),
           ws_frame(0, b"orphan"), ws_frame(1, b"\xed\xa0\x80"), ws_frame(3, b""),
           ws_frame(1, b"a", rsv=2), bytes([0x81, 0xFE, 0, 5, 1, 2, 3, 4]) + b"hello",
           bytes([0x81, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])]
    put("fuzz_ws_in", "session", b"\x3c\x01\x02\x03\x04" + session)
    put("fuzz_ws_in", "session_budget", b"\x0c\x10\x20\x30\x40" + session)
    put("fuzz_ws_in", "sizes", b"\x3c\x05\x00\x00\x03" + mid)
    put("fuzz_ws_in", "sizes_small_cap", b"\x34\x05\x00\x00\x03" + mid)
    put("fuzz_ws_in", "compressed", b"\x3d\x09\x08\x07\x06" + compressed)
    put("fuzz_ws_in", "compressed_small_cap", b"\x35\x09\x08\x07\x06" + compressed)
    for i, b in enumerate(bad):
        put("fuzz_ws_in", "bad_%02d" % i, b"\x3d\x01\x00\x00\x07" + ws_frame(1, call) + b)

    # built frames: [b0][ctl][len][payload] (ctl 0x40: compress, 0x20: 16-bit length, 0x80: unmasked)
    def d(b0, payload, ctl=0):
        if ctl & 0x20:
            return bytes([b0, ctl]) + struct.pack(">H", len(payload)) + payload
        return bytes([b0, ctl, len(payload)]) + payload
    built = (d(0x01, b'{"op":', 0) + d(0x89, b"hi") + d(0x80, b'"x"}') +
             d(0xC1, call, 0x40) + d(0x41, b"abc" * 30, 0x40) + d(0x80, b"def", 0) +
             d(0x81, b"z" * 300, 0x20) + d(0x88, b"\x03\xe8ok"))
    put("fuzz_ws_in", "built", b"\x3f\x0a\x0b\x0c\x0d" + built)
    put("fuzz_ws_in", "built_tight", b"\x03\x0a\x0b\x0c\x0d" + built)


def ws_json_seeds():
    msgs = [
        b'{"op":"connect","id":1,"app":"chat/room1","user":"alice","token":"1767225600.abc","args":["x",2]}',
        b'{"op":"call","id":2,"method":"chat.sendPrivate","args":["bob","lunch?",{"$amf":"int","value":7}]}',
        b'{"op":"result","id":3,"ok":true,"value":{"id":17,"status":"delivered"}}',
        b'{"op":"so","name":"room","version":12,"persistent":true,"events":[{"t":"use"},'
        b'{"t":"change","slots":[["a",1],[{"$amf":"string","hex":"6100"},{"$amf":"date","ms":5,"tz":60}]]},'
        b'{"t":"remove","key":"b"},{"t":"send","handler":"onMsg","args":[null,[1,[2]],{"k":"v"}]},'
        b'{"t":"release"},{"t":"later"}]}',
        b'{"op":"so","name":"v","events":[{"t":"change","slots":[["n",{"$amf":"number","value":"NaN"}],'
        b'["d",{"$amf":"dict","weak":false,"entries":[[{"$amf":"int","value":2},"v"]]}],'
        b'["x",{"$amf":"xml","text":"<a/>"}],["b",{"$amf":"bytes","hex":"00ff"}],'
        b'["o",{"$amf":"object","class":"c.T","members":{"a":1}}],'
        b'["e",{"$amf":"ecma","count":2,"members":{"a":1},"dense":[true]}],'
        b'["vi",{"$amf":"vector-int","fixed":false,"items":[-1,2]}],["f",0.30000000000000004],'
        b'["u",{"$amf":"undefined"}],["big",1.7976931348623157e308]]}]}',
        b'{"op":"call","id":4,"method":"echo","args":[[[[[[[[[[1]]]]]]]]]]}',
        b'{"op":"so","name":"x","events":[' + b",".join([b'{"t":"use"}'] * 6) + b"]}",
        b'{"op":"call","args":["a\\"b[,{","\\u005b",[],{}]}',
    ]
    for i, m in enumerate(msgs):
        put("fuzz_ws_json", "msg_%02d" % i, b"\x00" + m)
        put("fuzz_ws_json", "msg_%02d_tight" % i, b"\x01" + m)


if __name__ == "__main__":
    sys.exit(main())
