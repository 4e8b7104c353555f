"""The request pipeline every simulator runs, with hooks for what differs per cloud.

Owns `Request`, `Response`, `Headers` (case-insensitive), `ApiError`, and `SimApp`: a request is
answered in this order — control API (`/_sim/...`, control.py) · fault rules · the spec's
operation for (method, path) · `authenticate` · `admit` (rate limits) · JSON body parsing ·
request validation against the spec (problems → sim-errors.jsonl, then `on_invalid_request`
decides: refuse with the cloud's error, or tolerate and carry on) · the handler registered for
the operation id (an operation with no handler → 501 and a sim error: not simulated) ·
`decorate` (headers on every answer) · response validation against the spec (a mismatch is a
simulator bug: sim error, and a 500 instead) · the request log. Handlers run on the server's
threads, concurrently; they raise `ApiError` for API errors.

The cloud layer subclasses SimApp and overrides: authenticate, admit, error_body, decorate,
on_invalid_request, inventory, and optionally check_unmatched (validation of answers to routes
outside the spec, added with `add_route`). Nothing here knows a cloud.
"""

import hashlib
import json
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from .faults import Faults
from .gate import Gate
from .logs import ErrorLog, RequestLog, redact
from .spec.base import NO_BODY, Match

MAX_FAULT_DELAY = 120.0
OK_CACHE = 20000


class Headers(dict):
    """A dict with lower-case keys; get/[]/in are case-insensitive."""

    def __init__(self, items=()):
        super().__init__()
        for k, v in (items.items() if isinstance(items, dict) else items):
            self[k] = v

    def __setitem__(self, k, v):
        super().__setitem__(str(k).lower(), v)

    def __getitem__(self, k):
        return super().__getitem__(str(k).lower())

    def __contains__(self, k):
        return super().__contains__(str(k).lower())

    def get(self, k, default=None):
        return super().get(str(k).lower(), default)

    def pop(self, k, *default):
        return super().pop(str(k).lower(), *default)


@dataclass
class Request:
    method: str
    path: str
    query: dict                  # name -> [values]
    headers: Headers
    raw_body: bytes
    client: tuple                # (ip, port)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.time)
    body: Any = NO_BODY          # parsed JSON
    match: Optional[Match] = None
    params: dict = field(default_factory=lambda: {"path": {}, "query": {}, "header": {}})
    ctx: dict = field(default_factory=dict)   # for the cloud layer (token, ...)

    @property
    def op_id(self):
        return self.match.op.id if self.match else None

    def q(self, name, default=None):
        """A typed query parameter (validated by the spec) or the raw first value."""
        if name in self.params.get("query", {}):
            return self.params["query"][name]
        values = self.query.get(name)
        return values[0] if values else default

    def p(self, name):
        """A typed path parameter (validated by the spec) or the raw one."""
        if name in self.params.get("path", {}):
            return self.params["path"][name]
        return self.match.path_params.get(name) if self.match else None


@dataclass
class Response:
    status: int
    body: Any = NO_BODY          # JSON-able, or NO_BODY
    headers: Headers = field(default_factory=Headers)
    raw: Optional[bytes] = None  # a non-JSON body (text), sent as is and never validated
    content_type: Optional[str] = None
    validate: bool = True

    def __post_init__(self):
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers or {})


class ApiError(Exception):
    """An API error: the cloud layer renders (status, code, message) with error_body()."""

    def __init__(self, status, code, message, headers=None, body=NO_BODY):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        self.body = body


