#!/usr/bin/python3
"""test_ws_conformance.py - RFC 6455 / RFC 7692 conformance of sohub's
WebSocket endpoint, case group by case group (the groups of the Autobahn
testsuite, whose cases are written here from the RFCs, not copied):
framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8,
limits, the close handshake and permessage-deflate.

Every case opens its own connection (connected to the app with sohub.v1's
connect), sends its frames and checks the exact reaction: the reply
frames (a text message is an `echo` call, so the answer proves the server
read it exactly), the close code, and that TCP is closed after a close.
After each case two bystanders, an RTMP client (sohub-cli so watch) and a
WebSocket client, both subscribed to one shared object, must still see
each other's writes.

Usage: test_ws_conformance.py [CASE-PREFIX...]  (env SOHUB_SERVER, SOHUB_CLI)
"""

import json
import os
import struct
import sys
import time
import zlib

from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.headers import parse_extension

import wsutil
from wsutil import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WS, Closed,
                    close_payload, deflate, frame_bytes)

MAX_MSG = 131072          # max_message_size of the test server
APP = "conf"
T = wsutil.Checks()
srv = None
txid = [100]


def call_text(arg, pad_to=None):
    """The text of an echo call with argument arg; padded (inside the
    argument string) to exactly pad_to bytes when asked."""
    txid[0] += 1
    if pad_to is not None:
        base = json.dumps({"op": "call", "id": txid[0], "method": "echo", "args": [""]})
        arg = "p" * (pad_to - len(base.encode()))
    text = json.dumps({"op": "call", "id": txid[0], "method": "echo", "args": [arg]},
                      ensure_ascii=False).encode()
    if pad_to is not None:
        assert len(text) == pad_to, (len(text), pad_to)
    return txid[0], text, arg


def expect_result(ws, tid, value, what, timeout=10.0):
    try:
        m = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == tid, timeout)
    except (Closed, TimeoutError) as e:
        return T.check(False, "%s: answered (%s)" % (what, e))
    return T.check(m.get("ok") is True and m.get("value") == value, "%s: answered exactly" % what)


def expect_fail(ws, code, what, timeout=5.0):
    """A close frame with code, then TCP closed by the server."""
    try:
        got, _ = ws.expect_close(timeout)
    except (Closed, TimeoutError) as e:
        got = "no close frame (%s)" % e
    T.eq(got, code, "%s: close code" % what)
    T.check(ws.wait_eof(timeout), "%s: TCP closed after the close frame" % what)


def expect_pong(ws, payload, what, timeout=5.0):
    try:
        f = ws.recv_frame(timeout)
        T.check(f.opcode == OP_PONG and f.data == payload and f.fin,
                "%s: pong with the ping's payload (%d bytes)" % (what, len(payload)))
    except (Closed, TimeoutError) as e:
        T.check(False, "%s: pong (%s)" % (what, e))


def open_ws(deflate_offer=None):
    ws, res = wsutil.connect_app(srv.http_port, APP, extensions=deflate_offer)
    if not (res.get("ok") and res["value"]["code"] == "NetConnection.Connect.Success"):
        raise RuntimeError("connect failed: %r" % res)
    return ws


# ---------------------------------------------------------------- bystanders

class Bystanders:
    def __init__(self):
        self.ws = open_ws()
        self.ws.send_json({"op": "so", "name": "probe", "version": 0, "persistent": False,
                           "events": [{"t": "use"}]})
        self.ws.wait_json(lambda m: m.get("op") == "so" and
                          any(e["t"] == "use_success" for e in m["events"]))
        self.watch = wsutil.CliWatch(srv.rtmp_url(APP), "probe")
        self.watch.wait_event(lambda e: e["event"] == "use", 10)
        self.n = 0

    def check(self, case):
        """The WS bystander writes, the RTMP one must see it; the RTMP
        one writes (sohub-cli so set), the WS one must see it."""
        self.n += 1
        v = "%s #%d" % (case, self.n)
        ok = True
        try:
            self.ws.send_json({"op": "so", "name": "probe", "version": 0, "persistent": False,
                               "events": [{"t": "change", "slots": [["ws", v]]}]})
            self.watch.wait_event(lambda e: e["event"] == "change" and e.get("key") == "ws" and
                                  e.get("value") == v, 10)
            rc, out, err = wsutil.cli(["so", "set", "probe", "rtmp", json.dumps(v), "-u",
                                       srv.rtmp_url(APP)])
            ok = rc == 0
            self.ws.wait_json(lambda m: m.get("op") == "so" and any(
                e["t"] == "change" and ["rtmp", v] in e["slots"] for e in m["events"]), 10)
        except (Closed, TimeoutError, RuntimeError) as e:
            print("# bystander: %s" % e)
            ok = False
        T.check(ok, "%s: the RTMP and WebSocket bystanders still see each other" % case)

    def stop(self):
        self.watch.stop()
        self.ws.close()


# ---------------------------------------------------------------- cases

CASES = []


