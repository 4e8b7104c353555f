"""Long-running operations: their records, the headers that point at them, the status routes.

Owns `start(app, provider, location, kind, target)` (a new `InProgress` operation),
`finish(world, op_id, status, error=None)`, `headers(app, op, location_too)` and the routes:
- `GET /subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/operations/{id}` →
  200 `{name, status: InProgress|Succeeded|Failed|Canceled, startTime, endTime?, error?}`
  (the `Azure-AsyncOperation` of VM PUT/DELETE); with `monitor=true` it is the `Location` form:
  202 (+`Location`, `Retry-After`) until done, then 200 with no body (failed: the error);
- `GET /subscriptions/{s}/providers/Microsoft.Network/locations/{loc}/operations/{id}` →
  200 `{status, error?}`; `.../operationResults/{id}` (Network's `Location`) → 202 until done,
  then 204 (failed: the error);
- `GET /subscriptions/{s}/operationresults/{id}` (resource-group delete's `Location`) → 202
  until done, then 200 with no body.
Every 202 and every `InProgress` answer carries `Retry-After` (`--retry-after`). The status
is always 200 for a readable operation; an unknown id is 404.
"""

import time
import uuid

from simkit import ApiError, NO_BODY, Response

from .world import iso

STATUS_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["status"],
    "properties": {"name": {"type": "string"}, "status": {
        "enum": ["InProgress", "Succeeded", "Failed", "Canceled"]},
        "startTime": {"type": "string"}, "endTime": {"type": "string"},
        "error": {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                 "target": {"type": "string"}, "details": {"type": "array"}}}}}
VERSIONS = {"Microsoft.Compute": "2024-07-01", "Microsoft.Network": "2024-03-01",
            "Microsoft.Resources": "2024-07-01"}


def start(app, provider, location, kind, target):
    op = {"id": str(uuid.uuid4()), "provider": provider, "location": location, "kind": kind,
          "target": target, "status": "InProgress", "start": time.time(), "end": None,
          "error": None, "principal": None}
    with app.world.lock:
        app.world.ops[op["id"]] = op
    return op


def finish(world, op_id, status, error=None):
    with world.lock:
        op = world.ops.get(op_id)
        if op is not None and op["status"] == "InProgress":
            op["status"], op["end"], op["error"] = status, time.time(), error


def _base(app, op):
    return f"{app.base_url}/subscriptions/{app.world.sub}/providers/{op['provider']}/locations/" \
           f"{op['location']}"


def async_url(app, op):
    ver = VERSIONS[op["provider"]]
    if op["provider"] == "Microsoft.Compute":
        return f"{_base(app, op)}/operations/{op['id']}?p={uuid.uuid4()}&api-version={ver}"
    return f"{_base(app, op)}/operations/{op['id']}?api-version={ver}"


def location_url(app, op):
    ver = VERSIONS[op["provider"]]
    if op["provider"] == "Microsoft.Resources":
        return f"{app.base_url}/subscriptions/{app.world.sub}/operationresults/{op['id']}" \
               f"?api-version={ver}"
    if op["provider"] == "Microsoft.Compute":
        return f"{_base(app, op)}/operations/{op['id']}?p={uuid.uuid4()}&monitor=true" \
               f"&api-version={ver}"
    return f"{_base(app, op)}/operationResults/{op['id']}?api-version={ver}"


def headers(app, op, location_too=False, async_too=True):
    h = {"Retry-After": str(app.opts["retry_after"])}
    if async_too:
        h["Azure-AsyncOperation"] = async_url(app, op)
    if location_too:
        h["Location"] = location_url(app, op)
    return h


def _op(app, op_id, provider=None):
    with app.world.lock:
        op = app.world.ops.get(op_id)
    if op is None or (provider and op["provider"].lower() != provider.lower()):
        raise ApiError(404, "NotFound" if provider != "Microsoft.Network" else
                       "OperationNotFound", f"The operation '{op_id}' could not be found.")
    return op


def _status_body(op, compute):
    body = {"status": op["status"]}
    if compute:
        body.update({"name": op["id"], "startTime": iso(op["start"])})
        if op["end"]:
            body["endTime"] = iso(op["end"])
    if op["error"]:
        body["error"] = dict(op["error"])
    return body


def _error(op):
    err = op["error"] or {"code": "OperationFailed", "message": "The operation failed."}
    return ApiError(400 if op["status"] == "Failed" else 409, err["code"], err["message"])


def status(app, req, provider, op_id):
    op = _op(app, op_id, provider)
    if provider.lower() == "microsoft.compute" and req.q("monitor") == "true":
        return location_answer(app, op, Response(200))
    h = {"Retry-After": str(app.opts["retry_after"])} if op["status"] == "InProgress" else {}
    return Response(200, _status_body(op, provider.lower() == "microsoft.compute"), headers=h)


def location_answer(app, op, final):
    if op["status"] == "InProgress":
        return Response(202, NO_BODY, headers={"Location": location_url(app, op),
                                               "Retry-After": str(app.opts["retry_after"])})
    if op["status"] != "Succeeded":
        raise _error(op)
    return final


def register(app):
    sub = r"/subscriptions/(?P<sub>[^/]+)"
    app.route("GET", sub + r"/providers/(?P<ns>Microsoft\.(?:Compute|Network))/locations/"
              r"(?P<loc>[^/]+)/operations/(?P<op>[^/]+)",
              lambda req: status(app, req, req.ctx["route_params"]["ns"],
                                 req.ctx["route_params"]["op"]),
              "lro: operation status", schema=STATUS_SCHEMA)
    app.route("GET", sub + r"/providers/Microsoft\.Network/locations/(?P<loc>[^/]+)/"
              r"operationResults/(?P<op>[^/]+)",
              lambda req: location_answer(app, _op(app, req.ctx["route_params"]["op"],
                                                   "Microsoft.Network"), Response(204)),
              "lro: network operation result")
    app.route("GET", sub + r"/operationresults/(?P<op>[^/]+)",
              lambda req: location_answer(app, _op(app, req.ctx["route_params"]["op"],
                                                   "Microsoft.Resources"), Response(200)),
              "lro: resource group operation result")
