"""The REST verbs of the simulated API server: one tornado handler for /api/v1/... and /apis/...

Owns URL parsing (cluster/namespaced collections, objects, subresources status/log/finalize),
create/get/list (selectors, limit/continue, Table output via tables.py)/watch (chunked JSON
lines, resourceVersion, timeoutSeconds, bookmarks, sendInitialEvents, ERROR 410 Expired)/
update/patch/delete/deletecollection, pod logs through `sim.kubelet.read_log`, and the output
check: every object returned is validated (validate.Admission.check_output) first.
"""

import asyncio
import json
import time

import tornado.iostream
import tornado.web

from . import patch as patchmod
from . import selectors, tables
from .server import BaseHandler
from .store import RESOURCES, RETURNS_DELETED_OBJECT, ApiError, by_plural, not_found

_BOOL_TRUE = ("true", "1", "True")


class Target:
    """What a URL names: resource, namespace, name, subresource."""

    def __init__(self, res, namespace, name, sub):
        self.res, self.namespace, self.name, self.sub = res, namespace, name, sub


def parse_path(path, sim):
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
        if parts[2] != "v1":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = None
    if group == "" and rest[:1] == ["namespaces"] and (len(rest) == 2 or (len(rest) == 3 and rest[2] in ("status", "finalize"))):
        return Target(RESOURCES["Namespace"], None, rest[1], rest[2] if len(rest) == 3 else None)
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    res = by_plural(group, rest[0])
    if res is None or (res.kind == "DaskCluster" and not sim.with_dask):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if namespace is not None and not res.namespaced:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and sub not in res.subresources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if res.namespaced and namespace is None and name is not None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Target(res, namespace, name, sub)