def case(name, deflate_offer=None):
    def reg(fn):
        CASES.append((name, fn, deflate_offer))
        return fn
    return reg


# ---- 1: framing

for n in (0, 1, 125, 126, 127, 65535, 65536, MAX_MSG - 1):
    def _len(ws, n=n):
        if n < 60:
            # a message too short for an echo call: a text message of
            # n bytes that is not JSON is a malformed sohub.v1 message
            ws.send_frame(OP_TEXT, b" " * n)
            expect_fail(ws, 4400, "text of %d bytes (not JSON)" % n)
            return
        tid, text, arg = call_text(None, pad_to=n)
        ws.send_frame(OP_TEXT, text)
        expect_result(ws, tid, arg, "text message of %d bytes" % n)
    case("framing.text-length-%d" % n)(_len)

for n in (0, 125, 126, 65535, 65536):
    def _frag_len(ws, n=n):
        # an empty/long first fragment, then the call: lengths on the
        # 7-bit, 16-bit and 64-bit boundaries in the middle of a message
        tid, text, arg = call_text("x" * n)
        pre = text[:-(len(arg) + 3)]
        mid = text[len(pre):len(pre) + n]
        post = text[len(pre) + n:]
        ws.send_raw(frame_bytes(OP_TEXT, pre, fin=False) + frame_bytes(OP_CONT, mid, fin=False) +
                    frame_bytes(OP_CONT, post))
        expect_result(ws, tid, arg, "fragment of %d bytes inside a message" % n)
    case("framing.fragment-length-%d" % n)(_frag_len)


@case("framing.unmasked")
def _(ws):
    tid, text, _ = call_text("hello")
    ws.send_frame(OP_TEXT, text, mask=False)
    expect_fail(ws, 1002, "unmasked text frame")


@case("framing.unmasked-ping")
def _(ws):
    ws.send_frame(OP_PING, b"abc", mask=False)
    expect_fail(ws, 1002, "unmasked ping")


@case("framing.long-form-for-short-length")
def _(ws):
    # RFC 6455 5.2: the minimal number of bytes must encode the length
    tid, text, _ = call_text("hi")
    ws.send_frame(OP_TEXT, text, length_form=16)
    expect_fail(ws, 1002, "16-bit length for a 60-byte payload")


@case("framing.64bit-form-for-16bit-length")
def _(ws):
    tid, text, _ = call_text(None, pad_to=300)
    ws.send_frame(OP_TEXT, text, length_form=64)
    expect_fail(ws, 1002, "64-bit length for a 300-byte payload")


@case("framing.length-high-bit")
def _(ws):
    ws.send_raw(bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 63) + b"\0\0\0\0")
    expect_fail(ws, 1002, "64-bit length with the high bit set")


@case("framing.byte-by-byte")
def _(ws):
    tid, text, arg = call_text("sent one byte at a time \u00e9\u20ac\U0001F600")
    data = frame_bytes(OP_TEXT, text[:30], fin=False) + frame_bytes(OP_PING, b"pp") + \
        frame_bytes(OP_CONT, text[30:])
    for i in range(len(data)):
        ws.send_raw(data[i:i + 1])
        time.sleep(0.002)
    expect_pong(ws, b"pp", "ping between byte-by-byte fragments")
    expect_result(ws, tid, arg, "message sent byte by byte")


@case("framing.many-in-one-write")
def _(ws):
    calls = [call_text("batch %d" % i) for i in range(200)]
    ws.send_raw(b"".join(frame_bytes(OP_TEXT, t) for _, t, _ in calls))
    ok = True
    for tid, _, arg in calls:
        m = ws.recv_json(10)
        ok = ok and m.get("id") == tid and m.get("value") == arg
    T.check(ok, "200 messages in one write: 200 answers in order")


# ---- 2: pings and pongs

for n in (0, 1, 125):
    def _ping(ws, n=n):
        payload = bytes((i * 7 + 3) & 0xFF for i in range(n))
        ws.send_frame(OP_PING, payload)
        expect_pong(ws, payload, "ping of %d bytes" % n)
        tid, text, arg = call_text("after ping")
        ws.send_frame(OP_TEXT, text)
        expect_result(ws, tid, arg, "echo after a ping of %d bytes" % n)
    case("ping.payload-%d" % n)(_ping)


@case("ping.payload-126")
def _(ws):
    ws.send_frame(OP_PING, b"x" * 126)
    expect_fail(ws, 1002, "ping of 126 bytes")


@case("ping.fragmented")
def _(ws):
    ws.send_raw(frame_bytes(OP_PING, b"ab", fin=False) + frame_bytes(OP_CONT, b"cd"))
    expect_fail(ws, 1002, "fragmented ping")


@case("ping.ten")
def _(ws):
    ws.send_raw(b"".join(frame_bytes(OP_PING, b"p%d" % i) for i in range(10)))
    for i in range(10):
        expect_pong(ws, b"p%d" % i, "ping %d of 10" % i)


