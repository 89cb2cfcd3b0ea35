"""apiutil.py - what tests/api/test_api.py needs besides tests/ops/opsutil.py:
the OpenAPI contract (openapi/sohub-api.yaml) as the judge of every answer,
an API client that hands each answer to it, and the two kinds of
subscribers (sohub-cli over RTMP, python3-websockets over WebSocket), each
reading its events on a thread so the test itself stays sequential.

Every wait is bounded; every process is stopped by the test or at exit
(opsutil.spawn)."""

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time

import jsonschema
import websockets
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
from opsutil import Admin, check, note, spawn, wait_for  # noqa: E402


# ------------------------------------------------------------- the contract

class Contract:
    """The spec as a judge.  judge() takes one exchange (method, request
    target, request body, status, Content-Type, body) and returns what is
    wrong with it: a path or method the spec does not have, a status the
    operation does not list, a media type it does not declare, a body its
    schema refuses; for a 2xx answer also a request body the operation's
    requestBody schema refuses (a request the server took must be one the
    spec allows).  It records every (path, method) seen, for coverage().

    Schemas: OpenAPI 3.0 schema objects are JSON Schema draft 4 (draft
    wright-00) plus a few keywords.  Before validating with jsonschema's
    Draft4Validator a schema is rewritten (to_jsonschema): every local
    "$ref" ("#/...") is replaced by the schema it points to (the spec has
    no recursive schemas), and "nullable: true" becomes what it means in
    OpenAPI 3.0, null added to "type" (a list then) and to "enum" when
    there is one; OpenAPI 3.1 writes nullable schemas that way itself.
    The other OpenAPI keywords ("example", "readOnly", ...) are ones
    draft 4 ignores."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.covered = set()
        self.statuses = set()
        self.judged = 0
        self.templates = []
        for tpl, item in self.doc["paths"].items():
            rx = "^"
            for part in re.split(r"(\{[^}]+\})", tpl):
                if part.startswith("{"):
                    # the object name is the rest of the path ('/' allowed)
                    rx += "(.+)" if tpl.endswith("/objects/{name}") and part == "{name}" \
                        else "([^/]+)"
                else:
                    rx += re.escape(part)
            self.templates.append((tpl, re.compile(rx + "$"), item))

    def deref(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError("only local references: %s" % ref)
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            seen += 1
            if seen > 50:
                raise ValueError("reference loop at %s" % ref)
        return node

    def to_jsonschema(self, node, depth=0):
        if depth > 60:
            raise ValueError("schema too deep (a recursive reference?)")
        node = self.deref(node)
        if isinstance(node, list):
            return [self.to_jsonschema(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "nullable":
                continue
            if k in ("properties", "patternProperties", "definitions"):
                out[k] = {name: self.to_jsonschema(s, depth + 1) for name, s in v.items()}
            elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
                out[k] = self.to_jsonschema(v, depth + 1) if isinstance(v, (dict, list)) else v
            else:
                out[k] = copy.deepcopy(v)
        if node.get("nullable") is True:
            t = out.get("type")
            if t is not None:
                out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        return out

    def match(self, path):
        best = None
        for tpl, rx, item in self.templates:
            if rx.match(path):
                literal = len(re.sub(r"\{[^}]+\}", "", tpl))
                if not best or literal > best[0]:
                    best = (literal, tpl, item)
        return (best[1], best[2]) if best else (None, None)

    def validate(self, schema, value, what):
        try:
            jsonschema.Draft4Validator(self.to_jsonschema(schema)).validate(value)
        except jsonschema.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path)
            return ["%s: %s (at '%s')" % (what, e.message[:300], path)]
        return []

    def judge(self, method, target, req_body, status, ctype, body):
        self.judged += 1
        path = target.split("?", 1)[0]
        tpl, item = self.match(path)
        if not tpl:
            return ["path %s is not in the spec" % path]
        op = item.get(method.lower())
        if op is None:
            return ["%s %s is not in the spec" % (method, tpl)]
        self.covered.add((tpl, method.upper()))
        self.statuses.add((tpl, method.upper(), status))
        where = "%s %s -> %d" % (method, tpl, status)
        resp = op.get("responses", {}).get(str(status)) or op.get("responses", {}).get("default")
        if resp is None:
            return ["%s: status %d is not listed for the operation" % (where, status)]
        resp = self.deref(resp)
        problems = []
        content = resp.get("content")
        media = (ctype or "").split(";")[0].strip().lower()
        if not content:
            if body:
                problems.append("%s: the spec declares no body, got %d bytes" % (where,
                                                                               len(body)))
        elif media not in content:
            problems.append("%s: Content-Type %r, the spec declares %s" % (where, ctype,
                                                                          sorted(content)))
        elif media == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                return problems + ["%s: the body is not JSON (%s): %r" % (where, e, body[:200])]
            schema = content[media].get("schema")
            if schema is not None:
                problems += self.validate(schema, value, where + " body")
        if 200 <= status < 300 and req_body is not None:
            rb = op.get("requestBody")
            if rb is None:
                problems.append("%s: a request body the spec does not declare" % where)
            else:
                rb = self.deref(rb)
                schema = rb.get("content", {}).get("application/json", {}).get("schema")
                try:
                    sent = json.loads(req_body)
                except ValueError:
                    sent = None
                    problems.append("%s: accepted a body that is not JSON" % where)
                if schema is not None and sent is not None:
                    problems += self.validate(schema, sent, where + " request body")
        return problems

    def operations(self):
        ops = set()
        for tpl, item in self.doc["paths"].items():
            for m in ("get", "put", "post", "delete", "patch", "head", "options"):
                if m in item:
                    ops.add((tpl, m.upper()))
        return ops


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def code(self):
        """The error code of an error answer, None otherwise."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        return "%d %s" % (self.status, self.body[:200].decode("utf-8", "replace").strip())


