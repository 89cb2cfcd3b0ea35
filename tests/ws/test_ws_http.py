#!/usr/bin/python3
"""test_ws_http.py - the HTTP side of the WebSocket endpoint: the opening
handshake's checks (426 and 400 answers, subprotocol and version, the
accept key) and the static files of web_root (MIME types, ETag and
If-Modified-Since answered with 304, HEAD, methods, no way out of the
root by dot segments, percent-encoding or symbolic links).

Usage: test_ws_http.py  (env SOHUB_SERVER)
"""

import os
import shutil
import socket
import sys
import tempfile
import time

import wsutil
from wsutil import WS

T = wsutil.Checks()
srv = None


def http(raw, timeout=5.0):
    """Sends raw request bytes; returns (status, headers, body) of the first
    response, and whether the server then closed the connection."""
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=timeout)
    s.sendall(raw)
    data = b""
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            n = 0
            for ln in head.split("\r\n")[1:]:
                if ln.lower().startswith("content-length:"):
                    n = int(ln.split(":", 1)[1])
            if len(data) >= len(head) + 4 + n and b"HEAD " not in raw[:5]:
                break
            if raw.startswith(b"HEAD "):
                break
    s.close()
    if b"\r\n\r\n" not in data:
        return None, {}, b"", closed
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body, closed


def get(path, headers=(), method="GET", version="1.1"):
    req = "%s %s HTTP/%s\r\nHost: 127.0.0.1\r\n" % (method, path, version)
    for h in headers:
        req += h + "\r\n"
    req += "Connection: close\r\n\r\n"
    return http(req.encode())


# ---------------------------------------------------------------- handshake

def upgrade_request(path="/ws", drop=(), extra=(), version="1.1", method="GET"):
    hdrs = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "sohub.v1"}
    for d in drop:
        hdrs.pop(d, None)
    for k, v in extra:
        hdrs[k] = v
    req = "%s %s HTTP/%s\r\n" % (method, path, version)
    req += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    return req.encode()


