"""wsutil.py - what the WebSocket end-to-end tests share.

Server: runs the real sohub-server binary ($SOHUB_SERVER) on 127.0.0.1
port 0 with HTTP on, in a temporary directory, and stops it with SIGTERM
(its exit status must be 0: a sanitizer report makes it non-zero).

WS: a WebSocket client on a plain socket.  It writes every frame by
hand (any opcode, RSV bits, length form, masked or not) so malformed
input can be sent, and reads the server's frames with Debian's
python3-websockets (websockets.frames.Frame.parse: an implementation
independent of the server's, which checks that server frames are
unmasked and well formed, and inflates permessage-deflate with its own
zlib use).

Checks print TAP lines ("ok N - ...", "not ok N - ...") and count
failures; main() of each test exits 1 when any check failed.  Every
wait is bounded.
"""

import base64
import dataclasses
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def binary(name, env):
    """Path of a built binary: $env, else build/... under the source root."""
    p = os.environ.get(env)
    if p:
        return p
    default = {"SOHUB_SERVER": "build/app/sohub-server", "SOHUB_CLI": "build/app/cli/sohub-cli"}
    return os.path.join(ROOT, default[env])


# ---------------------------------------------------------------- checks

class Checks:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, cond, what):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, what), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, what), flush=True)
        return cond

    def eq(self, got, want, what):
        ok = got == want
        if not ok:
            what = "%s (got %r, want %r)" % (what, got, want)
        return self.check(ok, what)

    def done(self):
        print("1..%d" % self.n, flush=True)
        if self.failed:
            print("# %d of %d checks failed" % (self.failed, self.n), flush=True)
        return 1 if self.failed else 0


# ---------------------------------------------------------------- server

