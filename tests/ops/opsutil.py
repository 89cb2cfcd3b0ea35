"""opsutil.py - what the tests of tests/ops share: TAP lines, a
sohub-server started on 127.0.0.1 with port 0 (ports read from its
--port-file), HTTP requests to its admin listener, bounded waits, and the
Prometheus text format read back into samples.

Every wait here is bounded; every process a test starts is stopped by
the test (Server.stop, or atexit when a check throws)."""

import atexit
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

_checks = 0
_failures = 0


def check(cond, what):
    global _checks, _failures
    _checks += 1
    if not cond:
        _failures += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (_checks, what), flush=True)
    return cond


def note(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def finish():
    """Prints the plan and exits 0 when every check passed, 1 otherwise."""
    print("1..%d" % _checks, flush=True)
    raise SystemExit(1 if _failures or _checks == 0 else 0)


def skip_all(why):
    print("1..0 # SKIP " + why, flush=True)
    raise SystemExit(77)


def wait_for(fn, timeout, interval=0.05):
    """Calls fn until it returns something true or timeout seconds pass;
    returns the last value."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


_procs = []


def _kill_all():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_all)


def spawn(argv, **kw):
    """Popen that is killed at exit if the test did not stop it."""
    p = subprocess.Popen(argv, **kw)
    _procs.append(p)
    return p


class Server:
    """sohub-server on 127.0.0.1 (every listener port 0), its log in a file."""

    def __init__(self, binary, config, data_dir=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="sohub-ops-")
        self.data = data_dir or os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "sohub.ini")
        self.port_file = os.path.join(self.dir, "ports")
        self.log_path = os.path.join(self.dir, "server.log")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.binary = binary
        self.proc = None
        self.ports = {}

    def start(self, timeout=10.0):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(self.log_path, "ab")
        self.proc = spawn([self.binary, "--config", self.config_path, "--listen",
                           "127.0.0.1:0", "--data-dir", self.data, "--port-file",
                           self.port_file], stdout=self.log, stderr=self.log)
        self.ports = wait_for(self._read_ports, timeout) or {}
        return "rtmp" in self.ports

    def _read_ports(self):
        if self.proc.poll() is not None:
            return None
        try:
            lines = open(self.port_file).read().split("\n")
        except OSError:
            return None
        if not lines or not lines[0].strip():
            return None
        ports = {"rtmp": int(lines[0])}
        for line in lines[1:]:
            if line.strip():
                k, v = line.split()
                ports[k] = int(v)
        return ports

    def stop(self, timeout=10.0):
        """SIGTERM, then the exit status (None when it had to be killed)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            self.log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rtmp_url(self, app):
        return "rtmp://127.0.0.1:%d/%s" % (self.ports["rtmp"], app)


class Admin:
    """One keep-alive HTTP/1.1 connection to the admin listener."""

    def __init__(self, port, key=None):
        self.port = port
        self.key = key
        self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        """Returns (status, body bytes); status 0 when the request failed."""
        status, _, data = self.request_full(method, path, body, headers, timeout)
        return status, data

    def request_full(self, method, path, body=None, headers=None, timeout=10.0):
        """Returns (status, headers as a dict with lower-case names, body
        bytes); status 0 when the request failed."""
        h = dict(headers or {})
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        if body is not None and not isinstance(body, bytes):
            body = body.encode()
            h.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                           timeout=timeout)
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
        return 0, {}, b""

    def get(self, path):
        return self.request("GET", path)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """The samples of a Prometheus text exposition:
    {(name, frozenset of (label, value))): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    """The value of one sample, None when absent."""
    return samples.get((name, frozenset(labels.items())))
