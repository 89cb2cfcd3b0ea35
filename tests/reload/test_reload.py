#!/usr/bin/python3
"""test_reload.py SERVER - SIGHUP reloads the configuration without
dropping connections (issue 14, "Running it as a service").

The real sohub-server with a config file, WebSocket clients (Debian's
python3-websockets) and the server API (admin_listen):
  - a new [app] section is served after the reload, a client connected
    before it is still connected and answered;
  - API keys change: the removed key gets 401, the new one 200;
  - a tightened write_access applies at once to a client already in a room;
  - a key that only takes effect at a restart (listen) is reported as such;
  - a bad file is refused with its line number and the config in use stays;
  - removing an application closes its clients (they are no longer served).
TAP lines on stdout; exit 1 when a check failed."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import websockets

checks = 0
failures = 0
K1 = "first-key-0123456789abcdef"
K2 = "second-key-0123456789abcdef"


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (checks, what), flush=True)


def read_ports(path, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            lines = [l for l in open(path).read().split("\n") if l.strip()]
            if lines:
                ports = {"rtmp": int(lines[0])}
                for line in lines[1:]:
                    k, v = line.split()
                    ports[k] = int(v)
                return ports
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return None


def wait_log(path, needle, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if needle in open(path).read():
            return True
        time.sleep(0.05)
    return False


def api(port, path, key, method="GET", body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


CONFIG_A = """[server]
admin_listen = 127.0.0.1:0
http_listen = 127.0.0.1:0
[api_key first]
secret = %s
scope = write
[app one]
[app locked]
""" % K1

CONFIG_B = """[server]
admin_listen = 127.0.0.1:1
http_listen = 127.0.0.1:0
log_level = debug
[api_key second]
secret = %s
scope = write
[app one]
[app two]
[app locked]
write_access =
""" % K2

CONFIG_BAD = """[server]
admin_listen = 127.0.0.1:0
max_conections = 5
"""

CONFIG_D = """[server]
admin_listen = 127.0.0.1:0
http_listen = 127.0.0.1:0
[api_key second]
secret = %s
scope = write
[app two]
[app locked]
""" % K2


async def connect(port, app):
    ws = await websockets.connect("ws://127.0.0.1:%d/ws" % port, subprotocols=["sohub.v1"],
                                  open_timeout=5)
    await ws.send(json.dumps({"op": "connect", "id": 1, "app": app, "user": "u"}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))


async def so(ws, events, version=0):
    await ws.send(json.dumps({"op": "so", "name": "o", "version": version, "persistent": False,
                              "events": events}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if m.get("op") == "so":
            return m


async def echo(ws, n):
    await ws.send(json.dumps({"op": "call", "id": n, "method": "echo", "args": [n]}))
    m = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return m.get("id") == n and m.get("value") == n


async def scenario(d, conf, log, pid, ports):
    http, admin = ports["http"], ports["admin"]
    c1, ans = await connect(http, "one/r")
    check(ans["ok"], "before: a client of [app one] connects")
    x, ans = await connect(http, "two/r")
    check(not ans["ok"] and ans["value"]["description"] == "Application not found",
          "before: [app two] is not served")
    c2, ans = await connect(http, "locked/r")
    await so(c2, [{"t": "use"}])
    m = await so(c2, [{"t": "change", "slots": [["k", 1]]}], 1)
    check(m["events"][0]["t"] == "success", "before: a client writes in [app locked]")
    st, _ = api(admin, "/api/v1/apps", K1)
    check(st == 200, "before: the first API key works (%d)" % st)

    open(conf, "w").write(CONFIG_B)
    os.kill(pid, signal.SIGHUP)
    check(wait_log(log, "reload: %s in use" % conf), "SIGHUP: the new file is in use")
    check(await echo(c1, 7), "the client connected before the reload is still answered")
    y, ans = await connect(http, "two/r")
    check(ans["ok"], "after: [app two] is served")
    st1, _ = api(admin, "/api/v1/apps", K1)
    st2, _ = api(admin, "/api/v1/apps", K2)
    check(st1 == 401 and st2 == 200, "after: the removed key gets 401, the new one 200 (%d, %d)"
          % (st1, st2))
    m = await so(c2, [{"t": "change", "slots": [["k", 2]]}], 2)
    codes = [e.get("code") for e in m["events"] if e["t"] == "status"]
    check(codes == ["SharedObject.NoWriteAccess"],
          "after: the tightened write_access refuses the client already in the room (%s)" % codes)
    check(wait_log(log, "admin_listen changed: it takes effect at the next restart"),
          "after: a listener change is reported for the next restart")
    check(wait_log(log, "DEBUG"), "after: log_level changed at once")

    open(conf, "w").write(CONFIG_BAD)
    os.kill(pid, signal.SIGHUP)
    check(wait_log(log, "reload refused: %s:3: unknown key 'max_conections'" % conf),
          "a bad file is refused with its line number")
    st2, _ = api(admin, "/api/v1/apps", K2)
    check(st2 == 200 and await echo(c1, 8), "after a refused reload the config in use stays")

    open(conf, "w").write(CONFIG_D)
    os.kill(pid, signal.SIGHUP)
    code = None
    try:
        await asyncio.wait_for(c1.recv(), 5)
    except websockets.ConnectionClosed as ex:
        code = ex.code
    check(code == 1000, "removing [app one] closes its client (close %s)" % code)
    check(await echo(y, 9), "the client of [app two] stays")
    for w in (c2, y):
        await w.close()


def main():
    server = sys.argv[1]
    d = tempfile.mkdtemp(prefix="sohub-reload-")
    conf = os.path.join(d, "sohub.ini")
    log = os.path.join(d, "server.log")
    open(conf, "w").write(CONFIG_A)
    srv = subprocess.Popen([server, "--listen", "127.0.0.1:0", "--port-file",
                            os.path.join(d, "port"), "--data-dir", os.path.join(d, "data"),
                            "--config", conf], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        ports = read_ports(os.path.join(d, "port"))
        check(ports is not None and "http" in ports and "admin" in ports,
              "the server started (%s)" % ports)
        if ports:
            asyncio.run(asyncio.wait_for(scenario(d, conf, log, srv.pid, ports), 60))
        srv.send_signal(signal.SIGTERM)
        check(srv.wait(timeout=15) == 0, "the server exits 0 after SIGTERM")
    except Exception as ex:
        check(False, "unexpected error: %r" % (ex,))
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        if failures:
            sys.stderr.write(open(log).read()[-6000:])
        shutil.rmtree(d, ignore_errors=True)
    print("1..%d" % checks)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