@case("ping.burst")
def _(ws):
    # 100 pings of 125 bytes in one write: 12.5 KB of pongs from one read
    pings = [bytes([i]) * 125 for i in range(100)]
    ws.send_raw(b"".join(frame_bytes(OP_PING, p) for p in pings))
    ok = True
    for p in pings:
        f = ws.recv_frame(5)
        ok = ok and f.opcode == OP_PONG and f.data == p
    T.check(ok, "100 pings of 125 bytes in one write: 100 pongs in order")
    tid, text, arg = call_text("after the burst")
    ws.send_frame(OP_TEXT, text)
    expect_result(ws, tid, arg, "echo after a burst of pings")


@case("ping.unsolicited-pong")
def _(ws):
    ws.send_frame(OP_PONG, b"unasked")
    ws.send_frame(OP_PONG, b"")
    tid, text, arg = call_text("after pongs")
    ws.send_frame(OP_TEXT, text)
    f = ws.recv_frame(5)
    T.check(f.opcode == OP_TEXT, "unsolicited pongs get no answer")
    m = json.loads(f.data)
    T.check(m.get("id") == tid and m.get("value") == arg, "echo after unsolicited pongs")


@case("ping.binary-payload")
def _(ws):
    payload = bytes(range(256))[128:128 + 100] + b"\xff\xfe\x00"
    ws.send_frame(OP_PING, payload)
    expect_pong(ws, payload, "ping with non-UTF-8 bytes")


# ---- 3: reserved bits

for rsv in range(1, 8):
    def _rsv(ws, rsv=rsv):
        tid, text, arg = call_text("before")
        bad_tid, bad, _ = call_text("rsv")
        # a good message, the bad frame, then a ping: the answer to the
        # first comes, the ping is never answered
        ws.send_raw(frame_bytes(OP_TEXT, text) + frame_bytes(OP_TEXT, bad, rsv=rsv) +
                    frame_bytes(OP_PING, b"late"))
        expect_result(ws, tid, arg, "message before an RSV=%d frame" % rsv)
        expect_fail(ws, 1002, "text frame with RSV=%d, no extension" % rsv)
    case("rsv.text-%d" % rsv)(_rsv)


@case("rsv.ping")
def _(ws):
    ws.send_frame(OP_PING, b"x", rsv=2)
    expect_fail(ws, 1002, "ping with RSV2")


@case("rsv.close")
def _(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000), rsv=1)
    expect_fail(ws, 1002, "close with RSV3")


@case("rsv.binary")
def _(ws):
    ws.send_frame(OP_BINARY, b"\x00\x01", rsv=4)
    expect_fail(ws, 1002, "binary with RSV1, no extension")


# ---- 4: opcodes

for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
    def _op(ws, op=op):
        tid, text, arg = call_text("before")
        ws.send_raw(frame_bytes(OP_TEXT, text) + frame_bytes(op, b"data") +
                    frame_bytes(OP_PING, b"late"))
        expect_result(ws, tid, arg, "message before opcode %d" % op)
        expect_fail(ws, 1002, "reserved opcode %d" % op)
    case("opcode.reserved-%d" % op)(_op)


@case("opcode.reserved-in-fragments")
def _(ws):
    ws.send_raw(frame_bytes(OP_TEXT, b'{"op":', fin=False) + frame_bytes(5, b"x"))
    expect_fail(ws, 1002, "reserved opcode between fragments")


@case("opcode.binary")
def _(ws):
    ws.send_frame(OP_BINARY, b"\x01\x02")
    expect_fail(ws, 1003, "binary message (not part of sohub.v1)")


# ---- 5: fragmentation

@case("frag.two")
def _(ws):
    tid, text, arg = call_text("two fragments")
    ws.send_raw(frame_bytes(OP_TEXT, text[:10], fin=False) + frame_bytes(OP_CONT, text[10:]))
    expect_result(ws, tid, arg, "text in 2 fragments")


@case("frag.one-byte-each")
def _(ws):
    tid, text, arg = call_text("one byte per fragment")
    data = frame_bytes(OP_TEXT, text[:1], fin=False)
    for i in range(1, len(text) - 1):
        data += frame_bytes(OP_CONT, text[i:i + 1], fin=False)
    data += frame_bytes(OP_CONT, text[-1:])
    ws.send_raw(data)
    expect_result(ws, tid, arg, "text in %d one-byte fragments" % len(text))


@case("frag.thousand")
def _(ws):
    tid, text, arg = call_text("f" * 5000)
    step = (len(text) + 999) // 1000
    parts = [text[i:i + step] for i in range(0, len(text), step)]
    data = frame_bytes(OP_TEXT, parts[0], fin=False)
    for p in parts[1:-1]:
        data += frame_bytes(OP_CONT, p, fin=False)
    data += frame_bytes(OP_CONT, parts[-1])
    ws.send_raw(data)
    expect_result(ws, tid, arg, "text in %d fragments" % len(parts))


@case("frag.empty-fragments")
def _(ws):
    tid, text, arg = call_text("empty fragments")
    ws.send_raw(frame_bytes(OP_TEXT, b"", fin=False) + frame_bytes(OP_CONT, text, fin=False) +
                frame_bytes(OP_CONT, b"", fin=False) + frame_bytes(OP_CONT, b""))
    expect_result(ws, tid, arg, "empty first, middle and last fragments")


