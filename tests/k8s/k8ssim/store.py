"""The object store of the simulated API server (thread-safe, one global resourceVersion).

Owns: the resource table (`RESOURCES`: kind -> plural, group/version, scope, schema), `ApiError`
(an error that becomes a `Status`), and `Store`, the single place where objects are created,
updated, patched, deleted (graceful pods, finalizers, Foreground/Orphan propagation markers) and
finally removed. Every write goes through `validate.Admission` (defaults + semantic rules +
OpenAPI schema + unknown-field check), bumps the global resourceVersion, is appended to the watch
history and is announced to subscribers outside the lock. The garbage collector (gc.py) acts on
those announcements. Interface (see /tmp/k8s-contract.md): get, list, create, mutate, remove,
subscribe, record_event; plus replace, patch, delete, list_page, history_since for the REST layer.
"""

import base64
import collections
import contextlib
import copy
import datetime
import json
import os
import random
import threading
import time
import uuid

from . import selectors


class Resource:
    """One REST resource: kind, plural, API group/version, scope, schema names."""

    def __init__(self, kind, plural, group, version, namespaced, schema, short=(), subresources=(),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update",
                        "watch"), singular=None, categories=()):
        self.kind, self.plural, self.group, self.version = kind, plural, group, version
        self.namespaced, self.schema, self.short = namespaced, schema, list(short)
        self.subresources, self.verbs = list(subresources), list(verbs)
        self.singular = singular or kind.lower()
        self.categories = list(categories)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self):
        return "status" in self.subresources


_CORE = "io.k8s.api.core.v1."
RESOURCES = {
    "Pod": Resource("Pod", "pods", "", "v1", True, _CORE + "Pod", ["po"],
                    ["status", "log", "portforward"], categories=["all"]),
    "Service": Resource("Service", "services", "", "v1", True, _CORE + "Service", ["svc"],
                        ["status"], verbs=("create", "delete", "deletecollection", "get", "list",
                                           "patch", "update", "watch"), categories=["all"]),
    "Secret": Resource("Secret", "secrets", "", "v1", True, _CORE + "Secret"),
    "ConfigMap": Resource("ConfigMap", "configmaps", "", "v1", True, _CORE + "ConfigMap", ["cm"]),
    "Namespace": Resource("Namespace", "namespaces", "", "v1", False, _CORE + "Namespace", ["ns"],
                          ["status"], verbs=("create", "delete", "get", "list", "patch", "update",
                                             "watch")),
    "Event": Resource("Event", "events", "", "v1", True, _CORE + "Event", ["ev"]),
    "Node": Resource("Node", "nodes", "", "v1", False, _CORE + "Node", ["no"], ["status"]),
    "Endpoints": Resource("Endpoints", "endpoints", "", "v1", True, _CORE + "Endpoints", ["ep"],
                          singular="endpoints"),
    # The operator's CRD declares no status subresource (only `scale`, not served here): status
    # is written through the object itself, as kopf does.
    "DaskCluster": Resource("DaskCluster", "daskclusters", "kubernetes.dask.org", "v1", True,
                            None, ["daskcluster", "dsk"], []),
}
LIST_SCHEMA = {"Pod": "PodList", "Service": "ServiceList", "Secret": "SecretList",
               "ConfigMap": "ConfigMapList", "Namespace": "NamespaceList", "Event": "EventList",
               "Node": "NodeList", "Endpoints": "EndpointsList"}
# Kinds whose DELETE answers with the deleted object (ReturnDeletedObject in the real registry).
RETURNS_DELETED_OBJECT = {"Pod", "Service", "Namespace", "Node", "DaskCluster"}
# Kinds that carry metadata.generation (bumped when spec changes).
HAS_GENERATION = {"Pod", "DaskCluster"}