class ResourceHandler(BaseHandler):
    """All resource verbs; see the module docstring."""

    def initialize(self, sim, token):
        super().initialize(sim, token)
        self._closed = False
        self._wake = None

    def on_connection_close(self):
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    # ----- helpers -----
    def q(self, name, default=None):
        return self.get_query_argument(name, default)

    def target(self):
        return parse_path(self.request.path, self.sim)

    def body_json(self):
        raw = self.request.body or b""
        if not raw.strip():
            raise ApiError(400, "BadRequest", "the request body is empty")
        try:
            return json.loads(raw)
        except ValueError as exc:
            ctype = self.request.headers.get("Content-Type", "")
            if "yaml" in ctype:
                import yaml
                try:
                    return yaml.safe_load(raw)
                except yaml.YAMLError:
                    pass
            raise ApiError(400, "BadRequest", f"couldn't get version/kind; json parse error: {exc}")

    def dry_run(self):
        vals = self.get_query_arguments("dryRun")
        for v in vals:
            if v != "All":
                raise ApiError(400, "BadRequest", f'dryRun: Unsupported value: "{v}": supported values: "All"')
        return bool(vals)

    def store_call(self, fn, *args, **kw):
        adm = self.sim.admission
        adm.strict_fields = self.q("fieldValidation", "") == "Strict"
        try:
            return fn(*args, **kw)
        finally:
            adm.strict_fields = False

    def out(self, kind, obj):
        self.sim.admission.check_output(kind, obj)
        return obj

    def respond_obj(self, t, obj, status=200):
        self.out(t.res.kind, obj)
        if self.wants_table() and tables.supported(t.res.kind):
            return self.write_json(tables.table(t.res.kind, [obj], self.include_object(), None), status)
        self.write_json(obj, status)

    def wants_table(self):
        return "as=Table" in self.request.headers.get("Accept", "")

    def include_object(self):
        return self.q("includeObject", "Metadata")

    def guard(self):
        return not self._finished

    # ----- verbs -----
    async def get(self, *_):
        if self._finished:
            return
        t = self.target()
        if t.name is None:
            if self.q("watch", "") in _BOOL_TRUE:
                return await self.watch(t)
            return self.list(t)
        if t.sub == "log":
            return await self.logs(t)
        if t.sub == "portforward":
            raise ApiError(400, "BadRequest", "Upgrade request required")
        if self.q("watch", "") in _BOOL_TRUE:
            raise ApiError(405, "MethodNotAllowed", "watch on a single object: use the collection "
                           "with fieldSelector=metadata.name=NAME")
        obj = self.sim.store.get(t.res.kind, t.namespace, t.name)
        if obj is None:
            raise not_found(t.res, t.name)
        self.respond_obj(t, obj)

    def list(self, t):
        limit = int(self.q("limit", "0") or 0)
        items, rv, cont, remaining = self.sim.store.list_page(
            t.res.kind, t.namespace, self.q("labelSelector"), self.q("fieldSelector"), limit,
            self.q("continue"))
        for o in items:
            self.out(t.res.kind, o)
        meta = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        if self.wants_table() and tables.supported(t.res.kind):
            return self.write_json(tables.table(t.res.kind, items, self.include_object(), meta))
        if t.res.group == "":
            for o in items:    # typed lists carry no per-item kind/apiVersion, as the real server
                o.pop("kind", None)
                o.pop("apiVersion", None)
        body = {"kind": f"{t.res.kind}List", "apiVersion": t.res.api_version, "metadata": meta,
                "items": items}
        schema = self.sim.admission.list_schema(t.res.kind)
        if schema:
            self.sim.admission.check_schema_output(schema, {**body, "items": []})
        self.write_json(body)

    async def post(self, *_):
        if self._finished:
            return
        t = self.target()
        if t.name is not None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                           "requested resource")
        body = self.body_json()
        obj = self.store_call(self.sim.store.create, t.res.kind, t.namespace if t.res.namespaced else None,
                              body, dry_run=self.dry_run(), field_manager=self.q("fieldManager"))
        self.respond_obj(t, obj, 201)

    def named_target(self):
        """The target of a verb that needs an object's name (405 on a collection, as the API)."""
        t = self.target()
        if t.name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                           "requested resource")
        return t

    async def put(self, *_):
        if self._finished:
            return
        t = self.named_target()
        body = self.body_json()
        if t.sub == "finalize":
            return self.finalize(t, body)
        obj = self.store_call(self.sim.store.replace, t.res.kind, t.namespace, t.name, body,
                              subresource=t.sub, dry_run=self.dry_run(),
                              field_manager=self.q("fieldManager"))
        self.respond_obj(t, obj)

    def finalize(self, t, body):
        fins = (body.get("spec") or {}).get("finalizers") or []

        def fn(o):
            if fins:
                o.setdefault("spec", {})["finalizers"] = fins
            else:
                o.setdefault("spec", {}).pop("finalizers", None)
        obj = self.sim.store.mutate("Namespace", None, t.name, fn)
        if not fins and obj["metadata"].get("deletionTimestamp"):
            self.sim.store.finish_namespace(t.name)
        self.respond_obj(t, obj)

    async def patch(self, *_):
        if self._finished:
            return
        t = self.named_target()
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == patchmod.APPLY:
            err = ApiError(415, "UnsupportedMediaType", "the simulator does not implement "
                           "server-side apply (application/apply-patch+yaml); use a merge or "
                           "strategic merge patch")
            self.sim.errors("rejected", {"op": "patch", "kind": t.res.kind, "name": t.name,
                                         "status": 415, "message": err.message})
            raise err
        body = self.body_json()
        obj = self.store_call(self.sim.store.patch, t.res.kind, t.namespace, t.name, ctype, body,
                              subresource=t.sub, dry_run=self.dry_run(),
                              field_manager=self.q("fieldManager"))
        self.respond_obj(t, obj)

    async def delete(self, *_):
        if self._finished:
            return
        t = self.target()
        opts = {}
        if self.request.body and self.request.body.strip():
            opts = self.body_json()
            if not isinstance(opts, dict):
                raise ApiError(400, "BadRequest", "DeleteOptions must be an object")
            errs, unknown = self.sim.admission.schema_problems(
                "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", opts)
            if errs or unknown:
                msg = "; ".join([f"{p}: {m}" for p, m in errs] + [m for _, _, m in unknown])
                self.sim.errors("rejected", {"op": "delete", "kind": t.res.kind, "message": msg})
                raise ApiError(400, "BadRequest", f"strict decoding error: {msg}")
        prop = opts.get("propagationPolicy") or self.q("propagationPolicy")
        orphan = opts.get("orphanDependents")
        if orphan is None and self.q("orphanDependents") is not None:
            orphan = self.q("orphanDependents") in _BOOL_TRUE
        if orphan is not None and prop is None:
            prop = "Orphan" if orphan else "Background"
        grace = opts.get("gracePeriodSeconds")
        if grace is None and self.q("gracePeriodSeconds") is not None:
            try:
                grace = int(self.q("gracePeriodSeconds"))
            except ValueError:
                raise ApiError(400, "BadRequest", "gracePeriodSeconds must be an integer")
        dry = self.dry_run() or bool(opts.get("dryRun"))
        if t.name is None:
            return self.delete_collection(t, prop, grace, dry)
        obj, now = self.sim.store.delete(t.res.kind, t.namespace, t.name, propagation=prop,
                                         grace=grace, preconditions=opts.get("preconditions"),
                                         dry_run=dry)
        if now and t.res.kind not in RETURNS_DELETED_OBJECT:
            st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "details": {"name": t.name, "kind": t.res.plural, "uid": obj["metadata"]["uid"],
                              **({"group": t.res.group} if t.res.group else {})}}
            self.sim.admission.check_schema_output("io.k8s.apimachinery.pkg.apis.meta.v1.Status", st)
            return self.write_json(st)
        self.respond_obj(t, obj)

    def delete_collection(self, t, prop, grace, dry):
        if "deletecollection" not in t.res.verbs:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                           "requested resource")
        items = self.sim.store.list(t.res.kind, t.namespace, self.q("labelSelector"),
                                    self.q("fieldSelector"))
        out = []
        for o in items:
            try:
                d, _ = self.sim.store.delete(t.res.kind, o["metadata"].get("namespace"),
                                             o["metadata"]["name"], propagation=prop, grace=grace,
                                             dry_run=dry)
                out.append(self.out(t.res.kind, d))
            except ApiError as exc:
                if exc.status != 404:
                    raise
        for o in out:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        self.write_json({"kind": f"{t.res.kind}List", "apiVersion": t.res.api_version,
                         "metadata": {"resourceVersion": self.sim.store.resource_version}, "items": out})

    # ----- logs -----
    async def logs(self, t):
        pod = self.sim.store.get("Pod", t.namespace, t.name)
        if pod is None:
            raise not_found(t.res, t.name)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = self.q("container")
        if not container:
            if len(names) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod "
                               f"{t.name}, choose one of: [{' '.join(names)}]")
            container = names[0]
        elif container not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {t.name}")
        if self.sim.kubelet is None:
            raise ApiError(503, "ServiceUnavailable", "no kubelet is running")
        def intarg(name, minimum):
            v = self.q(name)
            if v is None:
                return None
            try:
                v = int(v)
            except ValueError:
                raise ApiError(400, "BadRequest", f"{name}: must be an integer")
            if v < minimum:
                raise ApiError(422, "Invalid", f'PodLogOptions "{t.name}" is invalid: {name}: '
                               f"Invalid value: {v}: must be greater than or equal to {minimum}")
            return v
        tail, limit = intarg("tailLines", 0), intarg("limitBytes", 1)
        since, since_time = intarg("sinceSeconds", 1), self.q("sinceTime")
        if since is not None and since_time:
            raise ApiError(422, "Invalid", f'PodLogOptions "{t.name}" is invalid: []: Forbidden: '
                           "at most one of `sinceTime` or `sinceSeconds` may be specified")
        previous = self.q("previous", "") in _BOOL_TRUE
        stamps = self.q("timestamps", "") in _BOOL_TRUE
        text = self.sim.kubelet.read_log(t.namespace, t.name, container, previous=previous,
                                         tail_lines=tail, timestamps=stamps, since_seconds=since,
                                         since_time=since_time, limit_bytes=limit)
        self.set_header("Content-Type", "text/plain")
        follow = self.q("follow", "") in _BOOL_TRUE
        if not follow:
            return self.finish(text)
        self.write(text)
        await self.flush()
        base = len(self.sim.kubelet.read_log(t.namespace, t.name, container, previous=previous,
                                             timestamps=stamps))
        while not self._closed:
            await asyncio.sleep(0.5)
            pod = self.sim.store.get("Pod", t.namespace, t.name)
            try:
                cur = self.sim.kubelet.read_log(t.namespace, t.name, container, previous=previous,
                                                timestamps=stamps)
            except ApiError:
                break
            if len(cur) < base:   # the container restarted: a new log file
                base = 0
            if len(cur) > base:
                self.write(cur[base:])
                base = len(cur)
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                break
            if pod is None or _container_done(pod, container):
                break
        if not self._finished and not self._closed:
            self.finish()

    # ----- watch -----
    async def watch(self, t):
        kind, store = t.res.kind, self.sim.store
        try:
            lreq = selectors.parse_label_selector(self.q("labelSelector"))
            freq = selectors.parse_field_selector(self.q("fieldSelector"), kind)
        except selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc))
        rv = self.q("resourceVersion", "")
        timeout = float(self.q("timeoutSeconds", "1800") or 1800)
        bookmarks = self.q("allowWatchBookmarks", "") in _BOOL_TRUE
        initial = self.q("sendInitialEvents", "") in _BOOL_TRUE
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()

        def cb(etype, k, obj):
            if k == kind:
                loop.call_soon_threadsafe(self._wake.set)
        store.subscribe(cb)
        self.set_header("Content-Type", "application/json")
        matched = set()

        def matches(o):
            return selectors.label_match(lreq, o["metadata"].get("labels")) and \
                selectors.field_match(freq, o)

        as_table = self.wants_table() and tables.supported(kind)

        def line(etype, obj):
            if as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
                obj = tables.table(kind, [obj], self.include_object(), None)
            self.write(json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n")

        try:
            if rv in ("", "0") or initial:
                items, cursor = store.list_rv(kind, t.namespace)
                cursor = int(cursor)
                for o in items:
                    if matches(o):
                        matched.add((o["metadata"].get("namespace"), o["metadata"]["name"]))
                        line("ADDED", self.out(kind, o))
                if initial and bookmarks:
                    line("BOOKMARK", {"kind": kind, "apiVersion": t.res.api_version, "metadata": {
                        "resourceVersion": str(cursor),
                        "annotations": {"k8s.io/initial-events-end": "true"}}})
            else:
                try:
                    cursor = int(rv)
                except ValueError:
                    raise ApiError(400, "BadRequest", f'resourceVersion: Invalid value: "{rv}": must be an integer')
                try:
                    store.history_since(cursor, kind, t.namespace)
                except ApiError as exc:
                    line("ERROR", self.status_obj(exc))
                    return self.finish()
                for o in store.list(kind, t.namespace):
                    if matches(o) and int(o["metadata"]["resourceVersion"]) <= cursor:
                        matched.add((o["metadata"].get("namespace"), o["metadata"]["name"]))
            await self.flush()
            last_bookmark = time.monotonic()
            while not self._closed:
                self._wake.clear()
                try:
                    events, current = store.history_since(cursor, kind, t.namespace)
                except ApiError as exc:
                    line("ERROR", self.status_obj(exc))
                    break
                for r, etype, o in events:
                    key = (o["metadata"].get("namespace"), o["metadata"]["name"])
                    ok = matches(o)
                    if etype == "DELETED":
                        if key in matched or ok:
                            matched.discard(key)
                            line("DELETED", self.out(kind, o))
                    elif ok:
                        line("ADDED" if key not in matched and etype == "ADDED" else
                             ("ADDED" if key not in matched else etype), self.out(kind, o))
                        matched.add(key)
                    elif key in matched:
                        matched.discard(key)
                        line("DELETED", self.out(kind, o))
                cursor = max(cursor, current)
                now = time.monotonic()
                if bookmarks and now - last_bookmark >= 5:
                    line("BOOKMARK", {"kind": kind, "apiVersion": t.res.api_version,
                                      "metadata": {"resourceVersion": str(cursor)}})
                    last_bookmark = now
                await self.flush()
                remaining = deadline - now
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), min(remaining, 5 if bookmarks else remaining))
                except asyncio.TimeoutError:
                    pass
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            store.unsubscribe(cb)
        if not self._finished and not self._closed:
            self.finish()


def _container_done(pod, container):
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            return "terminated" in (cs.get("state") or {}) and pod["spec"].get("restartPolicy") == "Never"
    return False