@case("frag.pings-between")
def _(ws):
    tid, text, arg = call_text("pings between fragments")
    ws.send_raw(frame_bytes(OP_TEXT, text[:5], fin=False) + frame_bytes(OP_PING, b"one") +
                frame_bytes(OP_CONT, text[5:20], fin=False) + frame_bytes(OP_PING, b"two") +
                frame_bytes(OP_PONG, b"unasked") + frame_bytes(OP_CONT, text[20:]))
    expect_pong(ws, b"one", "first ping between fragments")
    expect_pong(ws, b"two", "second ping between fragments")
    expect_result(ws, tid, arg, "message around control frames")


@case("frag.pings-between-slow")
def _(ws):
    tid, text, arg = call_text("slow fragments")
    ws.send_frame(OP_TEXT, text[:5], fin=False)
    time.sleep(0.05)
    ws.send_frame(OP_PING, b"mid")
    expect_pong(ws, b"mid", "ping answered while a message is unfinished")
    time.sleep(0.05)
    ws.send_frame(OP_CONT, text[5:])
    expect_result(ws, tid, arg, "message finished after the ping")


@case("frag.close-between")
def _(ws):
    ws.send_raw(frame_bytes(OP_TEXT, b'{"op":"call"', fin=False) +
                frame_bytes(OP_CLOSE, close_payload(1000)))
    code, _ = ws.expect_close(5)
    T.eq(code, 1000, "close between fragments: echoed")
    T.check(ws.wait_eof(5), "close between fragments: TCP closed")


@case("frag.continuation-first")
def _(ws):
    ws.send_frame(OP_CONT, b"orphan", fin=False)
    expect_fail(ws, 1002, "continuation (not final) without a start")


@case("frag.continuation-final-first")
def _(ws):
    ws.send_frame(OP_CONT, b"orphan")
    expect_fail(ws, 1002, "final continuation without a start")


@case("frag.continuation-after-message")
def _(ws):
    tid, text, arg = call_text("whole")
    ws.send_raw(frame_bytes(OP_TEXT, text) + frame_bytes(OP_CONT, b"more"))
    expect_result(ws, tid, arg, "whole message before a stray continuation")
    expect_fail(ws, 1002, "continuation after a finished message")


@case("frag.new-message-inside")
def _(ws):
    tid, text, _ = call_text("x")
    ws.send_raw(frame_bytes(OP_TEXT, text[:5], fin=False) + frame_bytes(OP_TEXT, text))
    expect_fail(ws, 1002, "a text frame before the previous message finished")


@case("frag.binary-inside-text")
def _(ws):
    ws.send_raw(frame_bytes(OP_TEXT, b"{", fin=False) + frame_bytes(OP_BINARY, b"x"))
    expect_fail(ws, 1002, "a binary frame inside a text message")


@case("frag.binary-fragmented")
def _(ws):
    ws.send_raw(frame_bytes(OP_BINARY, b"ab", fin=False) + frame_bytes(OP_CONT, b"cd"))
    expect_fail(ws, 1003, "fragmented binary message")


# ---- 6: UTF-8

VALID = ["\u00e9t\u00e9", "\u20ac", "\U0001F600 \U0010FFFF", "\uFFFF\uFEFF\u0800\u07FF",
         "\ud7ff\ue000", "ascii only", "\u03ba\u1f79\u03c3\u03bc\u03b5"]
for i, s in enumerate(VALID):
    def _valid(ws, s=s):
        tid, text, arg = call_text(s)
        ws.send_frame(OP_TEXT, text)
        expect_result(ws, tid, arg, "valid UTF-8 %r" % s)
    case("utf8.valid-%d" % i)(_valid)


@case("utf8.valid-split-everywhere")
def _(ws):
    tid, text, arg = call_text("\u00e9\u20ac\U0001F600\u00e9\u20ac\U0001F600")
    start = text.index(b"\xc3")
    ok = True
    for cut in range(start, start + 14):
        tid, text, arg = call_text("\u00e9\u20ac\U0001F600\u00e9\u20ac\U0001F600")
        ws.send_raw(frame_bytes(OP_TEXT, text[:cut], fin=False) + frame_bytes(OP_CONT, text[cut:]))
        m = ws.recv_json(5)
        ok = ok and m.get("id") == tid and m.get("value") == arg
    T.check(ok, "valid UTF-8 split inside every code point: all answered")


INVALID = {
    "lone-continuation": b"\x80",
    "overlong-2": b"\xc0\x80",
    "overlong-3": b"\xe0\x80\x80",
    "overlong-4": b"\xf0\x80\x80\x80",
    "surrogate": b"\xed\xa0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "ff": b"\xff",
    "truncated-end": b"\xe2\x82",
    "bad-second": b"\xe2\x28\xa1",
}
for name, bad in INVALID.items():
    def _inv(ws, bad=bad):
        ws.send_frame(OP_TEXT, b'{"op":"call","id":5,"method":"echo","args":["' + bad + b'"]}')
        expect_fail(ws, 1007, "invalid UTF-8 %s" % bad.hex())
    case("utf8.invalid-" + name)(_inv)