def by_plural(group, plural):
    """The Resource served at (group, plural), or None."""
    for res in RESOURCES.values():
        if res.group == group and res.plural == plural:
            return res
    return None


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_in(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An API failure; `to_status()` gives the metav1.Status the server answers with."""

    def __init__(self, status, reason, message, details=None, headers=None):
        super().__init__(message)
        self.status, self.reason, self.message = int(status), reason, message
        self.details = details or {}
        self.headers = headers or {}

    def to_status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.status}
        if self.details:
            st["details"] = self.details
        return st

    def __repr__(self):
        return f"ApiError({self.status}, {self.reason!r}, {self.message!r})"


def not_found(res, name):
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    return ApiError(404, "NotFound", f'{res.plural}{"." + res.group if res.group else ""} "{name}" not found', d)


def _qualified(res):
    return res.plural + ("." + res.group if res.group else "")


def conflict(res, name):
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(res)} "{name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again", d)


_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class Store:
    """Thread-safe object store; see the module docstring and the shared contract."""

    HISTORY = int(os.environ.get("K8S_SIM_WATCH_HISTORY", "20000"))   # events kept for watches

    def __init__(self, admission, errors=None):
        self.admission = admission      # validate.Admission
        self.errors = errors or (lambda kind, detail: None)
        self._lock = threading.RLock()
        self._objs = {}                 # (kind, ns, name) -> obj
        self._uids = {}                 # uid -> (kind, ns, name)
        self._rv = 1
        self._history = collections.deque(maxlen=self.HISTORY)   # (rv, type, kind, ns, obj)
        self._compacted_rv = 1          # events at or below this rv are gone from history
        self._subs = []
        self._pending_removal = set()   # keys whose final removal waits for finalizers
        self._local = threading.local()
        self.admission.store = self

    # ----- helpers -----
    @staticmethod
    def _key(kind, namespace, name):
        return (kind, namespace or "", name)

    def resource(self, kind):
        res = RESOURCES.get(kind)
        if res is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({kind})")
        return res

    @property
    def resource_version(self):
        with self._lock:
            return str(self._rv)

    def _commit(self, etype, kind, obj, pending):
        """Bump the rv, store/remove, record history; caller holds the lock."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = self._key(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if etype == "DELETED":
            self._objs.pop(key, None)
            self._uids.pop(obj["metadata"]["uid"], None)
            self._pending_removal.discard(key)
        else:
            self._objs[key] = obj
            self._uids[obj["metadata"]["uid"]] = key
        if len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0][0]
        self._history.append((self._rv, etype, kind, key[1], copy.deepcopy(obj)))
        pending.append((etype, kind, copy.deepcopy(obj)))

    @contextlib.contextmanager
    def _txn(self):
        """The store lock, collecting change notifications; they are delivered to subscribers
        after the outermost transaction of this thread released the lock."""
        self._lock.acquire()
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.pending = []
        self._local.depth = depth + 1
        pending = self._local.pending
        try:
            yield pending
        finally:
            self._local.depth = depth
            self._lock.release()
            if depth == 0 and pending:
                self._notify(pending)

    def _notify(self, pending):
        for etype, kind, obj in pending:
            for cb in list(self._subs):
                try:
                    cb(etype, kind, copy.deepcopy(obj))
                except Exception as exc:  # a subscriber bug must not break the writer
                    self.errors("subscriber", {"error": repr(exc), "event": etype, "kind": kind,
                                               "name": obj["metadata"].get("name")})

    def subscribe(self, callback):
        """callback(event_type, kind, obj) after every change, outside the store lock."""
        self._subs.append(callback)

    def unsubscribe(self, callback):
        try:
            self._subs.remove(callback)
        except ValueError:
            pass

    # ----- reads -----
    def get(self, kind, namespace, name):
        with self._lock:
            obj = self._objs.get(self._key(kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get_by_uid(self, uid):
        with self._lock:
            key = self._uids.get(uid)
            return copy.deepcopy(self._objs[key]) if key else None

    def exists_uid(self, uid):
        with self._lock:
            return uid in self._uids

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        """Objects of kind (in namespace, or all), filtered by selector strings; deep copies."""
        items, _ = self.list_rv(kind, namespace, label_selector, field_selector)
        return items

    def list_rv(self, kind, namespace=None, label_selector=None, field_selector=None):
        """(items sorted by namespace/name, resourceVersion of the snapshot)."""
        try:
            lreq = selectors.parse_label_selector(label_selector)
            freq = selectors.parse_field_selector(field_selector, kind)
        except selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc))
        with self._lock:
            out = []
            for (k, ns, _name), obj in sorted(self._objs.items()):
                if k != kind or (namespace and ns != namespace):
                    continue
                if not selectors.label_match(lreq, obj["metadata"].get("labels")):
                    continue
                if not selectors.field_match(freq, obj):
                    continue
                out.append(copy.deepcopy(obj))
            return out, str(self._rv)

    def list_page(self, kind, namespace, label_selector, field_selector, limit, cont):
        """A page of a list: (items, rv, continue_token or None, remaining or None)."""
        start, list_rv = None, None
        if cont:
            try:
                tok = json.loads(base64.b64decode(cont + "=" * (-len(cont) % 4)))
                start, list_rv = tuple(tok["start"]), tok["rv"]
            except Exception:
                raise ApiError(400, "BadRequest", "continue key is not valid: illegal base64 data")
            if int(list_rv) <= self._compacted_rv:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to "
                               "display a consistent list result. You can start a new list "
                               "without the continue parameter.")
        items, rv = self.list_rv(kind, namespace, label_selector, field_selector)
        if start is not None:
            items = [o for o in items
                     if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        rv = list_rv or rv
        if limit and len(items) > limit:
            page, rest = items[:limit], items[limit:]
            last = page[-1]["metadata"]
            tok = json.dumps({"rv": rv, "start": [last.get("namespace", ""), last["name"]]})
            return page, rv, base64.b64encode(tok.encode()).decode().rstrip("="), len(rest)
        return items, rv, None, None

    def history_since(self, rv, kind, namespace=None):
        """Watch events after rv: (list of (rv, type, obj), current rv); 410 when rv is compacted."""
        rv = int(rv)
        with self._lock:
            if rv < self._compacted_rv:
                raise ApiError(410, "Expired", f"too old resource version: {rv} ({self._rv})")
            return ([(r, t, copy.deepcopy(o)) for (r, t, k, ns, o) in self._history
                     if r > rv and k == kind and (not namespace or ns == namespace)], self._rv)

    def dependents(self, uid):
        """Objects having an ownerReference with this uid."""
        with self._lock:
            return [copy.deepcopy(o) for o in self._objs.values()
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def all_objects(self):
        with self._lock:
            return [(k[0], copy.deepcopy(o)) for k, o in sorted(self._objs.items())]

    # ----- writes -----
    def create(self, kind, namespace, obj, dry_run=False, field_manager=None, internal=False):
        """Admit and store a new object; returns the stored copy. Raises ApiError."""
        res = self.resource(kind)
        obj = copy.deepcopy(obj)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the object provided is not a JSON object")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", kind)
        if obj["kind"] != kind or obj["apiVersion"] != res.api_version:
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj['apiVersion']}) "
                           f"does not match the expected API version ({res.api_version})"
                           if obj["apiVersion"] != res.api_version else
                           f"the kind in the data ({obj['kind']}) does not match the expected "
                           f"kind ({kind})")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                               "match the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        with self._txn() as pending:
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(20):
                    cand = meta["generateName"] + "".join(random.choice(_GEN_CHARS) for _ in range(5))
                    if self._key(kind, namespace, cand) not in self._objs:
                        break
                meta["name"] = cand
            self.admission.admit_create(kind, obj, internal=internal)
            meta = obj["metadata"]
            key = self._key(kind, namespace if res.namespaced else None, meta["name"])
            if key in self._objs:
                raise ApiError(409, "AlreadyExists", f'{_qualified(res)} "{meta["name"]}" already exists',
                               {"name": meta["name"], "kind": res.plural,
                                **({"group": res.group} if res.group else {})})
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                meta.pop(f, None)
            if kind in HAS_GENERATION:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            if field_manager and not dry_run:
                meta["managedFields"] = [{"manager": field_manager, "operation": "Update",
                                          "apiVersion": res.api_version, "time": meta["creationTimestamp"],
                                          "fieldsType": "FieldsV1", "fieldsV1": {}}]
            if dry_run:
                meta["resourceVersion"] = ""
                meta.pop("resourceVersion")
                self.admission.check(kind, obj, "internal")
                return obj
            meta["resourceVersion"] = str(self._rv + 1)
            self.admission.check(kind, obj, "internal")
            self._commit("ADDED", kind, obj, pending)
            out = copy.deepcopy(obj)
        return out

    def replace(self, kind, namespace, name, obj, subresource=None, dry_run=False,
                check_rv=True, internal=False, field_manager=None):
        """PUT semantics: full replacement (or of .status only), rv precondition → 409."""
        res = self.resource(kind)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the object provided is not a JSON object")
        new = copy.deepcopy(obj)
        with self._txn() as pending:
            key = self._key(kind, namespace if res.namespaced else None, name)
            old = self._objs.get(key)
            if old is None:
                raise not_found(res, name)
            meta = new.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) "
                               f"does not match the name on the URL ({name})")
            if res.namespaced and meta.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                               "match the namespace sent on the request")
            new.setdefault("apiVersion", res.api_version)
            new.setdefault("kind", kind)
            if new["kind"] != kind or new["apiVersion"] != res.api_version:
                raise ApiError(400, "BadRequest", f"the API version in the data ({new['apiVersion']}) "
                               f"does not match the expected API version ({res.api_version})")
            body_rv = meta.get("resourceVersion")
            if check_rv and body_rv and body_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if subresource == "status":
                merged = copy.deepcopy(old)
                if "status" in new:
                    merged["status"] = new["status"]
                else:
                    merged.pop("status", None)
                new = merged
            else:
                if res.has_status and not internal:
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
                meta = new["metadata"]
                for f in ("uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
                    if f in old["metadata"]:
                        meta[f] = old["metadata"][f]
                    else:
                        meta.pop(f, None)
                meta["name"] = name
                if res.namespaced:
                    meta["namespace"] = namespace
                if old["metadata"].get("deletionTimestamp"):
                    added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
                    if added:
                        raise ApiError(422, "Invalid", f'{_qualified(res)} "{name}" is invalid: '
                                       "metadata.finalizers: Forbidden: no new finalizers can be "
                                       "added if the object is being deleted",
                                       {"name": name, "kind": kind, "causes": [
                                           {"reason": "FieldValueForbidden", "field": "metadata.finalizers",
                                            "message": "Forbidden: no new finalizers can be added if the object is being deleted"}]})
            meta = new["metadata"]
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if field_manager and not meta.get("managedFields"):
                meta.pop("managedFields", None)
            self.admission.admit_update(kind, old, new, subresource, internal=internal)
            meta = new["metadata"]
            if kind in HAS_GENERATION and subresource != "status" and not internal \
                    and new.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            self.admission.check(kind, new, "internal")
            if new == old:
                return copy.deepcopy(old)
            if dry_run:
                return new
            self._commit("MODIFIED", kind, new, pending)
            out = copy.deepcopy(new)
            if (out["metadata"].get("deletionTimestamp") and not out["metadata"].get("finalizers")
                    and (kind != "Pod" or key in self._pending_removal)):
                self._commit("DELETED", kind, copy.deepcopy(new), pending)
        return out

    def mutate(self, kind, namespace, name, fn, subresource=None):
        """fn(obj_copy) mutates in place; validated, rv bumped, watchers notified. 404 if missing."""
        res = self.resource(kind)
        with self._txn():
            cur = self._objs.get(self._key(kind, namespace if res.namespaced else None, name))
            if cur is None:
                raise not_found(res, name)
            work = copy.deepcopy(cur)
            fn(work)
            return self.replace(kind, namespace, name, work, subresource=subresource,
                                check_rv=False, internal=True)

    def patch(self, kind, namespace, name, patch_type, body, subresource=None, dry_run=False,
              field_manager=None):
        """Apply a JSON/merge/strategic patch, then replace (rv in the patch is a precondition)."""
        from . import patch as patchmod
        res = self.resource(kind)
        with self._txn():
            cur = self._objs.get(self._key(kind, namespace if res.namespaced else None, name))
            if cur is None:
                raise not_found(res, name)
            if kind == "DaskCluster" and patch_type == patchmod.STRATEGIC:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            new = patchmod.apply(patch_type, copy.deepcopy(cur), body,
                                 self.admission.schema_for(kind), self.admission.core)
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patch result is not a JSON object")
            new_rv = (new.get("metadata") or {}).get("resourceVersion")
            check = bool(new_rv) and new_rv != cur["metadata"]["resourceVersion"]
            if check:
                raise conflict(res, name)
            return self.replace(kind, namespace, name, new, subresource=subresource,
                                dry_run=dry_run, check_rv=False, field_manager=field_manager)

    def delete(self, kind, namespace, name, propagation=None, grace=None, preconditions=None,
               dry_run=False):
        """DELETE semantics. Returns (object_or_None, deleted_now: bool)."""
        res = self.resource(kind)
        with self._txn() as pending:
            key = self._key(kind, namespace if res.namespaced else None, name)
            cur = self._objs.get(key)
            if cur is None:
                raise not_found(res, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != cur["metadata"]["uid"]:
                raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {pre['uid']}, "
                               f"UID in object meta: {cur['metadata']['uid']}",
                               {"name": name, "kind": res.plural})
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                               f"{cur['metadata']['resourceVersion']}", {"name": name, "kind": res.plural})
            if propagation not in (None, "Background", "Foreground", "Orphan"):
                raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: '
                               f'propagationPolicy: Unsupported value: "{propagation}": supported '
                               'values: "Foreground", "Background", "Orphan", "nil"',
                               {"kind": "DeleteOptions", "group": "meta.k8s.io", "causes": [
                                   {"reason": "FieldValueNotSupported", "field": "propagationPolicy",
                                    "message": f'Unsupported value: "{propagation}"'}]})
            if grace is not None and grace < 0:
                grace = 1
            obj = copy.deepcopy(cur)
            meta = obj["metadata"]
            fins = list(meta.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
            if propagation == "Orphan" and "orphan" not in fins:
                fins.append("orphan")
            graceful = None
            if kind == "Pod":
                phase = (obj.get("status") or {}).get("phase")
                if obj.get("spec", {}).get("nodeName") and phase not in ("Succeeded", "Failed"):
                    graceful = grace if grace is not None else obj["spec"].get(
                        "terminationGracePeriodSeconds", 30)
                    if graceful is None:
                        graceful = 30
            if dry_run:
                return obj, False
            if meta.get("deletionTimestamp"):
                # already terminating: a pod may get a shorter grace period
                if graceful is not None and graceful < int(meta.get("deletionGracePeriodSeconds") or 0):
                    meta["deletionGracePeriodSeconds"] = graceful
                    meta["deletionTimestamp"] = rfc3339_in(graceful)
                    self._commit("MODIFIED", kind, obj, pending)
                out = copy.deepcopy(obj)
                return out, False
            if kind == "Namespace":
                meta["deletionTimestamp"] = now_rfc3339()
                meta["deletionGracePeriodSeconds"] = 0
                obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
                obj.setdefault("status", {})["phase"] = "Terminating"
                self._commit("MODIFIED", kind, obj, pending)
                out = copy.deepcopy(obj)
                return out, False
            if graceful is not None or fins:
                meta["finalizers"] = fins or None
                if not fins:
                    meta.pop("finalizers")
                g = graceful if graceful is not None else 0
                meta["deletionTimestamp"] = rfc3339_in(g)
                meta["deletionGracePeriodSeconds"] = g
                if kind in HAS_GENERATION:
                    meta["generation"] = int(meta.get("generation", 1)) + 1
                self._commit("MODIFIED", kind, obj, pending)
                out = copy.deepcopy(obj)
                return out, False
            self._commit("DELETED", kind, obj, pending)
            out = copy.deepcopy(obj)
        return out, True

    def remove(self, kind, namespace, name):
        """Final removal (e.g. after graceful pod termination); waits for finalizers if any."""
        res = self.resource(kind)
        with self._txn() as pending:
            key = self._key(kind, namespace if res.namespaced else None, name)
            cur = self._objs.get(key)
            if cur is None:
                return None
            if cur["metadata"].get("finalizers"):
                self._pending_removal.add(key)
                if not cur["metadata"].get("deletionTimestamp"):
                    obj = copy.deepcopy(cur)
                    obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                    obj["metadata"]["deletionGracePeriodSeconds"] = 0
                    self._commit("MODIFIED", kind, obj, pending)
            else:
                self._commit("DELETED", kind, copy.deepcopy(cur), pending)
        return None

    def drop_finalizer(self, kind, namespace, name, finalizer):
        """Remove one finalizer (GC); the object goes away when none remain and it is deleting."""
        def fn(o):
            fins = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            if fins:
                o["metadata"]["finalizers"] = fins
            else:
                o["metadata"].pop("finalizers", None)
        try:
            return self.mutate(kind, namespace, name, fn)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None

    def finish_namespace(self, name):
        """Namespace controller's last step: drop spec.finalizers and remove the namespace."""
        with self._txn() as pending:
            key = self._key("Namespace", None, name)
            cur = self._objs.get(key)
            if cur is None:
                return
            obj = copy.deepcopy(cur)
            obj.setdefault("spec", {}).pop("finalizers", None)
            if not obj["spec"]:
                obj.pop("spec")
            if obj["metadata"].get("finalizers"):
                self._pending_removal.add(key)
                self._commit("MODIFIED", "Namespace", obj, pending)
            else:
                self._commit("DELETED", "Namespace", obj, pending)

    # ----- events -----
    def record_event(self, involved, type_, reason, message, component):
        """Create (or bump count of) a core/v1 Event about `involved` (an object or a ref dict)."""
        meta = involved.get("metadata")
        if meta is not None:
            ref = {"kind": involved.get("kind"), "apiVersion": involved.get("apiVersion"),
                   "name": meta.get("name"), "namespace": meta.get("namespace"),
                   "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
        else:
            ref = {k: involved.get(k) for k in ("kind", "apiVersion", "name", "namespace", "uid",
                                                "resourceVersion", "fieldPath")}
        ref = {k: v for k, v in ref.items() if v not in (None, "")}
        ns = ref.get("namespace") or "default"
        ts = now_rfc3339()
        with self._txn():
            for (k, n, _), ev in self._objs.items():
                if (k == "Event" and n == ns and ev.get("reason") == reason
                        and ev.get("message") == message and ev.get("type") == type_
                        and ev["involvedObject"].get("uid") == ref.get("uid")
                        and ev["involvedObject"].get("name") == ref.get("name")
                        and ev["involvedObject"].get("fieldPath") == ref.get("fieldPath")):
                    def bump(o):
                        o["count"] = int(o.get("count") or 1) + 1
                        o["lastTimestamp"] = ts
                    return self.mutate("Event", ns, ev["metadata"]["name"], bump)
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}", "namespace": ns},
              "involvedObject": ref, "reason": reason, "message": message, "type": type_,
              "source": {"component": component, **({"host": "sim-node-1"} if component == "kubelet" else {})},
              "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
              "reportingComponent": component, "reportingInstance": "sim-node-1" if component == "kubelet" else ""}
        return self.create("Event", ns, ev, internal=True)