def handshake_section():
    st, h, body, closed = http(upgrade_request())
    T.eq(st, 101, "a good upgrade: 101")
    # RFC 6455 4.2.2 example key
    T.eq(h.get("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept key of the RFC example")
    T.eq(h.get("sec-websocket-protocol"), "sohub.v1", "subprotocol sohub.v1 chosen")
    T.check("websocket" in h.get("upgrade", "").lower() and
            "upgrade" in h.get("connection", "").lower(), "Upgrade and Connection headers")

    cases = [
        (426, "plain GET of the endpoint", upgrade_request(drop=("Upgrade", "Connection"))),
        (426, "Upgrade: h2c", upgrade_request(extra=(("Upgrade", "h2c"),))),
        (426, "Connection without upgrade", upgrade_request(extra=(("Connection", "keep-alive"),))),
        (426, "POST with upgrade headers", upgrade_request(method="POST")),
        (426, "version 8", upgrade_request(extra=(("Sec-WebSocket-Version", "8"),))),
        (426, "no version", upgrade_request(drop=("Sec-WebSocket-Version",))),
        (400, "no key", upgrade_request(drop=("Sec-WebSocket-Key",))),
        (400, "key of 15 bytes", upgrade_request(extra=(("Sec-WebSocket-Key",
                                                           "dGhlIHNhbXBsZSBub25jZQ="),))),
        (400, "key not base64", upgrade_request(extra=(("Sec-WebSocket-Key",
                                                          "dGhlIHNhbXBsZSBub25j!Q=="),))),
        (400, "no subprotocol", upgrade_request(drop=("Sec-WebSocket-Protocol",))),
        (400, "another subprotocol", upgrade_request(extra=(("Sec-WebSocket-Protocol",
                                                              "chat, sohub.v2"),))),
        (400, "HTTP/1.0", upgrade_request(version="1.0")),
    ]
    for want, what, raw in cases:
        st, h, body, closed = http(raw)
        T.eq(st, want, "%s: %d" % (what, want))
        if want == 426 and "version" in what:
            T.eq(h.get("sec-websocket-version"), "13", "%s: says which version" % what)
        elif want == 426:
            T.check("websocket" in h.get("upgrade", "").lower(), "%s: says Upgrade: websocket" % what)
    # list and case variants that must be accepted
    for what, extra in (("tokens in lists, any case", (("Upgrade", "WebSocket"),
                                                        ("Connection", "keep-alive, Upgrade"))),
                        ("sohub.v1 among other subprotocols",
                         (("Sec-WebSocket-Protocol", "chat, sohub.v1, x"),))):
        st, h, body, closed = http(upgrade_request(extra=extra))
        T.eq(st, 101, "%s: 101" % what)
        T.eq(h.get("sec-websocket-protocol"), "sohub.v1", "%s: sohub.v1" % what)
    # only ws_path and its subpaths are the endpoint
    st, _, _, _ = http(upgrade_request(path="/wsx"))
    T.check(st in (404, 400), "/wsx is not the endpoint (%s)" % st)
    st, _, _, _ = http(upgrade_request(path="/ws/conf/room"))
    T.eq(st, 101, "/ws/APP/INSTANCE is the endpoint")
    # bytes after the 101 in the same packet are WebSocket frames
    raw = upgrade_request() + wsutil.frame_bytes(1, b'{"op":"connect","id":1,"app":"conf"}')
    ws = WS(srv.http_port, upgrade=False)
    ws.key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws.send_raw(raw)
    ws.read_response()
    T.eq(ws.status, 101, "upgrade and first frame in one write: 101")
    m = ws.recv_json(5)
    T.check(m.get("op") == "result" and m.get("ok"), "the frame after the request is read")
    ws.close()
    # the handshake must complete in time
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    s.settimeout(10)
    try:
        data = s.recv(4096)
        while data:
            data = s.recv(4096)
        closed = True
    except socket.timeout:
        closed = False
    T.check(closed and time.monotonic() - t0 < 5, "an unfinished request is dropped after "
            "http_request_timeout_ms")
    s.close()


# ---------------------------------------------------------------- static files

def make_root():
    base = tempfile.mkdtemp(prefix="sohub-web-")
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "sub", "deeper"))
    files = {
        "index.html": b"<!doctype html><title>home</title>",
        "app.js": b"console.log(1)",
        "style.css": b"body{}",
        "data.json": b'{"a":1}',
        "pic.png": b"\x89PNG\r\n\x1a\n",
        "vector.svg": b"<svg/>",
        "noext": b"raw bytes",
        "sub/index.html": b"sub index",
        "sub/deeper/file.txt": b"deep file",
        "big.bin": b"b" * 5000,
        "with space.txt": b"spaced",
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(base, "secret.txt"), "wb") as f:
        f.write(b"TOP SECRET")
    os.makedirs(os.path.join(base, "outside"))
    with open(os.path.join(base, "outside", "x.txt"), "wb") as f:
        f.write(b"OUTSIDE")
    os.symlink(os.path.join(base, "secret.txt"), os.path.join(root, "link-out.txt"))
    os.symlink(os.path.join(base, "outside"), os.path.join(root, "dir-out"))
    os.symlink("app.js", os.path.join(root, "link-in.js"))
    os.symlink("/etc/passwd", os.path.join(root, "passwd"))
    return base, root, files