@case("utf8.invalid-across-fragments")
def _(ws):
    # each fragment is a valid prefix; together they are invalid
    ws.send_raw(frame_bytes(OP_TEXT, b'["\xf0\x90', fin=False) +
                frame_bytes(OP_CONT, b'\x80"]'))
    expect_fail(ws, 1007, "code point cut short across fragments")


@case("utf8.pong-before-failure")
def _(ws):
    # a ping before the failing message is answered before the close
    ws.send_raw(frame_bytes(OP_PING, b"first") + frame_bytes(OP_TEXT, b'["\xed\xa0\x80"]'))
    expect_pong(ws, b"first", "ping before an invalid message")
    expect_fail(ws, 1007, "invalid UTF-8 after a ping")


@case("utf8.fail-fast")
def _(ws):
    # the first fragment is already invalid: the server fails before the end
    ws.send_frame(OP_TEXT, b'["\xed\xa0\x80', fin=False)
    expect_fail(ws, 1007, "invalid first fragment, message unfinished")


@case("utf8.truncated-final-fragment")
def _(ws):
    ws.send_raw(frame_bytes(OP_TEXT, b'["ok', fin=False) + frame_bytes(OP_CONT, b'\xe2\x82'))
    expect_fail(ws, 1007, "message ending inside a code point")


# ---- 9: limits

@case("limit.exactly-max")
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG)
    ws.send_frame(OP_TEXT, text)
    expect_result(ws, tid, arg, "text of max_message_size bytes")


@case("limit.max-plus-one")
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG + 1)
    ws.send_frame(OP_TEXT, text)
    expect_fail(ws, 1009, "text of max_message_size + 1 bytes")


@case("limit.max-plus-one-fragmented")
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG + 1)
    parts = [text[i:i + 4096] for i in range(0, len(text), 4096)]
    data = frame_bytes(OP_TEXT, parts[0], fin=False)
    for p in parts[1:-1]:
        data += frame_bytes(OP_CONT, p, fin=False)
    data += frame_bytes(OP_CONT, parts[-1])
    ws.send_raw(data)
    expect_fail(ws, 1009, "fragments adding up to max_message_size + 1")


@case("limit.max-fragmented")
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG)
    parts = [text[i:i + 1000] for i in range(0, len(text), 1000)]
    data = frame_bytes(OP_TEXT, parts[0], fin=False)
    for p in parts[1:-1]:
        data += frame_bytes(OP_CONT, p, fin=False)
    data += frame_bytes(OP_CONT, parts[-1])
    ws.send_raw(data)
    expect_result(ws, tid, arg, "fragments adding up to max_message_size")


@case("limit.huge-header")
def _(ws):
    # a header claiming 4 GiB: refused before any payload is awaited
    ws.send_raw(bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 32) + b"\1\2\3\4")
    expect_fail(ws, 1009, "frame header claiming 4 GiB")


# ---- 7: close handshake

@case("close.normal")
def _(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000))
    code, reason = ws.expect_close(5)
    T.eq(code, 1000, "close 1000 echoed")
    T.check(ws.wait_eof(5), "TCP closed after the close reply")


@case("close.empty")
def _(ws):
    ws.send_frame(OP_CLOSE, b"")
    code, reason = ws.expect_close(5)
    T.check(code is None and reason == b"", "close without a code: answered without a code")
    T.check(ws.wait_eof(5), "TCP closed after the close reply")


@case("close.one-byte")
def _(ws):
    ws.send_frame(OP_CLOSE, b"\x03")
    expect_fail(ws, 1002, "close with a 1-byte payload")


@case("close.reason")
def _(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000, "bye \u00e9\u20ac"))
    code, reason = ws.expect_close(5)
    T.check(code == 1000 and reason == "bye \u00e9\u20ac".encode(), "close reason echoed")
    T.check(ws.wait_eof(5), "TCP closed")


@case("close.reason-123")
def _(ws):
    r = ("r" * 121 + "\u00e9").encode()
    ws.send_frame(OP_CLOSE, close_payload(1000, r))
    code, reason = ws.expect_close(5)
    T.check(code == 1000 and reason == r, "close with a 123-byte reason echoed")
    T.check(ws.wait_eof(5), "TCP closed")


@case("close.reason-124")
def _(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000, "r" * 124))
    expect_fail(ws, 1002, "close with a 124-byte reason (frame over 125)")


@case("close.reason-invalid-utf8")
def _(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000, b"bad \xed\xa0\x80"))
    expect_fail(ws, 1007, "close reason with invalid UTF-8")