class Api:
    """A keep-alive HTTP/1.1 client of the admin listener whose every
    answer goes to the contract.  An exchange the test makes on purpose
    outside the spec (a path or method the API does not have) passes
    off_spec=True: its answer must then be a JSON error (the spec's Error
    schema) with a 4xx status instead."""

    def __init__(self, port, key, contract):
        self.admin = Admin(port, None)
        self.key = key
        self.contract = contract

    def call(self, method, target, body=None, headers=None, key="default", off_spec=False,
             raw=None):
        h = dict(headers or {})
        k = self.key if key == "default" else key
        if k:
            h["Authorization"] = "Bearer " + k
        if raw is not None:
            data = raw
        elif body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        else:
            data = None
        if isinstance(data, str):
            data = data.encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        status, hdrs, out = self.admin.request_full(method, target, data, h)
        a = Answer(status, hdrs, out)
        if status == 0:
            check(False, "%s %s: an answer (the request failed)" % (method, target))
            return a
        if off_spec:
            problems = []
            if not 400 <= status < 500:
                problems.append("off-spec %s %s: status %d, not a 4xx" % (method, target,
                                                                            status))
            problems += self.contract.validate({"$ref": "#/components/schemas/Error"},
                                               a.json, "off-spec %s %s body" % (method,
                                                                               target))
            self.contract.judged += 1
        else:
            problems = self.contract.judge(method, target, data, status,
                                           hdrs.get("content-type"), out)
        for p in problems:
            check(False, "contract: " + p)
        return a

    def close(self):
        self.admin.close()


# ------------------------------------------------------------ subscribers

class CliProc:
    """A sohub-cli child whose stdout lines (JSON) are collected."""

    def __init__(self, argv):
        self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.events = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    def wait(self, pred, timeout=5.0):
        """The first event for which pred is true (waiting up to timeout)."""
        def find():
            for ev in list(self.events):
                if pred(ev):
                    return ev
            return None
        return wait_for(find, timeout)

    def exited(self, timeout=5.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class WsClient:
    """A sohub.v1 WebSocket client (python3-websockets) on a thread of its
    own: every message it receives goes to .msgs, the close code to
    .close_code once the server closed it."""

    def __init__(self, port, app, user):
        self.port, self.app, self.user = port, app, user
        self.msgs = []
        self.connected = None
        self.close_code = None
        self.loop = asyncio.new_event_loop()
        self.ws = None
        self.ready = threading.Event()
        self.t = threading.Thread(target=self._thread, daemon=True)
        self.t.start()
        self.ready.wait(10)

    def _thread(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        try:
            self.ws = await asyncio.wait_for(websockets.connect(
                "ws://127.0.0.1:%d/ws" % self.port, subprotocols=["sohub.v1"],
                open_timeout=5, max_size=None), 10)
            await self.ws.send(json.dumps({"op": "connect", "id": 1, "app": self.app,
                                           "user": self.user}))
            self.connected = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        except Exception as e:  # noqa: BLE001 - reported through .connected
            self.connected = {"error": repr(e)}
            self.ready.set()
            return
        self.ready.set()
        try:
            async for m in self.ws:
                try:
                    self.msgs.append(json.loads(m))
                except ValueError:
                    self.msgs.append({"unparsable": m})
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def send(self, obj):
        if not self.ws:
            return False
        fut = asyncio.run_coroutine_threadsafe(self.ws.send(json.dumps(obj)), self.loop)
        try:
            fut.result(5)
            return True
        except Exception:  # noqa: BLE001 - a closed socket
            return False

    def use(self, name, persistent):
        return self.send({"op": "so", "name": name, "version": 0, "persistent": persistent,
                          "events": [{"t": "use"}]})

    def so_events(self, name):
        """(version, event) of every so event received for name, in order."""
        out = []
        for m in list(self.msgs):
            if m.get("op") == "so" and m.get("name") == name:
                for ev in m.get("events", []):
                    out.append((m.get("version"), ev))
        return out

    def wait_so(self, name, pred, timeout=5.0):
        def find():
            for v, ev in self.so_events(name):
                if pred(v, ev):
                    return (v, ev)
            return None
        return wait_for(find, timeout)

    def wait_closed(self, timeout=5.0):
        self.t.join(timeout)
        return self.close_code

    def close(self):
        if self.ws and self.close_code is None:
            fut = asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001
                pass
        self.t.join(5)


def slots_of(ev):
    """{key: value} of a WebSocket change event."""
    return {kv[0]: kv[1] for kv in ev.get("slots", []) if isinstance(kv, list) and len(kv) == 2}


__all__ = ["Answer", "Api", "CliProc", "Contract", "WsClient", "check", "note", "slots_of",
           "spawn", "time", "wait_for"]
