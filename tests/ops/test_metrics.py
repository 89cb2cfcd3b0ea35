#!/usr/bin/python3
"""test_metrics.py SERVER CLI - /metrics of the real server, read by the
tools that will read it in production.

Starts sohub-server (admin_listen, http_listen, log_format = json) on
127.0.0.1 and makes traffic with real clients: sohub-cli over RTMP (a
subscriber, a writer, a write with the wrong persistence, two refused
connects, a private message sent to an offline user and read by him) and
a WebSocket client (python3-websockets), plus a persistent write through
the server API.  Then checks:
  - every series the issue asks for is there with HELP and TYPE, and the
    values moved by what the traffic did (connects by transport,
    refusals by reason and by Status code, updates, deliveries, bytes,
    objects loaded and unloaded, store commits and their histogram, chat
    stored / delivered / acknowledged / queued, loop lag, memory, CPU);
  - `promtool check metrics` accepts the scrape;
  - a real Prometheus started here on loopback (scrape_interval 1s)
    scrapes the admin port: its /api/v1/query returns sohub series and
    up == 1 within a bounded wait;
  - the server's stderr is JSON lines: each parses, has ts / level / msg,
    connection lines carry conn as a number.
TAP on stdout; exit 1 on a failed check, 77 when promtool or prometheus
is missing (Debian package prometheus, scripts/packages.txt)."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opsutil import (Admin, Server, check, finish, free_port, metric, note,  # noqa: E402
                     parse_metrics, skip_all, spawn, wait_for)

import websockets  # noqa: E402

KEY = "ops-test-key-0123456789"
CONFIG = """[server]
admin_listen = 127.0.0.1:0
http_listen = 127.0.0.1:0
log_format = json
so_max_updates_per_sec = 0

[api_key ops]
secret = %s
scope = write

[app demo]

[app secure]
auth = token
secret = a-secret-nobody-in-this-test-knows
""" % KEY

# What the issue lists, as the names /metrics gives it.
EXPECTED = {
    "sohub_connections": "gauge",
    "sohub_connects_total": "counter",
    "sohub_connect_refusals_total": "counter",
    "sohub_accept_refusals_total": "counter",
    "sohub_so_rooms": "gauge",
    "sohub_so_objects": "gauge",
    "sohub_so_room_loads_total": "counter",
    "sohub_so_room_unloads_total": "counter",
    "sohub_so_object_loads_total": "counter",
    "sohub_so_object_unloads_total": "counter",
    "sohub_so_updates_total": "counter",
    "sohub_so_refusals_total": "counter",
    "sohub_so_deliveries_total": "counter",
    "sohub_sent_bytes_total": "counter",
    "sohub_received_bytes_total": "counter",
    "sohub_so_congestion_events_total": "counter",
    "sohub_store_commits_total": "counter",
    "sohub_store_commit_seconds": "histogram",
    "sohub_store_failures_total": "counter",
    "sohub_chat_messages_stored_total": "counter",
    "sohub_chat_messages_delivered_total": "counter",
    "sohub_chat_messages_acknowledged_total": "counter",
    "sohub_chat_messages_queued": "gauge",
    "sohub_chat_store_failures_total": "counter",
    "sohub_event_loop_lag_seconds": "histogram",
    "sohub_process_resident_memory_bytes": "gauge",
    "sohub_process_cpu_seconds_total": "counter",
}


class Lines:
    """A child's stdout read into a list by a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))


def cli(cli_bin, url, *args, user=None, timeout=10):
    """Runs sohub-cli to completion; (exit status, stdout + stderr)."""
    argv = [cli_bin, "-u", url, "--timeout", "5"]
    if user:
        argv += ["--user", user]
    p = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def scrape(admin):
    st, body = admin.get("/metrics")
    return st, body.decode("utf-8", "replace")


def delta(m1, m0, name, **labels):
    return (metric(m1, name, **labels) or 0) - (metric(m0, name, **labels) or 0)


def sum_of(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


async def ws_client(port, app, obj):
    ws = await asyncio.wait_for(
        websockets.connect("ws://127.0.0.1:%d/ws" % port, subprotocols=["sohub.v1"],
                           open_timeout=5), 5)
    await ws.send(json.dumps({"op": "connect", "id": 1, "app": app}))
    ans = json.loads(await asyncio.wait_for(ws.recv(), 5))
    await ws.send(json.dumps({"op": "so", "name": obj, "version": 0, "persistent": False,
                              "events": [{"t": "use"}]}))
    return ws, ans


async def ws_wait_change(ws, key, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic()))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            return False
        if m.get("op") == "so":
            for ev in m.get("events", []):
                if ev.get("t") == "change" and any(
                        isinstance(kv, list) and kv and kv[0] == key
                        for kv in ev.get("slots") or []):
                    return True
    return False