@case("close.reason-split-valid")
def _(ws):
    # the reason arrives in pieces (separate TCP writes), cut inside code points
    frame = frame_bytes(OP_CLOSE, close_payload(1000, "\u00e9\u20ac\U0001F600x\u00e9"))
    pieces = [frame[:8], frame[8:9], frame[9:13], frame[13:]]
    for p in pieces:
        ws.send_raw(p)
        time.sleep(0.05)
    code, reason = ws.expect_close(5)
    T.check(code == 1000 and reason == "\u00e9\u20ac\U0001F600x\u00e9".encode(),
            "valid close reason sent in pieces: echoed")
    T.check(ws.wait_eof(5), "TCP closed")


@case("close.reason-byte-by-byte")
def _(ws):
    reason = "\u00e9\u20ac\U0001F600 ok"
    frame = frame_bytes(OP_CLOSE, close_payload(1001, reason))
    for i in range(len(frame)):
        ws.send_raw(frame[i:i + 1])
        time.sleep(0.01)
    code, got = ws.expect_close(5)
    T.check(code == 1001 and got == reason.encode(), "close reason sent byte by byte: echoed")
    T.check(ws.wait_eof(5), "TCP closed")


@case("close.reason-invalid-byte-by-byte")
def _(ws):
    frame = frame_bytes(OP_CLOSE, close_payload(1000, b"ab\xed\xa0\x80cd"))
    for i in range(len(frame)):
        ws.send_raw(frame[i:i + 1])
        time.sleep(0.01)
    expect_fail(ws, 1007, "invalid close reason sent byte by byte")


@case("close.reason-split-invalid")
def _(ws):
    frame = frame_bytes(OP_CLOSE, close_payload(1000, b"ab\xed\xa0\x80cd"))
    for p in (frame[:7], frame[7:10], frame[10:]):
        ws.send_raw(p)
        time.sleep(0.05)
    expect_fail(ws, 1007, "invalid close reason sent in pieces")


for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
    def _valid_code(ws, code=code):
        ws.send_frame(OP_CLOSE, close_payload(code))
        got, _ = ws.expect_close(5)
        T.eq(got, code, "close %d echoed" % code)
        T.check(ws.wait_eof(5), "close %d: TCP closed" % code)
    case("close.code-%d" % code)(_valid_code)

for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    def _bad_code(ws, code=code):
        ws.send_frame(OP_CLOSE, close_payload(code))
        expect_fail(ws, 1002, "close with invalid code %d" % code)
    case("close.bad-code-%d" % code)(_bad_code)


@case("close.then-data")
def _(ws):
    tid, text, _ = call_text("after close")
    ws.send_raw(frame_bytes(OP_CLOSE, close_payload(1000)) + frame_bytes(OP_TEXT, text) +
                frame_bytes(OP_PING, b"late"))
    f = ws.recv_frame(5)
    T.check(f.opcode == OP_CLOSE, "frames after the client's close are not answered")
    T.check(ws.wait_eof(5), "TCP closed")


@case("close.server-first")
def _(ws):
    # the server closes (a malformed message: 4400); the client answers
    ws.send_frame(OP_TEXT, b"[1,2]")
    code, _ = ws.expect_close(5)
    T.eq(code, 4400, "server's close for a non-object message")
    ws.send_frame(OP_CLOSE, close_payload(4400))
    T.check(ws.wait_eof(5), "TCP closed after the close handshake")


@case("close.tcp-only")
def _(ws):
    # half a frame, then the client drops TCP: nothing to check but the bystanders
    ws.send_raw(frame_bytes(OP_TEXT, b'{"op":"call"', fin=False)[:5])
    ws.close()
    T.check(True, "client dropped TCP inside a frame")


# ---- 12/13: permessage-deflate

PMD = "permessage-deflate; client_max_window_bits"


def negotiate(offer):
    ws = WS(srv.http_port, extensions=offer)
    ext = ws.headers.get("sec-websocket-extensions")
    ws.close()
    return ws.status, ext


NEGOTIATION = [
    ("permessage-deflate", True),
    ("permessage-deflate; client_max_window_bits", True),
    ("permessage-deflate; client_max_window_bits=10", True),
    ("permessage-deflate; server_max_window_bits=15", True),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", True),
    ("permessage-deflate; server_max_window_bits=10", False),
    ("permessage-deflate; server_max_window_bits=10, permessage-deflate", True),
    ("permessage-deflate; x-unknown=1", False),
    ("x-webkit-deflate-frame", False),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", False),
    ("permessage-deflate; client_max_window_bits=16", False),
    ("permessage-deflate; client_max_window_bits=7", False),
    ("permessage-deflate; server_max_window_bits", False),
    ("permessage-deflate; server_no_context_takeover=1", False),
    ("permessage-deflatex", False),
]