class Server:
    """sohub-server on 127.0.0.1, RTMP and HTTP on free ports."""

    def __init__(self, config="", sets=None, log_level="info"):
        self.dir = tempfile.mkdtemp(prefix="sohub-ws-")
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data)
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "server.log")
        self.config_path = os.path.join(self.dir, "sohub.ini")
        with open(self.config_path, "w") as f:
            f.write(config)
        args = [binary("server", "SOHUB_SERVER"), "--listen", "127.0.0.1:0",
                "--port-file", self.port_file, "--data-dir", self.data,
                "--config", self.config_path, "--log-level", log_level,
                "--set", "http_listen=127.0.0.1:0"]
        for k, v in (sets or {}).items():
            args += ["--set", "%s=%s" % (k, v)]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.rtmp_port = self.http_port = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with open(self.port_file) as f:
                    lines = f.read().split("\n")
                for ln in lines[1:]:
                    if ln.startswith("http "):
                        self.http_port = int(ln.split()[1])
                if lines[0].strip() and self.http_port:
                    self.rtmp_port = int(lines[0])
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        self.dump_log()
        raise RuntimeError("sohub-server did not start")

    def rtmp_url(self, app):
        return "rtmp://127.0.0.1:%d/%s" % (self.rtmp_port, app)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout):
        """True when needle shows up in the server log within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            time.sleep(0.05)
        return False

    def dump_log(self):
        for ln in self.log_text().splitlines()[-60:]:
            print("# server: " + ln, flush=True)

    def stop(self):
        """SIGTERM; returns the exit status (0 for a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        rc = self.proc.returncode
        if rc != 0 or "Sanitizer" in self.log_text() or "runtime error" in self.log_text():
            self.dump_log()
            if rc == 0:
                rc = 1
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


# ---------------------------------------------------------------- raw frames

def frame_bytes(opcode, payload=b"", fin=True, rsv=0, mask=True, length_form=None):
    """One client frame.  rsv: the three RSV bits as a number (4 = RSV1).
    length_form: None (the shortest), 16 or 64 to force an extended length."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    n = len(payload)
    m = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n < 65536 else 64
    if length_form == 7:
        head += bytes([m | n])
    elif length_form == 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def deflate(data):
    """permessage-deflate payload of one message, no context (RFC 7692 7.2.1)."""
    import zlib
    z = zlib.compressobj(wbits=-15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class Closed(Exception):
    pass


class _RawRSV1:
    """An 'extension' that leaves compressed payloads as they are and
    remembers RSV1, for tests that look at the bytes on the wire."""
    name = "raw"

    def __init__(self):
        self.rsv1 = False

    def decode(self, frame, *, max_size=None):
        self.rsv1 = frame.rsv1
        return dataclasses.replace(frame, rsv1=False)


class WS:
    """One WebSocket connection on a blocking socket with bounded waits."""

    def __init__(self, port, path="/ws", protocols=("sohub.v1",), extensions=None,
                 origin=None, headers=None, timeout=5.0, upgrade=True, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = StreamReader()
        self.eof = False
        self.exts = []
        self.deflate = False
        self.status = None
        self.headers = {}
        self.body = b""
        self.key = base64.b64encode(os.urandom(16)).decode()
        if not upgrade:
            return
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + self.key, "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        if extensions:
            lines.append("Sec-WebSocket-Extensions: " + extensions)
        if origin:
            lines.append("Origin: " + origin)
        for k, v in (headers or {}).items():
            lines = [ln for ln in lines if not ln.lower().startswith(k.lower() + ":")]
            if v is not None:
                lines.append("%s: %s" % (k, v))
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.read_response(timeout)

    # ---- HTTP ----
    def read_response(self, timeout=5.0):
        """Reads the status line and headers (and a body by Content-Length)."""
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            chunk = self._recv_some(deadline)
            if not chunk:
                raise Closed("connection closed before the HTTP response")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((self.key + GUID).encode()).digest()).decode()
            if self.headers.get("sec-websocket-accept") != want:
                raise RuntimeError("bad Sec-WebSocket-Accept")
            ext = self.headers.get("sec-websocket-extensions", "")
            if ext.startswith("permessage-deflate"):
                self.deflate = True
                self.exts = [PerMessageDeflate(True, True, 15, 15)]
            self.reader.feed_data(rest)
        else:
            n = int(self.headers.get("content-length", "0"))
            while len(rest) < n:
                chunk = self._recv_some(deadline)
                if not chunk:
                    break
                rest += chunk
            self.body = rest[:n]
        return self.status

    # ---- bytes ----
    def send_raw(self, data):
        self.sock.sendall(data)

    def _recv_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the server in time")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no data from the server in time")
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    # ---- frames ----
    def send_frame(self, opcode, payload=b"", **kw):
        self.send_raw(frame_bytes(opcode, payload, **kw))

    def send_text(self, text, compress=None):
        data = text.encode() if isinstance(text, str) else text
        if compress is None:
            compress = False
        if compress:
            self.send_frame(OP_TEXT, deflate(data), rsv=4)
        else:
            self.send_frame(OP_TEXT, data)

    def send_json(self, obj, compress=None):
        self.send_text(json.dumps(obj), compress)

    def recv_frame(self, timeout=5.0, raw=False):
        """The next frame from the server (websockets' parser, which also
        inflates); raises Closed on EOF, TimeoutError on time-out.  raw:
        a compressed payload is returned as it came, with rsv1 set."""
        deadline = time.monotonic() + timeout
        keep = _RawRSV1()
        gen = Frame.parse(self.reader.read_exact, mask=False,
                          extensions=[keep] if raw else self.exts)
        try:
            next(gen)
            while True:
                if self.eof:
                    self.reader.feed_eof()
                else:
                    chunk = self._recv_some(deadline)
                    if chunk:
                        self.reader.feed_data(chunk)
                    else:
                        self.eof = True
                        self.reader.feed_eof()
                next(gen)
        except StopIteration as e:
            if raw:
                return dataclasses.replace(e.value, rsv1=keep.rsv1)
            return e.value
        except EOFError:
            self.eof = True
            raise Closed("TCP closed")

    def recv_msg(self, timeout=5.0, answer_pings=True):
        """(opcode, data) of the next message, fragments joined; pings are
        answered and skipped."""
        deadline = time.monotonic() + timeout
        parts, op = [], None
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == Opcode.PING and answer_pings:
                self.send_frame(OP_PONG, f.data)
                continue
            if f.opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
                return int(f.opcode), f.data
            if op is None:
                op = int(f.opcode)
            parts.append(f.data)
            if f.fin:
                return op, b"".join(parts)

    def recv_json(self, timeout=5.0):
        op, data = self.recv_msg(timeout)
        if op == OP_CLOSE:
            c = Close.parse(data) if data else None
            raise Closed("close frame %s" % (c,))
        if op != OP_TEXT:
            raise RuntimeError("expected a text message, got opcode %d" % op)
        return json.loads(data.decode())

    def wait_json(self, pred, timeout=5.0):
        """Reads messages until pred(msg) holds; returns it (others dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv_json(max(0.01, deadline - time.monotonic()))
            if pred(m):
                return m

    def expect_close(self, timeout=5.0):
        """Reads until a close frame: returns (code or None, reason bytes).
        Data frames before it are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == Opcode.CLOSE:
                if len(f.data) >= 2:
                    return struct.unpack("!H", f.data[:2])[0], f.data[2:]
                return None, f.data

    def wait_eof(self, timeout=5.0):
        """True when the server closes TCP within timeout (input dropped)."""
        deadline = time.monotonic() + timeout
        if self.eof:
            return True
        try:
            while True:
                if not self._recv_some(deadline):
                    self.eof = True
                    return True
        except TimeoutError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- sohub.v1

def connect_app(port, app, user=None, token=None, timeout=5.0, **kw):
    """A WS client connected to app (connect answered ok); returns (ws, result)."""
    ws = WS(port, **kw)
    if ws.status != 101:
        raise RuntimeError("upgrade refused: %d" % ws.status)
    msg = {"op": "connect", "id": 1, "app": app}
    if user is not None:
        msg["user"] = user
    if token is not None:
        msg["token"] = token
    ws.send_json(msg)
    res = ws.wait_json(lambda m: m.get("op") == "result" and m.get("id") == 1, timeout)
    return ws, res


def cli(args, timeout=15):
    """Runs sohub-cli; returns (exit status, stdout, stderr)."""
    p = subprocess.run([binary("cli", "SOHUB_CLI")] + args, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class Peer:
    """tests/ws/ws_rtmp_peer: an RTMP shared-object client driven by lines
    (values compared as AMF values by the peer itself)."""

    def __init__(self, port, app, enc):
        exe = os.environ.get("WS_RTMP_PEER") or os.path.join(ROOT, "build/tests/ws/ws_rtmp_peer")
        self.proc = subprocess.Popen([exe, str(port), app, str(enc)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""
        first = self._line(10)
        if first != "ok":
            raise RuntimeError("ws_rtmp_peer: %s" % first)

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("ws_rtmp_peer did not answer")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise Closed("ws_rtmp_peer ended: %s" % self.proc.stderr.read().decode())
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def cmd(self, line, timeout=15):
        """Sends one command; returns its answer line ("ok" or "fail ...")."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


class CliLines:
    """sohub-cli in the background, printing one JSON line per event."""

    def __init__(self, args):
        self.proc = subprocess.Popen([binary("cli", "SOHUB_CLI")] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""

    def next_event(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event from sohub-cli watch")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise Closed("sohub-cli watch ended: %s" % self.proc.stderr.read().decode())
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def wait_event(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            e = self.next_event(max(0.01, deadline - time.monotonic()))
            if pred(e):
                return e

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class CliWatch(CliLines):
    """`sohub-cli so watch NAME`: an RTMP subscriber whose events arrive
    as JSON lines."""

    def __init__(self, url, name, extra=()):
        super().__init__(["so", "watch", name, "-u", url, "--timeout", "600"] + list(extra))
