"""clients.py - the browsers' clients the cluster tests drive: the sohub.v1
WebSocket protocol (tests/ws/wsutil.py) for a shared object (SoClient) and
for private messages and presence (ChatClient).  Real connections to real
nodes; each keeps what the node sent it, so a test can check it."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ws"))
from clusterutil import wait_for  # noqa: E402
from wsutil import WS, connect_app  # noqa: E402


class SoClient:
    """A WebSocket client of one shared object `name` in `room` on a node; a
    reader thread keeps the object's state as the messages describe it, and
    every message.  `closed` is set when the node went away.  persistent:
    the object's kind in every message sent."""

    def __init__(self, node, room, name, state=None, version=0, timeout=5.0, persistent=True):
        self.ws, res = connect_app(node.ports["http"], room, timeout=timeout)
        if not res.get("ok"):
            raise RuntimeError("connect refused: %r" % res)
        self.name = name
        self.persistent = persistent
        self.lock = threading.Lock()
        self.msgs = []          # every "so" message, in order
        self.state = dict(state or {})  # a client coming back keeps what it had
        self.version = version
        self.sent = {}          # key -> values sent and not answered yet, oldest first
        self.alive = True
        self.closed = False
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while self.alive:
            try:
                m = self.ws.recv_json(timeout=0.2)
            except Exception as e:  # timeouts, and the close at the end
                if isinstance(e, TimeoutError) or "timed out" in str(e):
                    continue
                self.closed = True
                return
            if m.get("op") != "so" or m.get("name") != self.name:
                continue
            with self.lock:
                self.msgs.append(m)
                for ev in m["events"]:
                    if ev["t"] == "clear":
                        self.state = {}
                    elif ev["t"] == "change":
                        for k, v in ev["slots"]:
                            self.state[k] = v
                    elif ev["t"] == "remove":
                        self.state.pop(ev["key"], None)
                    elif ev["t"] == "success":
                        # our own change was applied: the client's copy takes it
                        q = self.sent.get(ev["key"])
                        if q:
                            self.state[ev["key"]] = q.pop(0)
                self.version = m["version"]

    def send(self, events, version=None):
        self.ws.send_json({"op": "so", "name": self.name, "persistent": self.persistent,
                           "version": self.version if version is None else version,
                           "events": events})

    def use(self, version=0, timeout=5.0):
        n = len(self.msgs)
        self.send([{"t": "use"}], version)
        return wait_for(lambda: any(e["t"] == "use_success" for m in self.msgs[n:]
                                    for e in m["events"]), timeout)

    def change(self, slots, version=None):
        with self.lock:
            for k, v in slots.items():
                self.sent.setdefault(k, []).append(v)
        self.send([{"t": "change", "slots": [[k, v] for k, v in slots.items()]}], version)

    def events_since(self, n, kind):
        with self.lock:
            return [(m, e) for m in self.msgs[n:] for e in m["events"] if e["t"] == kind]

    def snapshot(self):
        with self.lock:
            return dict(self.state), self.version

    def close(self):
        self.alive = False
        self.t.join(2)
        self.ws.close()


class ChatClient:
    """One WebSocket connection of user `user` to instance `inst` of
    application `app` on a node; keeps every chat.onPrivate it got (in
    arrival order), every result, and the presence object's slots.  Read
    by the caller (pump, until): no thread."""

    def __init__(self, node, app, user, inst="room1", timeout=5.0):
        self.user = user
        self.ws = WS(node.ports["http"], timeout=timeout)
        if self.ws.status != 101:
            raise RuntimeError("upgrade refused: %s" % self.ws.status)
        self.next_id = 1
        self.results = {}
        self.msgs = []
        self.presence = {}
        self.presence_used = False
        self.closed = False
        self.ws.send_json({"op": "connect", "id": 1, "app": "%s/%s" % (app, inst), "user": user})
        self.next_id = 2
        r = self.wait_result(1, timeout)
        if not r or not r.get("ok"):
            raise RuntimeError("connect refused: %r" % (r,))

    def _take(self, m):
        op = m.get("op")
        if op == "result":
            self.results[m.get("id")] = m
        elif op == "call" and m.get("method") == "chat.onPrivate":
            self.msgs.append(m["args"][0])
        elif op == "so" and m.get("name") == "presence":
            for ev in m.get("events", []):
                t = ev.get("t")
                if t == "clear":
                    self.presence = {}
                elif t == "change":
                    for k, v in ev.get("slots", []):
                        self.presence[k] = v
                elif t == "remove":
                    self.presence.pop(ev.get("key"), None)
                elif t == "use_success":
                    self.presence_used = True

    def pump(self, timeout):
        """Reads what arrives within timeout (at least one read)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._take(self.ws.recv_json(left))
            except Exception:  # time-out, or the node went away
                if self.ws.eof:
                    self.closed = True
                return

    def until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return pred()
            try:
                self._take(self.ws.recv_json(min(left, 0.5)))
            except Exception:
                if self.ws.eof:
                    self.closed = True
        return True

    def call(self, method, *args):
        i = self.next_id
        self.next_id += 1
        self.ws.send_json({"op": "call", "id": i, "method": method, "args": list(args)})
        return i

    def wait_result(self, i, timeout=5.0):
        self.until(lambda: i in self.results, timeout)
        return self.results.get(i)

    def send(self, to, text, cid=None, timeout=5.0):
        args = [to, text] + ([cid] if cid is not None else [])
        r = self.wait_result(self.call("chat.sendPrivate", *args), timeout)
        return r

    def ack(self, i, timeout=5.0):
        return self.wait_result(self.call("chat.ack", i), timeout)

    def use_presence(self):
        self.ws.send_json({"op": "so", "name": "presence", "version": 0, "persistent": False,
                           "events": [{"t": "use"}]})
        return self.until(lambda: self.presence_used, 5.0)

    def ids(self):
        return [m["id"] for m in self.msgs]

    def close(self):
        self.ws.close()
