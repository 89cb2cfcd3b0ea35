#!/usr/bin/python3
"""test_tls.py SERVER - sohub over TLS, and behind nginx terminating TLS.

Starts the real sohub-server with https_listen (a self-signed certificate
made here with the openssl command) and http_listen, and Debian's nginx
in front of http_listen as docs/configuration.md shows (TLS terminated by
nginx, the WebSocket upgrade proxied).  Checks, each on 127.0.0.1 only:
  - a static page over https, and wss:// straight to sohub: connect, a
    call, a shared-object change seen by a second wss client;
  - TLS below 1.2 is refused; a client that never finishes its handshake
    is closed after http_request_timeout_ms;
  - through nginx: wss connect, a change between a client behind nginx and
    one straight on sohub, the page Origin reaching [app] origins (an
    allowed origin connects, another is refused with 4403).
Prints TAP lines; exits 1 when a check failed, 77 when nginx or openssl is
missing (they come from scripts/packages.txt)."""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings

import websockets

checks = 0
failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (checks, what), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def read_ports(path, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            lines = open(path).read().split("\n")
            if lines and lines[0].strip():
                ports = {"rtmp": int(lines[0])}
                for line in lines[1:]:
                    if line.strip():
                        k, v = line.split()
                        ports[k] = int(v)
                return ports
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return None


async def connect(url, ctx, app="demo/room", origin=None, user=None):
    headers = {"Origin": origin} if origin else None
    ws = await asyncio.wait_for(
        websockets.connect(url, subprotocols=["sohub.v1"], ssl=ctx, origin=origin,
                           extra_headers=None if origin else headers, open_timeout=5), 5)
    msg = {"op": "connect", "id": 1, "app": app}
    if user:
        msg["user"] = user
    await ws.send(json.dumps(msg))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, answer


async def next_so(ws):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if m.get("op") == "so":
            return m


async def use(ws, name):
    await ws.send(json.dumps({"op": "so", "name": name, "version": 0, "persistent": False,
                              "events": [{"t": "use"}]}))
    return await next_so(ws)


async def scenario(d, ports, nginx_port):
    ctx = ssl.create_default_context(cafile=os.path.join(d, "cert.pem"))
    https = ports["https"]

    # a page over https
    body = urllib.request.urlopen("https://127.0.0.1:%d/index.html" % https, context=ctx,
                                  timeout=5).read()
    check(b"hello over tls" in body, "a static page over https")

    # wss straight to sohub
    a, ans = await connect("wss://127.0.0.1:%d/ws" % https, ctx)
    check(ans.get("ok") is True, "wss: connect accepted")
    await a.send(json.dumps({"op": "call", "id": 2, "method": "echo", "args": ["x" * 20000]}))
    r = json.loads(await asyncio.wait_for(a.recv(), 5))
    check(r.get("id") == 2 and r.get("value") == "x" * 20000, "wss: a 20 KB echo comes back whole")
    b, ans = await connect("wss://127.0.0.1:%d/ws" % https, ctx)
    for c in (a, b):
        await use(c, "board")
    await a.send(json.dumps({"op": "so", "name": "board", "version": 1, "persistent": False,
                             "events": [{"t": "change", "slots": [["k", "over tls"]]}]}))
    m = await next_so(b)
    check(m["events"][0]["t"] == "change" and m["events"][0]["slots"] == [["k", "over tls"]],
          "wss: a change reaches the other wss client")

    # TLS 1.1 is refused
    # (the client side allows TLS 1.1 at security level 0, so a refusal
    # can only come from the server)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    refused = False
    try:
        s = socket.create_connection(("127.0.0.1", https), timeout=5)
        old.wrap_socket(s).close()
    except (ssl.SSLError, OSError):
        refused = True
    check(refused, "a TLS 1.1 handshake is refused")

    # a client that starts TCP and never speaks TLS is closed
    s = socket.create_connection(("127.0.0.1", https), timeout=5)
    t0 = time.time()
    s.settimeout(5)
    try:
        closed = s.recv(1) == b""
    except OSError:
        closed = True
    waited = time.time() - t0
    s.close()
    check(closed and 0.3 < waited < 4.5,
          "a silent TLS client is closed after http_request_timeout_ms (%.1f s)" % waited)

    # through nginx terminating TLS
    origin = "https://chat.example.org"
    c, ans = await connect("wss://127.0.0.1:%d/ws" % nginx_port, ctx, app="locked/room",
                           origin=origin)
    check(ans.get("ok") is True, "through nginx: connect accepted for an allowed Origin")
    e, ans = await connect("wss://127.0.0.1:%d/ws" % https, ctx, app="locked/room",
                           origin=origin)
    for x in (c, e):
        await use(x, "board")
    await c.send(json.dumps({"op": "so", "name": "board", "version": 1, "persistent": False,
                             "events": [{"t": "change", "slots": [["via", "nginx"]]}]}))
    m = await next_so(e)
    check(m["events"][0]["slots"] == [["via", "nginx"]],
          "through nginx: a change reaches a client connected straight to sohub")
    f, ans = await connect("wss://127.0.0.1:%d/ws" % nginx_port, ctx, app="locked/room",
                           origin="https://evil.example")
    refused = ans.get("ok") is False and ans["value"]["description"] == "Origin not allowed"
    code = None
    try:
        await asyncio.wait_for(f.recv(), 5)
    except websockets.ConnectionClosed as ex:
        code = ex.code
    check(refused and code == 4403,
          "through nginx: another Origin is refused (%s, close %s)" % (ans, code))
    for x in (a, b, c, e):
        await x.close()


def main():
    server = sys.argv[1]
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        print("1..0 # SKIP nginx is not installed (scripts/packages.txt lists nginx-light)")
        return 77
    if not shutil.which("openssl"):
        print("1..0 # SKIP the openssl command is missing")
        return 77
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="sohub-tls-")
    procs = []
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem"),
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.makedirs(os.path.join(d, "web"))
        with open(os.path.join(d, "web", "index.html"), "w") as f:
            f.write("<p>hello over tls</p>\n")
        with open(os.path.join(d, "sohub.ini"), "w") as f:
            f.write("[server]\nhttp_request_timeout_ms = 1000\nmax_connections_per_ip = 64\n"
                    "[app demo]\n[app locked]\norigins = https://chat.example.org\n")
        log = open(os.path.join(d, "server.log"), "w")
        srv = subprocess.Popen([server, "--listen", "127.0.0.1:0", "--port-file",
                                os.path.join(d, "port"), "--data-dir", os.path.join(d, "data"),
                                "--config", os.path.join(d, "sohub.ini"),
                                "--set", "http_listen=127.0.0.1:0",
                                "--set", "https_listen=127.0.0.1:0",
                                "--set", "tls_cert=" + os.path.join(d, "cert.pem"),
                                "--set", "tls_key=" + os.path.join(d, "key.pem"),
                                "--set", "web_root=" + os.path.join(d, "web")],
                               stdout=log, stderr=log)
        procs.append(srv)
        ports = read_ports(os.path.join(d, "port"))
        check(ports is not None and "https" in ports and "http" in ports,
              "sohub started with http and https listeners (%s)" % ports)
        if not ports:
            return 1
        nginx_port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/nb; proxy_temp_path {d}/np;
    fastcgi_temp_path {d}/nf; uwsgi_temp_path {d}/nu; scgi_temp_path {d}/ns;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location /ws {{
            proxy_pass http://127.0.0.1:{http};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 120s;
        }}
    }}
}}
""".format(d=d, port=nginx_port, http=ports["http"]))
        ng = subprocess.Popen([nginx, "-c", conf, "-p", d], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(d, "nginx.out"), "w"))
        procs.append(ng)
        check(wait_port(nginx_port), "nginx started on 127.0.0.1:%d" % nginx_port)
        asyncio.run(asyncio.wait_for(scenario(d, ports, nginx_port), 60))
        srv.send_signal(signal.SIGTERM)
        check(srv.wait(timeout=15) == 0, "sohub exits 0 after SIGTERM")
        procs.remove(srv)
    except Exception as ex:  # a failed step fails the test, with its reason
        check(False, "unexpected error: %r" % (ex,))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if failures:
            for name in ("server.log", "nginx-error.log", "nginx.out"):
                path = os.path.join(d, name)
                if os.path.exists(path):
                    sys.stderr.write("---- %s ----\n%s\n" % (name, open(path).read()[-4000:]))
        shutil.rmtree(d, ignore_errors=True)
    print("1..%d" % checks)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
