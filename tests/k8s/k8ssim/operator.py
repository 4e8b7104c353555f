"""DaskCluster (kubernetes.dask.org/v1) support: structural validation now, the reconciler below.

Owns the DaskCluster structure check (spec.worker.replicas int >= 0, spec.worker.spec and
spec.scheduler.spec core/v1 PodSpecs, spec.scheduler.service a core/v1 ServiceSpec,
spec.idleTimeout int; unknown fields rejected), its defaults, and `Operator`, the mini-operator.
"""

from . import semantics


def pseudo_schema(core):
    return {}


def defaults(obj):
    from .defaults import pod_spec_defaults
    spec = obj.get("spec")
    if isinstance(spec, dict):
        for part in ("worker", "scheduler"):
            p = spec.get(part)
            if isinstance(p, dict) and isinstance(p.get("spec"), dict):
                pod_spec_defaults(p["spec"])
        if isinstance(spec.get("worker"), dict):
            spec["worker"].setdefault("replicas", 1)


_ALLOWED = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "spec": {"worker", "scheduler", "idleTimeout"},
    "spec.worker": {"replicas", "spec", "metadata"},
    "spec.scheduler": {"spec", "service", "metadata"},
    "spec.worker.metadata": {"labels", "annotations"},
    "spec.scheduler.metadata": {"labels", "annotations"},
    "status": {"phase"},
}


def structure_problems(admission, obj):
    """(path, message) problems of a DaskCluster's structure."""
    out = []

    def walk(value, path):
        allowed = _ALLOWED.get(path)
        if allowed is None:
            return
        if not isinstance(value, dict):
            out.append((path, "must be an object"))
            return
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if k not in allowed:
                out.append((sub, f'unknown field "{sub}"'))
            else:
                walk(v, sub)
    walk(obj, "")
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        errs, unknown = admission.schema_problems("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", meta)
        out += [(f"metadata.{p}", m) for p, m in errs] + [(f"metadata.{p}", f'unknown field "metadata.{p}"') for _, p, _m in unknown]
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        out.append(("spec", "Required value"))
        return out
    for part, fields in (("worker", ("spec",)), ("scheduler", ("spec", "service"))):
        p = spec.get(part)
        if not isinstance(p, dict):
            out.append((f"spec.{part}", "Required value"))
            continue
        for f in fields:
            sub = p.get(f)
            path = f"spec.{part}.{f}"
            if not isinstance(sub, dict):
                out.append((path, "Required value"))
                continue
            schema = "io.k8s.api.core.v1.PodSpec" if f == "spec" else "io.k8s.api.core.v1.ServiceSpec"
            errs, unknown = admission.schema_problems(schema, sub)
            out += [(f"{path}.{q}" if q else path, m) for q, m in errs]
            out += [(f"{path}.{q}", f'unknown field "{path}.{q}"') for _, q, _m in unknown]
        md = p.get("metadata")
        if isinstance(md, dict):
            for k in ("labels", "annotations"):
                if k in md and not (isinstance(md[k], dict) and all(isinstance(v, str) for v in md[k].values())):
                    out.append((f"spec.{part}.metadata.{k}", "must be a map of strings"))
    w = spec.get("worker")
    if isinstance(w, dict):
        r = w.get("replicas")
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            out.append(("spec.worker.replicas", "must be an integer >= 0"))
    it = spec.get("idleTimeout")
    if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 0):
        out.append(("spec.idleTimeout", "must be an integer >= 0"))
    st = obj.get("status")
    if isinstance(st, dict) and "phase" in st and not isinstance(st["phase"], str):
        out.append(("status.phase", "must be a string"))
    return out


def validate_semantics(obj, fe):
    spec = obj.get("spec") or {}
    for part in ("worker", "scheduler"):
        p = spec.get(part) or {}
        if isinstance(p.get("spec"), dict):
            semantics.validate_pod_spec(p["spec"], f"spec.{part}.spec", fe)
        md = p.get("metadata") or {}
        if isinstance(md.get("labels"), dict):
            semantics.check_labels(fe, f"spec.{part}.metadata.labels", md["labels"])
    svc = (spec.get("scheduler") or {}).get("service")
    if isinstance(svc, dict):
        semantics.validate_service_spec(svc, "spec.scheduler.service", fe)


# ----- the mini-operator -----