def check_exposition(text):
    """HELP and TYPE for every expected family, names in Prometheus style."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    missing = [n for n in EXPECTED if types.get(n) != EXPECTED[n] or n not in helps]
    check(not missing, "every series of the issue's list has HELP and TYPE: missing or "
          "wrong %s" % missing)
    bad = [n for n, t in types.items()
           if (t == "counter") != n.endswith("_total") or not n.startswith("sohub_")]
    check(not bad, "counters and only counters end in _total, all under sohub_: %s" % bad)
    units = [n for n in types if re.search(r"_(ms|millis|milliseconds|kb|kib|mb)(_|$)", n)]
    check(not units, "base units only (seconds, bytes): %s" % units)


def run_promtool(text, workdir):
    path = os.path.join(workdir, "scrape.txt")
    with open(path, "w") as f:
        f.write(text)
    with open(path, "rb") as f:
        p = subprocess.run(["promtool", "check", "metrics"], stdin=f, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace").strip()
    check(p.returncode == 0 and not out, "promtool check metrics accepts the scrape")
    if out:
        note(out)


def run_prometheus(admin_port, workdir):
    """A real Prometheus on loopback scraping the admin port every second."""
    cfg = os.path.join(workdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: sohub\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % admin_port)
    log_path = os.path.join(workdir, "prometheus.log")
    for attempt in range(3):  # the free port may be taken between the probe and the bind
        port = free_port()
        log = open(log_path, "wb")
        p = spawn(["prometheus", "--config.file=" + cfg,
                   "--storage.tsdb.path=" + os.path.join(workdir, "tsdb%d" % attempt),
                   "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                  stdout=log, stderr=log, cwd=workdir)

        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    d = json.loads(r.read())
                return d["data"]["result"] if d.get("status") == "success" else None
            except (OSError, ValueError, KeyError):
                return None

        ready = wait_for(lambda: p.poll() is not None or query("1") is not None, 30, 0.2)
        if p.poll() is None and ready:
            break
        log.close()
        if p.poll() is None:
            p.kill()
            p.wait(5)
    else:
        check(False, "prometheus starts on loopback")
        note(open(log_path, errors="replace").read()[-2000:])
        return
    check(True, "prometheus starts on loopback (port %d)" % port)
    res = wait_for(lambda: query('sohub_connects_total{job="sohub",transport="rtmp"}'), 30, 0.25)
    check(bool(res), "prometheus's /api/v1/query returns a sohub series scraped from the "
          "admin port")
    if res:
        note("prometheus: %s" % json.dumps(res[0]))
    up = wait_for(lambda: query('up{job="sohub"} == 1'), 10, 0.25)
    check(bool(up), "prometheus sees the target up")
    # a series of every type made it through Prometheus's own parser
    hist = wait_for(lambda: query("sohub_event_loop_lag_seconds_count"), 10, 0.25)
    check(bool(hist), "a histogram's series are stored by prometheus")
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(5)
    log.close()
    check(rc == 0, "prometheus stops cleanly (status %s)" % rc)


def check_json_log(text):
    lines = [line for line in text.split("\n") if line]
    bad, conn_lines, refused, connects = [], 0, 0, 0
    for line in lines:
        try:
            j = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not (isinstance(j, dict) and isinstance(j.get("ts"), str) and
                j.get("level") in ("error", "warn", "info", "debug") and
                isinstance(j.get("msg"), str) and
                re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", j["ts"])):
            bad.append(line)
            continue
        if "conn" in j:
            if not isinstance(j["conn"], int) or j["msg"].startswith("conn="):
                bad.append(line)
            conn_lines += 1
            if j["msg"].startswith("connect refused") or j["msg"].startswith("connect rejected"):
                refused += 1
            if j["msg"].startswith("connect peer="):
                connects += 1
    check(len(lines) > 5 and not bad, "server log: %d lines, each one JSON object with ts, "
          "level, msg" % len(lines))
    for b in bad[:5]:
        note("not a log object: " + b[:300])
    check(conn_lines > 0 and connects > 0 and refused >= 2,
          "connection lines carry conn as a number (%d lines, %d connects, %d refused)"
          % (conn_lines, connects, refused))


async def scenario(srv, cli_bin, admin, workdir):
    st, text = scrape(admin)
    check(st == 200 and "# TYPE" in text, "/metrics answers 200 without a key")
    m0 = parse_metrics(text)

    room = srv.rtmp_url("demo/room1")
    # an RTMP subscriber that stays until killed, a WebSocket one
    watcher = spawn([cli_bin, "-u", room, "so", "watch", "obj1", "--timeout", "30"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wl = Lines(watcher)
    check(bool(wait_for(lambda: any('"use"' in x for x in wl.lines), 10)),
          "an RTMP subscriber (sohub-cli so watch) is in")
    ws, ans = await ws_client(srv.ports["http"], "demo/room1", "obj1")
    check(ans.get("ok") is True, "a WebSocket client is in")

    rc, out = cli(cli_bin, room, "so", "set", "obj1", "k", "1")
    check(rc == 0, "an RTMP writer changes obj1")
    check(await ws_wait_change(ws, "k"), "the WebSocket subscriber gets the change")
    check(bool(wait_for(lambda: any('"change"' in x for x in wl.lines), 5)),
          "the RTMP subscriber gets the change")
    rc, out = cli(cli_bin, room, "--persistent", "so", "set", "obj1", "k", "2")
    check(rc != 0 and "BadPersistence" in out, "a write with the other persistence is "
          "refused (%s)" % out.strip()[:120])
    rc, out = cli(cli_bin, srv.rtmp_url("secure/x"), "so", "get", "o")
    check(rc != 0, "a connect without a token to an auth = token application is refused")
    rc, out = cli(cli_bin, srv.rtmp_url("nowhere/x"), "so", "get", "o")
    check(rc != 0, "a connect to an application that is not served is refused")

    # a private message to bob, offline: stored and queued; bob reads it
    rc, out = cli(cli_bin, srv.rtmp_url("demo/room1"), "chat", "send", "bob", "hello bob",
                  user="alice")
    check(rc == 0 and "queued" in out, "alice's private message to bob is queued (%s)"
          % out.strip()[:120])
    mq = parse_metrics(scrape(admin)[1])
    check(delta(mq, m0, "sohub_chat_messages_stored_total") == 1 and
          metric(mq, "sohub_chat_messages_queued") == 1,
          "chat: stored_total +1, queued 1 while bob is away")
    rc, out = cli(cli_bin, srv.rtmp_url("demo/room1"), "chat", "listen", "--count", "1",
                  user="bob")
    check(rc == 0 and "hello bob" in out, "bob gets the message (sohub-cli chat listen)")

    # a persistent write through the server API: one store commit at least
    api = Admin(srv.ports["admin"], KEY)
    st, body = api.request("POST", "/api/v1/apps/demo/instances/room1/objects/pobj",
                           json.dumps({"set": {"a": 1}}))
    check(st == 200, "a persistent write through the API is stored (%d %s)"
          % (st, body[:100]))
    api.close()

    # what moved, read while the subscribers are still in
    m1 = wait_for(lambda: (lambda m: m if delta(m, m0, "sohub_chat_messages_acknowledged_total")
                           >= 1 else None)(parse_metrics(scrape(admin)[1])), 5)
    check(m1 is not None, "chat: acknowledged_total +1 once bob acknowledged")
    st, text1 = scrape(admin)
    m1 = parse_metrics(text1)
    check_exposition(text1)
    run_promtool(text1, workdir)
    d = lambda name, **lb: delta(m1, m0, name, **lb)  # noqa: E731
    check(d("sohub_connects_total", transport="rtmp") >= 5,
          "connects_total{transport=rtmp} +%d (>= 5)" % d("sohub_connects_total",
                                                           transport="rtmp"))
    check(d("sohub_connects_total", transport="ws") == 1, "connects_total{transport=ws} +1")
    check(metric(m1, "sohub_connections", transport="ws", state="connected") == 1 and
          (metric(m1, "sohub_connections", transport="rtmp", state="connected") or 0) >= 1,
          "connections{state=connected}: ws 1, rtmp >= 1 while the subscribers are in")
    check(d("sohub_connect_refusals_total", reason="auth") == 1 and
          d("sohub_connect_refusals_total", reason="app_not_found") == 1,
          "connect_refusals_total: auth +1, app_not_found +1")
    check(d("sohub_so_refusals_total", code="SharedObject.BadPersistence") == 1,
          "so_refusals_total{code=SharedObject.BadPersistence} +1")
    check(d("sohub_so_updates_total") >= 2, "so_updates_total +%d (>= 2)"
          % d("sohub_so_updates_total"))
    check(d("sohub_so_deliveries_total") >= 2, "so_deliveries_total +%d (>= 2: both "
          "subscribers)" % d("sohub_so_deliveries_total"))
    check(d("sohub_sent_bytes_total") > 0 and d("sohub_received_bytes_total") > 0,
          "bytes sent +%d, received +%d" % (d("sohub_sent_bytes_total"),
                                           d("sohub_received_bytes_total")))
    check(d("sohub_so_object_loads_total") >= 2 and (metric(m1, "sohub_so_objects") or 0) >= 2,
          "so_object_loads_total +%d, so_objects %s" % (d("sohub_so_object_loads_total"),
                                                       metric(m1, "sohub_so_objects")))
    commits = d("sohub_store_commits_total")
    hcount = d("sohub_store_commit_seconds_count")
    check(commits >= 1 and hcount == commits and
          metric(m1, "sohub_store_commit_seconds_bucket", le="+Inf") ==
          metric(m1, "sohub_store_commit_seconds_count") and
          d("sohub_store_commit_seconds_sum") > 0,
          "store commits +%d, the commit-time histogram counted each" % commits)
    check(d("sohub_chat_messages_delivered_total") == 1 and
          d("sohub_chat_messages_acknowledged_total") == 1 and
          metric(m1, "sohub_chat_messages_queued") == 0,
          "chat: delivered +1, acknowledged +1, queued back to 0")
    check(metric(m1, "sohub_store_failures_total") == 0 and
          metric(m1, "sohub_chat_store_failures_total") == 0, "no store failure counted")
    check((metric(m1, "sohub_event_loop_lag_seconds_count") or 0) >
          (metric(m0, "sohub_event_loop_lag_seconds_count") or 0),
          "event-loop lag samples keep coming")
    check((metric(m1, "sohub_process_resident_memory_bytes") or 0) > 1 << 20 and
          (metric(m1, "sohub_process_cpu_seconds_total") or 0) > 0,
          "process memory %.0f bytes, CPU %.3f s" % (
              metric(m1, "sohub_process_resident_memory_bytes") or 0,
              metric(m1, "sohub_process_cpu_seconds_total") or 0))
    # buckets are cumulative and end at the count
    for h in ("sohub_store_commit_seconds", "sohub_event_loop_lag_seconds"):
        b = sorted(((float(dict(lb)["le"]), v) for (n, lb), v in m1.items()
                    if n == h + "_bucket"), key=lambda x: x[0])
        vals = [v for _, v in b]
        check(vals == sorted(vals) and vals[-1] == metric(m1, h + "_count"),
              "%s: buckets cumulative, +Inf = count" % h)

    # everybody leaves: the temporary object leaves memory
    await ws.close()
    watcher.terminate()
    watcher.wait(5)
    m2 = wait_for(lambda: (lambda m: m if delta(m, m1, "sohub_so_object_unloads_total") >= 1
                           and not metric(m, "sohub_connections", transport="ws",
                                          state="connected")
                           and not metric(m, "sohub_connections", transport="rtmp",
                                          state="connected") else None)(
        parse_metrics(scrape(admin)[1])), 5)
    check(m2 is not None, "once the subscribers left: so_object_unloads_total moved, no "
          "RTMP or WebSocket connection left")

    run_prometheus(srv.ports["admin"], workdir)


def main():
    if len(sys.argv) != 3:
        print("usage: test_metrics.py SERVER CLI", file=sys.stderr)
        return 2
    server_bin, cli_bin = sys.argv[1], sys.argv[2]
    if not shutil.which("promtool") or not shutil.which("prometheus"):
        skip_all("promtool / prometheus not installed (Debian package prometheus)")
    workdir = tempfile.mkdtemp(prefix="sohub-ops-metrics-")
    srv = Server(server_bin, CONFIG, workdir=workdir)
    try:
        if not check(srv.start() and "admin" in srv.ports and "http" in srv.ports,
                     "the server starts with admin_listen and http_listen"):
            note(srv.log_text()[-3000:])
            finish()
        admin = Admin(srv.ports["admin"])
        asyncio.run(scenario(srv, cli_bin, admin, workdir))
        admin.close()
        rc = srv.stop()
        check(rc == 0, "the server stops cleanly (status %s)" % rc)
        check_json_log(srv.log_text())
    finally:
        srv.stop()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            note("kept " + workdir)
    finish()


if __name__ == "__main__":
    main()