def negotiation_cases():
    for offer, agreed in NEGOTIATION:
        status, ext = negotiate(offer)
        T.eq(status, 101, "offer %r: upgraded" % offer)
        if not agreed:
            T.eq(ext, None, "offer %r: declined" % offer)
            continue
        ok = ext is not None
        if ok:
            # the answer must be acceptable to an independent client
            # implementation that made this offer
            try:
                parsed = parse_extension(ext)
                name, params = parsed[0]
                fac = ClientPerMessageDeflateFactory(
                    client_max_window_bits=True,
                    server_max_window_bits=15 if "server_max_window_bits=15" in offer else None)
                fac.process_response_params(params, [])
                ok = name == "permessage-deflate" and \
                    ("server_no_context_takeover", None) in params and \
                    ("client_no_context_takeover", None) in params
            except Exception as e:
                print("# %s" % e)
                ok = False
        T.check(ok, "offer %r: agreed, without context takeover (%r)" % (offer, ext))


@case("deflate.echo", PMD)
def _(ws):
    T.check(ws.deflate, "deflate agreed")
    tid, text, arg = call_text("compressed call")
    ws.send_frame(OP_TEXT, deflate(text), rsv=4)
    expect_result(ws, tid, arg, "compressed message")


@case("deflate.large-reply-compressed", PMD)
def _(ws):
    tid, text, arg = call_text("z" * 5000)
    ws.send_frame(OP_TEXT, deflate(text), rsv=4)
    f = ws.recv_frame(5, raw=True)
    T.check(f.rsv1 and len(f.data) < 1000, "a 5 KB answer comes compressed (%d bytes)" % len(f.data))
    d = zlib.decompressobj(wbits=-15)
    m = json.loads(d.decompress(f.data + b"\x00\x00\xff\xff"))
    T.check(m.get("id") == tid and m.get("value") == arg, "compressed answer inflates exactly")


@case("deflate.uncompressed-allowed", PMD)
def _(ws):
    tid, text, arg = call_text("plain on a deflate connection")
    ws.send_frame(OP_TEXT, text)
    expect_result(ws, tid, arg, "uncompressed message with deflate agreed")


@case("deflate.fragments", PMD)
def _(ws):
    tid, text, arg = call_text("y" * 3000 + "\u00e9\u20ac")
    z = deflate(text)
    parts = [z[i:i + 7] for i in range(0, len(z), 7)]
    data = frame_bytes(OP_TEXT, parts[0], fin=False, rsv=4)
    for p in parts[1:-1]:
        data += frame_bytes(OP_CONT, p, fin=False)
    data += frame_bytes(OP_CONT, parts[-1])
    ws.send_raw(data)
    expect_result(ws, tid, arg, "compressed message in %d fragments" % len(parts))


@case("deflate.fragments-with-ping", PMD)
def _(ws):
    tid, text, arg = call_text("fragments and a ping")
    z = deflate(text)
    ws.send_raw(frame_bytes(OP_TEXT, z[:4], fin=False, rsv=4) + frame_bytes(OP_PING, b"zz") +
                frame_bytes(OP_CONT, z[4:]))
    expect_pong(ws, b"zz", "ping inside a compressed message")
    expect_result(ws, tid, arg, "compressed message around a ping")


@case("deflate.rsv1-on-continuation", PMD)
def _(ws):
    z = deflate(call_text("x")[1])
    ws.send_raw(frame_bytes(OP_TEXT, z[:4], fin=False, rsv=4) +
                frame_bytes(OP_CONT, z[4:], rsv=4))
    expect_fail(ws, 1002, "RSV1 on a continuation frame")


@case("deflate.rsv1-on-ping", PMD)
def _(ws):
    ws.send_frame(OP_PING, b"x", rsv=4)
    expect_fail(ws, 1002, "RSV1 on a ping")


@case("deflate.rsv2", PMD)
def _(ws):
    ws.send_frame(OP_TEXT, deflate(call_text("x")[1]), rsv=6)
    expect_fail(ws, 1002, "RSV2 with deflate agreed")


@case("deflate.not-agreed")
def _(ws):
    T.check(not ws.deflate, "no deflate offered: none agreed")
    ws.send_frame(OP_TEXT, deflate(call_text("x")[1]), rsv=4)
    expect_fail(ws, 1002, "compressed message without the extension")


@case("deflate.bomb", PMD)
def _(ws):
    text = b'{"op":"call","id":1,"method":"echo","args":["' + b"a" * (4 * MAX_MSG) + b'"]}'
    z = deflate(text)
    T.check(len(z) < MAX_MSG // 8, "the bomb is small compressed (%d bytes)" % len(z))
    ws.send_frame(OP_TEXT, z, rsv=4)
    expect_fail(ws, 1009, "compressed message inflating past max_message_size")


@case("deflate.bomb-after-ping", PMD)
def _(ws):
    z = deflate(b'["' + b"a" * (4 * MAX_MSG) + b'"]')
    ws.send_raw(frame_bytes(OP_TEXT, z[:8], fin=False, rsv=4) + frame_bytes(OP_PING, b"mid") +
                frame_bytes(OP_CONT, z[8:]))
    expect_pong(ws, b"mid", "ping inside a compressed message that inflates too far")
    expect_fail(ws, 1009, "the message inflates past max_message_size")


@case("deflate.inflates-to-exactly-max", PMD)
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG)
    ws.send_frame(OP_TEXT, deflate(text), rsv=4)
    expect_result(ws, tid, arg, "compressed message inflating to exactly max_message_size")


