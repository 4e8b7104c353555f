"""The control API under /_sim/ (no auth; loopback clients only).

Owns `handle_control(app, req)`:
  GET    /_sim/health                      {"ok": true, "sim": name}
  GET    /_sim/faults                      {"rules": [...]} with remaining counts and hits
  POST   /_sim/faults                      one rule or a list (see faults.py) -> 201 {"rules"}
  DELETE /_sim/faults                      remove every rule -> 204
  GET    /_sim/inventory                   the simulator's whole state (app.inventory())
  POST   /_sim/mark {"phase": "..."}       label later request-log lines (null clears)
  GET    /_sim/requests[?phase=P&since=T]  {"requests": [...]} (the request log)
  GET    /_sim/requests/summary            {phase: {requests, by_operation, by_status}}
  GET    /_sim/errors                      {"errors": [...]} (sim-errors.jsonl)
  GET|POST|DELETE /_sim/gate               the crash-point gate (gate.py)
plus the routes the cloud layer adds with app.add_control(method, regex, fn(req, **groups)).
Control requests are never written to requests.jsonl (it holds API traffic only).
"""

import ipaddress
import json

from .app import Response
from .faults import FaultError
from .gate import GateError
from .spec.base import NO_BODY


def _loopback(client):
    try:
        return ipaddress.ip_address((client or ("",))[0]).is_loopback
    except ValueError:
        return False


def _json(status, body):
    return Response(status, body, validate=False)


def _body(req):
    if not req.raw_body.strip():
        return None
    return json.loads(req.raw_body)


def handle_control(app, req):
    if not _loopback(req.client):
        return _json(403, {"error": "the control API answers loopback clients only"})
    try:
        return _route(app, req)
    except (ValueError, FaultError, GateError) as exc:
        return _json(400, {"error": str(exc)})


def _route(app, req):
    path, method = req.path.rstrip("/"), req.method
    for m, rx, fn in app.control_routes:
        hit = rx.match(path)
        if hit and m == method:
            out = fn(req, **hit.groupdict())
            return out if isinstance(out, Response) else _json(200, out)
    if path == "/_sim/health" and method == "GET":
        return _json(200, {"ok": True, "sim": app.name})
    if path == "/_sim/faults":
        if method == "GET":
            return _json(200, {"rules": app.faults.snapshot()})
        if method == "POST":
            body = _body(req)
            if body is None:
                raise ValueError("POST /_sim/faults needs a rule object or a list of rules")
            return _json(201, {"rules": app.faults.add(body)})
        if method == "DELETE":
            app.faults.clear()
            return Response(204, NO_BODY, validate=False)
    if path == "/_sim/inventory" and method == "GET":
        return _json(200, app.inventory())
    if path == "/_sim/mark" and method == "POST":
        body = _body(req) or {}
        phase = body.get("phase") if isinstance(body, dict) else None
        if phase is not None and not isinstance(phase, str):
            raise ValueError("phase must be a string or null")
        return _json(200, {"phase": app.requests.mark(phase)})
    if path == "/_sim/requests" and method == "GET":
        since = float(req.q("since", 0) or 0)
        return _json(200, {"requests": app.requests.entries(req.q("phase"), since)})
    if path == "/_sim/requests/summary" and method == "GET":
        return _json(200, app.requests.summary())
    if path == "/_sim/gate":
        if method == "GET":
            return _json(200, app.gate.state())
        if method == "POST":
            return _json(200, app.gate.arm(_body(req) or {}))
        if method == "DELETE":
            return _json(200, app.gate.disarm())
    if path == "/_sim/errors" and method == "GET":
        return _json(200, {"errors": app.errors.entries()})
    return _json(404, {"error": f"no control route {method} {req.path}"})
