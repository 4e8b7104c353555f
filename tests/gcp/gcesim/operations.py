"""Compute operations: zonal, regional and global, their progress, `requestId` deduplication,
and the zoneOperations / regionOperations / globalOperations get and wait handlers.

Owns `Operations`: `create(...)` makes a PENDING operation (named like Google's
`operation-<ms>-<hex>-<hex>-<hex>`, `clientOperationId` = the requestId); it turns RUNNING after
`--op-pending` seconds; the resource owner calls `finish(op, errors=None, http=None)` to make it
DONE (with `error.errors[]`, `httpErrorStatusCode` and `httpErrorMessage` when it failed — the
insert call itself answered 200). `by_request(project, request_id)` returns the operation a
request id already made, so a retried insert returns the same operation and creates nothing
again. `wait` blocks until DONE or `--wait-max` seconds (Compute: about 2 minutes), then
answers the operation as it is. Every operation always has a `name` (google-cloud-rust's poller
panics on a non-DONE operation without one).
"""

import secrets
import time
import uuid

from . import catalog
from .errors import gerr, not_found
from .world import rfc3339

HTTP_MESSAGES = {400: "BAD REQUEST", 403: "FORBIDDEN", 404: "NOT FOUND", 409: "CONFLICT",
                 412: "PRECONDITION FAILED", 500: "INTERNAL SERVER ERROR",
                 503: "SERVICE UNAVAILABLE"}


def check_request_id(rid):
    if rid is None:
        return None
    try:
        u = uuid.UUID(str(rid))
    except ValueError:
        raise gerr(400, "invalid", f"Invalid value for field 'requestId': '{rid}'. The request"
                   " ID must be a valid UUID with the exception that zero UUID is not supported"
                   " (00000000-0000-0000-0000-000000000000).")
    if u.int == 0:
        raise gerr(400, "invalid", "Invalid value for field 'requestId': "
                   "'00000000-0000-0000-0000-000000000000'. Zero UUID is not supported.")
    return str(rid)


class Operations:
    def __init__(self, world):
        self.world = world
        self.ops = {}            # (project, scope, name) -> op dict
        self.requests = {}       # (project, request id) -> op dict

    def by_request(self, project, request_id):
        if request_id is None:
            return None
        with self.world.lock:
            return self.requests.get((project, request_id))

    def create(self, project, scope, op_type, target_link, target_id, user, request_id=None,
               extra=None):
        """scope: ("zone", z) | ("region", r) | ("global", None). Call with world.lock held
        or not; returns the op dict (internal; `public()` renders it)."""
        now = time.time()
        name = (f"operation-{int(now * 1000)}-{secrets.token_hex(7)[:13]}-"
                f"{secrets.token_hex(4)}-{secrets.token_hex(4)}")
        kind, where = scope
        if kind == "zone":
            base = catalog.link("projects", project, "zones", where)
        elif kind == "region":
            base = catalog.link("projects", project, "regions", where)
        else:
            base = catalog.link("projects", project, "global")
        op = {"kind": "compute#operation", "id": catalog.num_id("op", name), "name": name,
              "operationType": op_type, "targetLink": target_link, "status": "PENDING",
              "user": user, "progress": 0, "insertTime": rfc3339(now),
              "selfLink": f"{base}/operations/{name}",
              "_scope": scope, "_project": project, "_created": now, "_done_at": None}
        if target_id:
            op["targetId"] = target_id
        if kind == "zone":
            op["zone"] = catalog.zone_link(project, where)
        elif kind == "region":
            op["region"] = catalog.region_link(project, where)
        if request_id:
            op["clientOperationId"] = request_id
        if extra:
            op.update(extra)
        with self.world.lock:
            self.ops[(project, kind, where, name)] = op
            if request_id:
                self.requests[(project, request_id)] = op
        self.world.schedule(self.world.opts["op_pending"], lambda: self._running(op))
        return op

    def _running(self, op):
        with self.world.cv:
            if op["status"] == "PENDING":
                op["status"], op["progress"] = "RUNNING", 0
                op["startTime"] = rfc3339()
                self.world.cv.notify_all()

    def finish(self, op, errors=None, http=None):
        with self.world.cv:
            if op["status"] == "DONE":
                return
            if "startTime" not in op:
                op["startTime"] = rfc3339()
            op["status"], op["progress"] = "DONE", 100
            op["endTime"] = rfc3339()
            op["_done_at"] = time.time()
            if errors:
                op["error"] = {"errors": errors}
                code = http or 400
                op["httpErrorStatusCode"] = code
                op["httpErrorMessage"] = HTTP_MESSAGES.get(code, "BAD REQUEST")
            self.world.cv.notify_all()

    @staticmethod
    def public(op):
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def find(self, project, kind, where, name):
        with self.world.lock:
            op = self.ops.get((project, kind, where, name))
        if op is None:
            base = {"zone": f"projects/{project}/zones/{where}",
                    "region": f"projects/{project}/regions/{where}",
                    "global": f"projects/{project}/global"}[kind]
            raise not_found(f"{base}/operations/{name}")
        return op

    def wait(self, op, limit):
        deadline = time.monotonic() + limit
        with self.world.cv:
            while op["status"] != "DONE":
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.world.cv.wait(min(left, 1.0))
        return op

    def summaries(self):
        out = []
        for op in self.ops.values():
            s = {k: op.get(k) for k in ("name", "operationType", "status", "targetLink",
                                        "clientOperationId", "user")}
            s["scope"] = list(op["_scope"])
            if op.get("error"):
                s["errors"] = [e["code"] for e in op["error"]["errors"]]
            if op.get("instancesBulkInsertOperationMetadata"):
                s["bulk"] = op["instancesBulkInsertOperationMetadata"]
            out.append(s)
        return out


def register(app, world):
    ops = world.operations

    def handler(kind, wait):
        def fn(req):
            from simkit import Response
            app.require_project(req)
            where = req.p(kind) if kind != "global" else None
            if kind == "zone" and where not in catalog.ZONES:
                raise not_found(f"projects/{req.p('project')}/zones/{where}")
            if kind == "region" and where not in catalog.REGIONS:
                raise not_found(f"projects/{req.p('project')}/regions/{where}")
            op = ops.find(req.p("project"), kind, where, req.p("operation"))
            if wait:
                ops.wait(op, world.opts["wait_max"])
            with world.lock:
                return Response(200, ops.public(op))
        return fn

    for kind, res in (("zone", "zoneOperations"), ("region", "regionOperations"),
                      ("global", "globalOperations")):
        app.handle_op(f"compute.{res}.get", handler(kind, False))
        app.handle_op(f"compute.{res}.wait", handler(kind, True))