class SimApp:
    name = "sim"
    json_content_type = "application/json; charset=utf-8"

    def __init__(self, workdir, spec=None):
        self.workdir = workdir
        self.spec = spec
        self.requests = RequestLog(workdir)
        self.errors = ErrorLog(workdir)
        self.faults = Faults()
        self.gate = Gate()
        self._handlers = {}
        self._routes = []      # (method, compiled regex, fn, name) outside the spec
        self.control_routes = []   # (method, compiled regex, fn) under /_sim/, added by the cloud
        self.base_url = ""
        self._ok, self._ok_lock = set(), threading.Lock()

    # ----- registration -----
    def handle_op(self, op_id, fn):
        if self.spec is not None and op_id not in {o.id for o in self.spec.operations()}:
            raise ValueError(f"{op_id} is not an operation of {self.spec.name}")
        self._handlers[op_id] = fn

    def add_route(self, method, pattern, fn, name=None):
        import re
        self._routes.append((method.upper(), re.compile("^" + pattern + "$"), fn,
                             name or f"{method.upper()} {pattern}"))

    def add_control(self, method, pattern, fn):
        import re
        self.control_routes.append((method.upper(), re.compile("^" + pattern + "$"), fn))

    # ----- hooks (override in the cloud layer) -----
    def authenticate(self, req):
        """Raise ApiError when the request is not authenticated."""

    def admit(self, req):
        """Raise ApiError when the request is throttled (after authentication)."""

    def error_body(self, req, status, code, message):
        return {"code": code, "message": message}

    def decorate(self, req, resp):
        """Add headers every answer carries (rate limits, request ids)."""

    def on_invalid_request(self, req, problems):
        """A Response (or raise ApiError) to refuse; None to tolerate and carry on."""
        raise ApiError(400, "bad_request", "; ".join(str(p) for p in problems[:5]))

    def no_route(self, req, allowed):
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{req.method} is not allowed here",
                           headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, "not_found", "not found")

    def bad_json(self, req, exc):
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}")

    def check_unmatched(self, req, resp):
        """Problems of an answer to a route outside the spec (default: not checked)."""
        return []

    def inventory(self):
        return {}

    # ----- the pipeline -----
    def error_response(self, req, err):
        body = err.body if err.body is not NO_BODY else self.error_body(req, err.status,
                                                                        err.code, err.message)
        return Response(err.status, body, Headers(err.headers))

    def _fault_response(self, req, fault):
        status = fault["status"]
        if fault["has_body"]:
            body = fault["body"] if fault["body"] is not None else NO_BODY
        elif status == 204:
            body = NO_BODY
        else:
            body = self.error_body(req, status, *self.fault_code(status))
        return Response(status, body, Headers(fault["headers"]), validate=False)

    def fault_code(self, status):
        """(code, message) of the simulator's own body for an injected status."""
        return ("injected_fault", f"injected fault: HTTP {status}")

    def _find_route(self, req):
        for method, rx, fn, name in self._routes:
            if method == req.method and rx.match(req.path):
                return fn, name, rx.match(req.path).groupdict()
        return None

    def dispatch(self, req):
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            from .control import handle_control
            return handle_control(self, req)    # not API traffic: never in requests.jsonl
        admitted = self.gate.enter(req.method, req.path)
        if admitted is False:    # held at a crash point, then dropped: nothing processed
            return Response(503, NO_BODY, validate=False)
        try:
            return self._dispatch(req)
        finally:
            if admitted:
                self.gate.leave()

    def _dispatch(self, req):
        resp = None
        try:
            fault = self.faults.match(req.method, req.path)
            if fault is not None:
                req.ctx["fault"] = fault["id"]
                if fault["delay"]:
                    time.sleep(min(float(fault["delay"]), MAX_FAULT_DELAY))
                if fault["status"] is not None:
                    resp = self._fault_response(req, fault)
            if resp is None:
                resp = self._answer(req)
        except ApiError as err:
            resp = self.error_response(req, err)
        except Exception:
            self.errors.record("exception", {"request_id": req.id, "method": req.method,
                                             "path": req.path, "operation": req.op_id,
                                             "traceback": traceback.format_exc()[-4000:]})
            resp = self.error_response(req, ApiError(500, "server_error",
                                                     "simulator exception (see sim-errors.jsonl)"))
        try:
            self.decorate(req, resp)
        except Exception:
            self.errors.record("exception", {"request_id": req.id, "where": "decorate",
                                             "traceback": traceback.format_exc()[-4000:]})
        if resp.validate and resp.raw is None:
            resp = self._check_response(req, resp)
        self._finish(req, resp)
        return resp

    def _answer(self, req):
        if self.spec is None:
            match, allowed = None, []
        elif hasattr(self.spec, "match_request"):     # specs that dispatch on the query too
            match, allowed = self.spec.match_request(req.method, req.path, req.query)
        else:
            match, allowed = self.spec.match(req.method, req.path)
        req.match = match
        route = None if match else self._find_route(req)
        self.authenticate(req)
        self.admit(req)
        if match is None and route is None:
            self.no_route(req, allowed)
        if req.raw_body.strip():
            try:
                req.body = json.loads(req.raw_body)
            except ValueError as exc:
                self.bad_json(req, exc)
        if match is not None:
            problems, coerced = self.spec.check_request(match, req.query, req.headers, req.body)
            req.params = coerced
            if problems:
                entry = {"request_id": req.id, "method": req.method, "path": req.path,
                         "operation": match.op.id,
                         "problems": [p.to_dict() for p in problems[:20]],
                         "body": req.body if req.body is not NO_BODY else None}
                try:
                    refusal = self.on_invalid_request(req, problems)
                except ApiError as err:
                    entry["outcome"] = f"refused: {err.status} {err.code}"
                    self.errors.record("request-invalid", entry)
                    raise
                entry["outcome"] = ("tolerated: the real API accepts it" if refusal is None
                                    else f"refused: {refusal.status}")
                self.errors.record("request-invalid", entry)
                if refusal is not None:
                    return refusal
            fn = self._handlers.get(match.op.id)
            if fn is None:
                self.errors.record("not-simulated", {"request_id": req.id, "method": req.method,
                                                     "path": req.path, "operation": match.op.id})
                raise ApiError(501, "not_implemented",
                               f"{match.op.id} is in the spec but not simulated")
            return fn(req)
        fn, name, groups = route
        req.ctx["route"] = name
        req.ctx["route_params"] = groups
        return fn(req)

    def _check_response(self, req, resp):
        key = None
        if req.match is not None:
            # A body validated once (e.g. a droplet polled unchanged) is not validated again.
            key = (req.match.op.id, resp.status, tuple(sorted(resp.headers)),
                   hashlib.sha1(json.dumps(resp.body, sort_keys=True, default=str)
                                .encode()).hexdigest() if resp.body is not NO_BODY else None)
            with self._ok_lock:
                if key in self._ok:
                    return resp
            problems = self.spec.check_response(req.match, resp.status, resp.headers, resp.body)
        else:
            problems = self.check_unmatched(req, resp)
        if not problems:
            if key is not None:
                with self._ok_lock:
                    if len(self._ok) > OK_CACHE:
                        self._ok.clear()
                    self._ok.add(key)
            return resp
        self.errors.record("simulator-response-invalid", {
            "request_id": req.id, "method": req.method, "path": req.path,
            "operation": req.op_id, "status": resp.status,
            "problems": [p.to_dict() for p in problems[:20]]})
        bad = self.error_response(req, ApiError(
            500, "server_error", "the simulator produced a response its spec rejects "
            "(a simulator bug; see sim-errors.jsonl)"))
        bad.validate = False
        self.decorate(req, bad)
        return bad

    def _finish(self, req, resp):
        entry = {"time": round(req.started, 3), "method": req.method, "path": req.path,
                 "query": {k: (v[0] if len(v) == 1 else v) for k, v in req.query.items()},
                 "status": resp.status, "request_id": req.id,
                 "operation": req.op_id or req.ctx.get("route"),
                 "ms": round((time.time() - req.started) * 1000, 1),
                 "client": req.client[0] if req.client else None}
        if req.ctx.get("fault"):
            entry["fault"] = req.ctx["fault"]
        if req.body is not NO_BODY:
            entry["body"] = redact(req.body)
        if resp.status >= 400 and isinstance(resp.body, dict):
            entry["error"] = redact({k: resp.body[k] for k in list(resp.body)[:3]})
        self.requests.record(entry)
