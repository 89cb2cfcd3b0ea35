"""clusterutil.py - what the cluster tests share: a redis-server of the
test's own (free loopback port, own directory, chosen persistence) and N
sohub-server nodes pointed at it, on top of tests/ops/opsutil.py (TAP
lines, bounded waits, Server, Admin).

Every process started here is stopped by the test or killed at exit;
every wait is bounded."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from opsutil import (Admin, Server, check, finish, free_port, note, skip_all,  # noqa: E402,F401
                     spawn, wait_for)


class Redis:
    """redis-server on 127.0.0.1:PORT with its own directory.

    aof=True: appendonly yes, appendfsync always (what the durability tests
    use: nothing acknowledged is lost at a crash).  aof=False: no
    persistence at all (a restart starts empty)."""

    def __init__(self, aof=False, workdir=None, port=None, args=()):
        self.dir = workdir or tempfile.mkdtemp(prefix="sohub-redis-")
        self.port = port or free_port()
        self.aof = aof
        self.args = list(args)  # more redis-server options ("--replicaof", ...)
        self.proc = None

    def start(self, timeout=10.0):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--protected-mode", "yes",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.args
        self.proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return bool(wait_for(self.ping, timeout))

    def ping(self):
        return self.cmd("PING") == "PONG"

    def cmd(self, *args, timeout=5.0):
        """One command over a fresh connection (RESP); the reply decoded
        into str / int / list / None, or an Exception for an error reply.
        None too when Redis cannot be reached."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                out = b"*%d\r\n" % len(args)
                for a in args:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
                f = s.makefile("rb")
                return _read_reply(f)
        except OSError:
            return None

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(10)

    def stop(self):
        """SHUTDOWN (with an AOF, after its last fsync), then wait."""
        if self.proc and self.proc.poll() is None:
            self.cmd("SHUTDOWN", "NOSAVE" if not self.aof else "SAVE")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return Exception(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError("bad reply from redis: %r" % line)


def node_config(redis_port, extra="", node=None):
    """The INI text of one node of the test cluster."""
    text = "[cluster]\nredis = 127.0.0.1:%d\ntimeout_ms = 1000\nnode_ttl_ms = 3000\n" % redis_port
    if node:
        text += "node = %s\n" % node
    return text + extra


class Cluster:
    """n sohub-server nodes sharing one Redis.  extra: INI text appended to
    every node's config (the [app] sections, [server] keys ...)."""

    def __init__(self, binary, redis, n=3, extra=""):
        self.redis = redis
        self.nodes = [Server(binary, node_config(redis.port, extra, "n%d" % i))
                      for i in range(n)]

    def start(self, timeout=10.0):
        ok = all(s.start(timeout) for s in self.nodes)
        # up = its heartbeat key is in Redis
        return ok and bool(wait_for(lambda: self.live_nodes() >= len(self.nodes), timeout))

    def live_nodes(self):
        keys = self.redis.cmd("KEYS", "sohub:node:*")
        return len(keys) if isinstance(keys, list) else 0

    def stop(self):
        """Stops every node; returns their exit statuses."""
        return [s.stop() for s in self.nodes]

    def kill(self, i):
        """kill -9 of node i."""
        p = self.nodes[i].proc
        if p and p.poll() is None:
            p.kill()
            p.wait(10)
        self.nodes[i].log.close()

    def restart(self, i, timeout=10.0):
        return self.nodes[i].start(timeout)


def need_redis():
    """Skips the whole test when redis-server is not installed."""
    for d in os.environ.get("PATH", "").split(":"):
        if os.access(os.path.join(d, "redis-server"), os.X_OK):
            return
    skip_all("redis-server is not installed")


def elapsed_ms(t0):
    return (time.monotonic() - t0) * 1000.0