@case("deflate.inflates-to-max-plus-one", PMD)
def _(ws):
    tid, text, arg = call_text(None, pad_to=MAX_MSG + 1)
    ws.send_frame(OP_TEXT, deflate(text), rsv=4)
    expect_fail(ws, 1009, "compressed message inflating to max_message_size + 1")


@case("deflate.bad-block-type", PMD)
def _(ws):
    ws.send_frame(OP_TEXT, b"\x07\x00\x01\x02", rsv=4)
    expect_fail(ws, 1007, "DEFLATE data with a reserved block type")


@case("deflate.garbage", PMD)
def _(ws):
    ws.send_frame(OP_TEXT, b"\xff" * 40, rsv=4)
    expect_fail(ws, 1007, "bytes that are not DEFLATE data")


@case("deflate.trailing-after-final", PMD)
def _(ws):
    c = zlib.compressobj(wbits=-15)
    z = c.compress(call_text("x")[1]) + c.flush(zlib.Z_FINISH)
    ws.send_frame(OP_TEXT, z + b"junk", rsv=4)
    expect_fail(ws, 1007, "bytes after the final DEFLATE block")


@case("deflate.final-block", PMD)
def _(ws):
    # a stream closed with BFINAL (RFC 7692 7.2.3.3 allows it): read as is
    c = zlib.compressobj(wbits=-15)
    tid, text, arg = call_text("bfinal")
    z = c.compress(text) + c.flush(zlib.Z_FINISH)
    ws.send_frame(OP_TEXT, z, rsv=4)
    expect_result(ws, tid, arg, "compressed message ending with a final block")


@case("deflate.invalid-utf8-inside", PMD)
def _(ws):
    ws.send_frame(OP_TEXT, deflate(b'["\xed\xa0\x80"]'), rsv=4)
    expect_fail(ws, 1007, "compressed text inflating to invalid UTF-8")


@case("deflate.stored-blocks", PMD)
def _(ws):
    # uncompressed (stored) DEFLATE blocks split over fragments
    tid, text, arg = call_text("stored")
    c = zlib.compressobj(level=0, wbits=-15)
    z = (c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    ws.send_raw(frame_bytes(OP_TEXT, z[:3], fin=False, rsv=4) + frame_bytes(OP_CONT, z[3:]))
    expect_result(ws, tid, arg, "stored DEFLATE blocks")


@case("deflate.many-messages", PMD)
def _(ws):
    calls = [call_text("msg %d " % i * 20) for i in range(50)]
    ws.send_raw(b"".join(frame_bytes(OP_TEXT, deflate(t), rsv=4) for _, t, _ in calls))
    ok = True
    for tid, _, arg in calls:
        m = ws.recv_json(10)
        ok = ok and m.get("id") == tid and m.get("value") == arg
    T.check(ok, "50 compressed messages, each on its own: 50 answers")


# ---------------------------------------------------------------- main

CONFIG = """
[server]
max_message_size = %d
ping_interval_ms = 600000
idle_timeout_ms = 1200000
[app conf]
store = memory
""" % MAX_MSG


def preconnect_cases():
    """Before its connect is accepted a client's messages are held to
    preconnect_max_message_size (16 KiB by default), as RTMP's are; after
    it, to max_message_size."""
    ws = wsutil.WS(srv.http_port)
    big = json.dumps({"op": "connect", "id": 1, "app": APP, "args": ["x" * 20000]})
    ws.send_frame(OP_TEXT, big.encode())
    try:
        code, _ = ws.expect_close()
    except (Closed, TimeoutError) as e:
        code = str(e)
    T.eq(code, 1009, "preconnect: a 20 KB connect closes with 1009")
    ws.close()
    ws = open_ws()
    tid, text, arg = call_text(None, pad_to=60000)
    ws.send_frame(OP_TEXT, text)
    expect_result(ws, tid, arg, "preconnect: after connect a 60 KB message is taken")
    ws.close()


def main():
    global srv
    only = sys.argv[1:]
    srv = wsutil.Server(CONFIG)
    rc = 1
    try:
        by = Bystanders()
        if not only or any("deflate.negotiation".startswith(p) or p.startswith("deflate.neg")
                           for p in only):
            negotiation_cases()
        if not only or any("preconnect".startswith(p) for p in only):
            preconnect_cases()
        for name, fn, offer in CASES:
            if only and not any(name.startswith(p) for p in only):
                continue
            print("# case %s" % name, flush=True)
            try:
                ws = open_ws(offer)
            except Exception as e:
                T.check(False, "%s: connect (%s)" % (name, e))
                continue
            try:
                fn(ws)
            except (Closed, TimeoutError, RuntimeError, ValueError) as e:
                T.check(False, "%s: %s: %s" % (name, type(e).__name__, e))
            finally:
                ws.close()
            by.check(name)
        by.stop()
    finally:
        T.eq(srv.stop(), 0, "server stopped cleanly")
    return T.done()


if __name__ == "__main__":
    sys.exit(main())