class Operator:
    """Reconciles DaskClusters like dask-kubernetes' operator: a scheduler Pod and Service
    `NAME-scheduler`, `spec.worker.replicas` worker Pods `NAME-default-worker-<hash>` with
    DASK_WORKER_NAME and DASK_SCHEDULER_ADDRESS, each owned (controller=true) by the DaskCluster;
    status.phase Created, then Running once the scheduler pod runs. Scaling follows
    spec.worker.replicas (newest workers are deleted first). Deletion is left to the GC."""

    def __init__(self, sim):
        import queue
        self.sim, self.store = sim, sim.store
        self._q = queue.Queue()
        self._thread = None
        self._stop = False

    def start(self):
        import threading
        self.store.subscribe(self._on_change)
        for dc in self.store.list("DaskCluster"):
            self._q.put((dc["metadata"]["namespace"], dc["metadata"]["name"]))
        self._thread = threading.Thread(target=self._run, name="sim-dask-operator", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop = True
        self._q.put(None)

    def _on_change(self, etype, kind, obj):
        meta = obj["metadata"]
        if kind == "DaskCluster" and etype != "DELETED":
            self._q.put((meta["namespace"], meta["name"]))
        elif kind in ("Pod", "Service") and (meta.get("labels") or {}).get("dask.org/cluster-name"):
            self._q.put((meta["namespace"], meta["labels"]["dask.org/cluster-name"]))

    def _run(self):
        import queue
        import traceback
        while not self._stop:
            try:
                item = self._q.get(timeout=1)
            except queue.Empty:
                continue
            if item is None:
                break
            try:
                self.reconcile(*item)
            except Exception as exc:
                from .store import ApiError
                if isinstance(exc, ApiError) and exc.status in (404, 409):
                    continue
                self.sim.errors("operator", {"cluster": f"{item[0]}/{item[1]}", "error": repr(exc),
                                             "trace": traceback.format_exc()})

    @staticmethod
    def _labels(name, component):
        lbl = {"dask.org/cluster-name": name, "dask.org/component": component,
               "sidecar.istio.io/inject": "false"}
        if component == "worker":
            lbl["dask.org/workergroup-name"] = f"{name}-default"
        return lbl

    def _owner(self, dc):
        return [{"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
                 "name": dc["metadata"]["name"], "uid": dc["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}]

    def _meta(self, dc, name, part, component):
        md = (dc["spec"].get(part) or {}).get("metadata") or {}
        labels = dict(md.get("labels") or {}, **self._labels(dc["metadata"]["name"], component))
        meta = {"name": name, "labels": labels, "ownerReferences": self._owner(dc)}
        if md.get("annotations"):
            meta["annotations"] = dict(md["annotations"])
        return meta

    def reconcile(self, ns, name):
        import copy
        import secrets
        from .store import ApiError
        dc = self.store.get("DaskCluster", ns, name)
        if dc is None or dc["metadata"].get("deletionTimestamp"):
            return
        spec = dc["spec"]
        sched_name = f"{name}-scheduler"
        sched = self.store.get("Pod", ns, sched_name)
        if sched is None:
            self.store.create("Pod", ns, {"apiVersion": "v1", "kind": "Pod",
                                          "metadata": self._meta(dc, sched_name, "scheduler", "scheduler"),
                                          "spec": copy.deepcopy(spec["scheduler"]["spec"])})
        if self.store.get("Service", ns, sched_name) is None:
            self.store.create("Service", ns, {"apiVersion": "v1", "kind": "Service",
                                              "metadata": self._meta(dc, sched_name, "scheduler", "scheduler"),
                                              "spec": copy.deepcopy(spec["scheduler"]["service"])})
        workers = [p for p in self.store.list("Pod", ns, label_selector=
                                              f"dask.org/cluster-name={name},dask.org/component=worker")
                   if not p["metadata"].get("deletionTimestamp")]
        want = int(spec["worker"].get("replicas", 1))
        address = f"tcp://{sched_name}.{ns}.svc.cluster.local:8786"
        for _ in range(want - len(workers)):
            wname = f"{name}-default-worker-{secrets.token_hex(5)}"
            pspec = copy.deepcopy(spec["worker"]["spec"])
            for c in pspec.get("containers") or []:
                env = [e for e in c.get("env") or [] if e.get("name") not in
                       ("DASK_WORKER_NAME", "DASK_SCHEDULER_ADDRESS")]
                c["env"] = env + [{"name": "DASK_WORKER_NAME", "value": wname},
                                  {"name": "DASK_SCHEDULER_ADDRESS", "value": address}]
            self.store.create("Pod", ns, {"apiVersion": "v1", "kind": "Pod",
                                          "metadata": self._meta(dc, wname, "worker", "worker"),
                                          "spec": pspec})
        if len(workers) > want:
            workers.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
            for p in workers[want:]:
                try:
                    self.store.delete("Pod", ns, p["metadata"]["name"])
                except ApiError as exc:
                    if exc.status != 404:
                        raise
        sched = self.store.get("Pod", ns, sched_name)
        phase = "Running" if sched and (sched.get("status") or {}).get("phase") == "Running" else "Created"
        if (dc.get("status") or {}).get("phase") != phase:
            def fn(o):
                o["status"] = dict(o.get("status") or {}, phase=phase)
            self.store.mutate("DaskCluster", ns, name, fn, subresource="status")