def static_section(base, root, files):
    types = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
             "style.css": "text/css; charset=utf-8", "data.json": "application/json",
             "pic.png": "image/png", "vector.svg": "image/svg+xml",
             "noext": "application/octet-stream", "sub/deeper/file.txt": "text/plain; charset=utf-8"}
    for name, ctype in types.items():
        st, h, body, _ = get("/" + name)
        T.check(st == 200 and h.get("content-type") == ctype and body == files[name],
                "/%s: 200, %s, the file's bytes" % (name, ctype))
    st, h, body, _ = get("/")
    T.check(st == 200 and body == files["index.html"], "/ serves index.html")
    st, h, body, _ = get("/sub/")
    T.check(st == 200 and body == files["sub/index.html"], "/sub/ serves sub/index.html")
    st, h, body, _ = get("/sub")
    T.check(st == 301 and h.get("location") == "/sub/", "/sub redirects to /sub/ (%s)" % st)
    st, h, body, _ = get("/with%20space.txt")
    T.check(st == 200 and body == b"spaced", "percent-encoded name")
    st, h, body, _ = get("/link-in.js")
    T.check(st == 200 and body == files["app.js"], "a link inside the root is followed")
    st, h, body, _ = get("/missing.html")
    T.eq(st, 404, "missing file: 404")

    # conditional requests
    st, h, body, _ = get("/app.js")
    etag, lm = h.get("etag"), h.get("last-modified")
    T.check(etag and lm, "ETag and Last-Modified sent")
    st, h2, body, _ = get("/app.js", ["If-None-Match: " + etag])
    T.check(st == 304 and body == b"" and h2.get("etag") == etag, "If-None-Match: 304, no body")
    st, _, body, _ = get("/app.js", ['If-None-Match: "other", ' + etag])
    T.eq(st, 304, "If-None-Match with a list: 304")
    st, _, body, _ = get("/app.js", ['If-None-Match: "nope"'])
    T.check(st == 200 and body == files["app.js"], "another ETag: 200")
    st, _, body, _ = get("/app.js", ["If-Modified-Since: " + lm])
    T.eq(st, 304, "If-Modified-Since equal to Last-Modified: 304")
    # a changed file gets another ETag
    time.sleep(0.01)
    with open(os.path.join(root, "app.js"), "wb") as f:
        f.write(b"console.log(2)")
    st, h3, body, _ = get("/app.js", ["If-None-Match: " + etag])
    T.check(st == 200 and body == b"console.log(2)" and h3.get("etag") != etag,
            "changed file: 200 with a new ETag")

    st, h, body, _ = get("/style.css", method="HEAD")
    T.check(st == 200 and h.get("content-length") == "6" and body == b"",
            "HEAD: headers and length, no body")
    st, h, body, _ = get("/app.js", method="POST")
    T.eq(st, 405, "POST: 405")
    T.check("GET" in h.get("allow", ""), "405 says Allow")

    # no way out of the root
    escapes = ["/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/sub/../../secret.txt",
               "/sub/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "/sub/..%2F..%2Fsecret.txt",
               "/.%2e/secret.txt", "/%2e%2e%5csecret.txt", "/..\\secret.txt", "/link-out.txt",
               "/dir-out/x.txt", "/passwd", "/%252e%252e/secret.txt", "//../secret.txt",
               "/sub/./../../secret.txt", "/./../secret.txt", "/%00secret.txt",
               "/secret.txt%00.html", "/dir-out/../../secret.txt"]
    for path in escapes:
        st, h, body, _ = get(path)
        T.check(st in (400, 404) and b"SECRET" not in body and b"OUTSIDE" not in body and
                b"root:" not in body, "%s: refused (%s)" % (path, st))
    # absolute-form and odd targets
    st, h, body, _ = get("http://127.0.0.1/../secret.txt")
    T.check(st in (400, 404) and b"SECRET" not in body, "absolute-form with ..: refused (%s)" % st)
    st, _, _, _ = get("/%zz")
    T.eq(st, 400, "bad percent escape: 400")
    st, _, _, _ = get("/%4")
    T.eq(st, 400, "truncated percent escape: 400")

    # keep-alive: two requests in one write, two answers in order
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
    s.sendall(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /data.json HTTP/1.1\r\nHost: x\r\n"
              b"Connection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    T.check(data.count(b"HTTP/1.1 200") == 2 and data.index(b"body{}") < data.index(b'{"a":1}'),
            "two pipelined requests: two answers in order")


def main():
    global srv
    base, root, files = make_root()
    srv = wsutil.Server("[app conf]\nstore = memory\n",
                        sets={"web_root": root, "http_request_timeout_ms": 1000,
                              "http_max_file": 4096})
    try:
        print("# section handshake", flush=True)
        handshake_section()
        print("# section static", flush=True)
        static_section(base, root, files)
        st, _, body, _ = get("/big.bin")
        T.eq(st, 403, "a file over http_max_file: 403")
    except (wsutil.Closed, TimeoutError, RuntimeError, OSError) as e:
        T.check(False, "%s: %s" % (type(e).__name__, e))
    finally:
        T.eq(srv.stop(), 0, "server stopped cleanly")
        shutil.rmtree(base, ignore_errors=True)
    # ws_deflate = false: offers are declined, the upgrade goes on
    srv = wsutil.Server("[app conf]\nstore = memory\n", sets={"ws_deflate": "false"})
    try:
        ws = WS(srv.http_port, extensions="permessage-deflate; client_max_window_bits")
        T.check(ws.status == 101 and "sec-websocket-extensions" not in ws.headers,
                "ws_deflate = false: 101 without permessage-deflate")
        ws.close()
    finally:
        T.eq(srv.stop(), 0, "second server stopped cleanly")
    return T.done()


if __name__ == "__main__":
    sys.exit(main())
