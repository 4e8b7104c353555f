"""DaskCluster (kubernetes.dask.org/v1) support: structural validation, defaults, the operator.

Owns the DaskCluster structure check (spec.worker.replicas int >= 0, spec.worker.spec and
spec.scheduler.spec core/v1 PodSpecs, spec.scheduler.service a core/v1 ServiceSpec,
spec.idleTimeout int; unknown fields rejected), its defaults (the CRD's: replicas 1,
idleTimeout 0), and `Operator`, a mini dask-kubernetes operator (controller.py's handlers for
DaskCluster creation, the scheduler Service status, worker replicas and idle shutdown), with
bare pods where the real one makes Deployments. See tests/k8s/README.md, "DaskCluster operator".
"""

import copy
import json
import os
import re
import time

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
        spec.setdefault("idleTimeout", 0)


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

# kopf's default delay before a failed handler is retried, and the operator's timer interval.
RETRY_DELAY = 60.0
AUTOSHUTDOWN_INTERVAL = 5.0
# What the operator's aiohttp session allows by default (ClientTimeout: total 300 s, connect 30 s).
HTTP_TIMEOUT, CONNECT_TIMEOUT = 300.0, 30.0
MAX_CLUSTER_NAME_LEN = 63 - len("-scheduler")
_VALID_NAME = re.compile(rf"^(?=.{{,{MAX_CLUSTER_NAME_LEN}}}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IGNORED_ANNOTATIONS = ("kopf.zalando.org", "kubectl.kubernetes.io")
_ENDED = ("Succeeded", "Failed")


class HandlerError(Exception):
    """A handler failure the real operator would retry (kopf: 'failed with an exception. Will
    retry.'). `sim_error` is set when it is not transient: the real operator would fail the same
    way on every retry, so the test run learns of it through sim-errors.jsonl."""

    def __init__(self, message, sim_error=None):
        super().__init__(message)
        self.sim_error = sim_error


class _Cluster:
    """What the operator knows of one DaskCluster (by uid): its worker Deployments (name ->
    order of creation), the last spec.worker.replicas it handled, retry and timer times."""

    def __init__(self, uid):
        self.uid = uid
        self.created = False          # the on.create handler ran (status.phase = Created)
        self.components = False      # scheduler, Service and worker group made (phase Pending)
        self.deployments = {}
        self.pods = {}                # worker pod name -> its Deployment
        self.seq = 0
        self.handled = None           # spec.worker.replicas last handled
        self.retry_at = 0.0           # next attempt of a failed handler (monotonic)
        self.busy = False             # a scale-down (retire_workers) is in flight
        self.idle_busy = False
        self.next_idle_check = 0.0
        self.reported = set()


class Operator:
    """Reconciles DaskClusters like dask-kubernetes' operator (controller.py), with bare pods
    standing in for its Deployments:

    - on create: status.phase `Created` (`Error` for a name the operator refuses); then the
      scheduler (pod `NAME-scheduler`), the Service `NAME-scheduler` and the worker group;
      phase `Pending`, then `Running` once the Service has a status (a LoadBalancer: an ingress);
    - each "Deployment" (scheduler, and one per worker `NAME-default-worker-<10 hex>`) is checked
      as the API server checks a Deployment's pod template (restartPolicy Always, no
      activeDeadlineSeconds) and keeps one live pod, as its ReplicaSet would: a pod that ended or
      is being deleted gets a replacement;
    - a change of spec.worker.replicas is handled once, against the number of worker
      Deployments: up, new ones; down, `retire_workers` (HTTP API on the Service port
      `http-dashboard`, then the Dask RPC on `tcp-comm`, then "LIFO" over the Deployments as the
      API lists them) in a thread, then the named Deployments are deleted; a failing handler is
      retried after RETRY_DELAY (times the kubelet's back-off scale);
    - spec.idleTimeout: every 5 s `check_idle`; an idle scheduler past it deletes the DaskCluster.
    Pods and the Service are owned (controller=true, blockOwnerDeletion) by the DaskCluster, so
    deletion is the garbage collector's. Log: WORKDIR/sim-operator.log."""

    def __init__(self, sim):
        import queue
        import threading
        self.sim, self.store = sim, sim.store
        self._q = queue.Queue()
        self._thread = None
        self._stop = False
        self._clusters = {}
        self._log_lock = threading.Lock()
        self._log_path = os.path.join(sim.workdir, "sim-operator.log")

    # ----- plumbing -----
    def start(self):
        import threading
        self.store.subscribe(self._on_change)
        for dc in self.store.list("DaskCluster"):
            self._q.put(("reconcile", (dc["metadata"]["namespace"], dc["metadata"]["name"])))
        self._thread = threading.Thread(target=self._run, name="sim-dask-operator", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop = True
        self._q.put(None)

    def log(self, level, key, message):
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] kopf.objects [{level:<7}] [{key[0]}/{key[1]}] {message}\n"
        with self._log_lock, open(self._log_path, "a") as fh:
            fh.write(line)

    def _scale(self, seconds):
        k = getattr(self.sim, "kubelet", None)
        return seconds * (getattr(k, "backoff_scale", 1.0) if k is not None else 1.0)

    def _on_change(self, etype, kind, obj):
        meta = obj["metadata"]
        if kind == "DaskCluster":
            self._q.put(("reconcile", (meta["namespace"], meta["name"])))
        elif kind in ("Pod", "Service") and (meta.get("labels") or {}).get("dask.org/cluster-name"):
            self._q.put(("reconcile", (meta["namespace"], meta["labels"]["dask.org/cluster-name"])))

    def _run(self):
        import queue
        while not self._stop:
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                item = ("tick",)
            if item is None:
                break
            keys = []
            if item[0] == "done":                  # a scheduler call finished (worker thread)
                self._guard(item[1], item[2])
            if item[0] in ("done", "reconcile"):
                keys.append(item[1])
            now = time.monotonic()
            for key, st in list(self._clusters.items()):
                if (st.retry_at and now >= st.retry_at) or now >= st.next_idle_check:
                    keys.append(key)
            for key in dict.fromkeys(keys):
                self._guard(key, lambda key=key: self.reconcile(*key))

    def _guard(self, key, fn):
        import traceback
        from .store import ApiError
        try:
            fn()
        except ApiError as exc:
            if exc.status not in (404, 409):
                self.sim.errors("operator", {"cluster": f"{key[0]}/{key[1]}", "error": repr(exc)})
        except Exception as exc:   # a simulator bug: report, keep going
            self.sim.errors("operator", {"cluster": f"{key[0]}/{key[1]}", "error": repr(exc),
                                         "trace": traceback.format_exc()})

    def _fail(self, key, st, exc, handler):
        delay = self._scale(RETRY_DELAY)
        st.retry_at = time.monotonic() + delay
        self.log("ERROR", key, f"Handler '{handler}' failed with an exception. Will retry. {exc}")
        if exc.sim_error and (handler, exc.sim_error.get("message")) not in st.reported:
            st.reported.add((handler, exc.sim_error.get("message")))
            kind = exc.sim_error.pop("_kind", "operator")
            self.sim.errors(kind, dict(exc.sim_error, cluster=f"{key[0]}/{key[1]}", handler=handler))

    # ----- objects as the operator builds them -----
    @staticmethod
    def _meta_parts(dc, part):
        """(labels, annotations) the operator starts from: the DaskCluster's own (minus kopf's
        and kubectl's annotations), updated with spec.<part>.metadata."""
        md = dc["metadata"]
        ann = {k: v for k, v in (md.get("annotations") or {}).items()
               if not k.startswith(_IGNORED_ANNOTATIONS)}
        labels = dict(md.get("labels") or {})
        sub = (dc["spec"].get(part) or {}).get("metadata") or {}
        labels.update(sub.get("labels") or {})
        ann.update(sub.get("annotations") or {})
        return labels, ann

    def _owner(self, dc):
        return [{"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
                 "name": dc["metadata"]["name"], "uid": dc["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}]

    def _object(self, dc, kind, name, labels, ann, spec):
        meta = {"name": name, "labels": labels, "ownerReferences": self._owner(dc)}
        if ann:
            meta["annotations"] = dict(ann)
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": copy.deepcopy(spec)}

    def _scheduler_labels(self, dc):
        labels, ann = self._meta_parts(dc, "scheduler")
        name = dc["metadata"]["name"]
        return dict(labels, **{"dask.org/cluster-name": name, "dask.org/component": "scheduler",
                               "sidecar.istio.io/inject": "false"}), ann

    def _worker_labels(self, dc):
        labels, ann = self._meta_parts(dc, "worker")
        name = dc["metadata"]["name"]
        return dict(labels, **{"dask.org/cluster-name": name,
                               "dask.org/workergroup-name": f"{name}-default",
                               "dask.org/component": "worker", "sidecar.istio.io/inject": "false"}), ann

    @staticmethod
    def _check_template(dname, spec):
        """The API server's Deployment check of the pod template (ValidatePodTemplateSpecForReplicaSet)."""
        causes = []
        rp = spec.get("restartPolicy", "Always")
        if rp != "Always":
            causes.append(f'spec.template.spec.restartPolicy: Unsupported value: "{rp}": '
                          'supported values: "Always"')
        if spec.get("activeDeadlineSeconds") is not None:
            causes.append("spec.template.spec.activeDeadlineSeconds: Forbidden: "
                          "activeDeadlineSeconds in ReplicaSet is not Supported")
        if causes:
            msg = f'Deployment.apps "{dname}" is invalid: ' + (
                causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]")
            raise HandlerError(msg, {"_kind": "rejected", "op": "create", "kind": "Deployment",
                                     "by": "dask-operator", "name": dname, "status": 422,
                                     "reason": "Invalid", "message": msg})

    @staticmethod
    def _live(p):
        return not p["metadata"].get("deletionTimestamp") and \
            (p.get("status") or {}).get("phase") not in _ENDED

    def _replica_pod(self, ns, base, pods, make):
        """A ReplicaSet's step: when none of `pods` is live, create a pod from make(name)."""
        import secrets
        from .store import _GEN_CHARS
        if any(self._live(p) for p in pods):
            return None
        name = base
        while self.store.get("Pod", ns, name) is not None:
            name = f"{base}-" + "".join(secrets.choice(_GEN_CHARS) for _ in range(5))
        self.store.create("Pod", ns, make(name))
        return name

    @staticmethod
    def _worker_name_of(pod):
        for c in (pod.get("spec") or {}).get("containers") or []:
            for e in c.get("env") or []:
                if e.get("name") == "DASK_WORKER_NAME":
                    return e.get("value")
        return None

    def _worker_pod(self, dc, ns, dname):
        labels, ann = self._worker_labels(dc)
        spec = copy.deepcopy(dc["spec"]["worker"]["spec"])
        address = f"tcp://{dc['metadata']['name']}-scheduler.{ns}.svc.cluster.local:8786"
        for c in spec.get("containers") or []:
            names = [e.get("name") for e in c.get("env") or []]
            env = c.setdefault("env", [])
            if "DASK_WORKER_NAME" not in names:
                env.append({"name": "DASK_WORKER_NAME", "value": dname})
            if "DASK_SCHEDULER_ADDRESS" not in names:
                env.append({"name": "DASK_SCHEDULER_ADDRESS", "value": address})
        return lambda name: self._object(dc, "Pod", name, labels, ann, spec)

    # ----- the reconciler (operator thread only) -----
    def reconcile(self, ns, name):
        key = (ns, name)
        dc = self.store.get("DaskCluster", ns, name)
        if dc is None or dc["metadata"].get("deletionTimestamp"):
            self._clusters.pop(key, None)
            return
        st = self._clusters.get(key)
        if st is None or st.uid != dc["metadata"]["uid"]:
            st = self._clusters[key] = _Cluster(dc["metadata"]["uid"])
        if not st.created:
            st.created = True
            if not _VALID_NAME.match(name):
                self._set_phase(dc, "Error")
                self.log("ERROR", key, f"Handler 'daskcluster_create' failed permanently: The "
                         f"DaskCluster {name} is invalid: a lowercase RFC 1123 subdomain must consist"
                         " of lower case alphanumeric characters, '-' or '.', and must start and end "
                         "with an alphanumeric character. DaskCluster name must also be under "
                         f"{MAX_CLUSTER_NAME_LEN} characters.")
                st.components = None
                return
            dc = self._set_phase(dc, "Created")
        if st.components is None:
            return
        waiting = st.retry_at and time.monotonic() < st.retry_at
        if not st.components:
            if waiting:
                return
            st.retry_at = 0.0
            try:
                self._create_components(dc, ns, st)
            except HandlerError as exc:
                return self._fail(key, st, exc, "daskcluster_create_components")
            dc = self._set_phase(dc, "Pending")
        # level-triggered: the Deployments' ReplicaSets and the Service status handler
        self._scheduler_step(dc, ns)
        self._service_phase(dc, ns)
        self._replicas_step(dc, ns, st)
        # edge-triggered: the replicas handler (retried after a failure)
        if not waiting:
            st.retry_at = 0.0
            try:
                self._scale_step(dc, key, st)
            except HandlerError as exc:
                self._fail(key, st, exc, "daskworkergroup_replica_update")
        self._idle_timer(dc, key, st)

    def _set_phase(self, dc, phase):
        if (dc.get("status") or {}).get("phase") == phase:
            return dc
        m = dc["metadata"]

        def fn(o):
            o["status"] = dict(o.get("status") or {}, phase=phase)
        return self.store.mutate("DaskCluster", m["namespace"], m["name"], fn)

    def _create_components(self, dc, ns, st):
        from .store import ApiError
        name = dc["metadata"]["name"]
        sname = f"{name}-scheduler"
        self._check_template(sname, dc["spec"]["scheduler"]["spec"])
        self._scheduler_step(dc, ns)
        if self.store.get("Service", ns, sname) is None:
            labels, ann = self._meta_parts(dc, "scheduler")
            labels = dict(labels, **{"dask.org/cluster-name": name, "dask.org/component": "scheduler"})
            try:
                self.store.create("Service", ns, self._object(dc, "Service", sname, labels, ann,
                                                              dc["spec"]["scheduler"]["service"]))
            except ApiError as exc:
                if exc.status == 409:
                    raise
                raise HandlerError(exc.message, {"_kind": "rejected", "op": "create", "kind": "Service",
                                                 "by": "dask-operator", "name": sname,
                                                 "status": exc.status, "message": exc.message})
        st.components = True
        self.log("INFO", (ns, name), f"Worker group {name}-default created in {ns}.")

    def _scheduler_step(self, dc, ns):
        name = dc["metadata"]["name"]
        labels, ann = self._scheduler_labels(dc)
        pods = self.store.list("Pod", ns, label_selector=f"dask.org/cluster-name={name},"
                               "dask.org/component=scheduler")
        spec = dc["spec"]["scheduler"]["spec"]
        self._replica_pod(ns, f"{name}-scheduler", pods,
                          lambda n: self._object(dc, "Pod", n, labels, ann, spec))

    def _service_phase(self, dc, ns):
        svc = self.store.get("Service", ns, f"{dc['metadata']['name']}-scheduler")
        if svc is None or (dc.get("status") or {}).get("phase") not in ("Pending", "Running"):
            return
        lb = (svc.get("spec") or {}).get("type") == "LoadBalancer" and \
            not ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        self._set_phase(dc, "Pending" if lb else "Running")

    def _worker_pods(self, ns, name):
        return self.store.list("Pod", ns, label_selector=f"dask.org/cluster-name={name},"
                               "dask.org/component=worker")

    def _replicas_step(self, dc, ns, st):
        """Each worker Deployment keeps one live pod (its ReplicaSet's job, level-triggered)."""
        if not st.components:
            return
        pods = self._worker_pods(ns, dc["metadata"]["name"])
        if not st.deployments and st.handled is None:       # state lost: adopt what exists
            for p in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
                w = self._worker_name_of(p)
                if w and w not in st.deployments and self._live(p):
                    st.seq += 1
                    st.deployments[w] = st.seq
                    st.pods[p["metadata"]["name"]] = w
        by = {}
        for p in pods:
            by.setdefault(st.pods.get(p["metadata"]["name"]), []).append(p)
        for dname in st.deployments:
            self._add_pod(dc, ns, st, dname, by.get(dname, []))

    def _add_pod(self, dc, ns, st, dname, pods):
        pname = self._replica_pod(ns, dname, pods, self._worker_pod(dc, ns, dname))
        if pname:
            st.pods[pname] = dname

    def _scale_step(self, dc, key, st):
        """daskworkergroup_replica_update: once per spec.worker.replicas change."""
        import uuid
        want = int(dc["spec"]["worker"].get("replicas", 1))
        if st.busy or want == st.handled:
            return
        ns, name = key
        current = len(st.deployments)
        if want > current:
            for _ in range(want - current):
                dname = f"{name}-default-worker-{uuid.uuid4().hex[:10]}"
                self._check_template(dname, dc["spec"]["worker"]["spec"])
                st.seq += 1
                st.deployments[dname] = st.seq
                self._add_pod(dc, ns, st, dname, [])
            self.log("INFO", key, f"Scaled worker group {name}-default up to {want} workers.")
        elif want < current:
            st.busy = True
            deployments = sorted(st.deployments)      # the API lists Deployments by name
            self._spawn(self._retire_thread, key, st, current - want, deployments, want)
            return
        st.handled = want

    def _spawn(self, fn, *args):
        import threading
        threading.Thread(target=fn, args=args, name="sim-dask-operator-call", daemon=True).start()

    # ----- talking to the scheduler (worker threads, never under the store lock) -----
    def _service_address(self, ns, name, port_name):
        """get_scheduler_address(): the Service's port named `port_name` (or named like the
        Service) at its cluster address; anything else fails like the operator's lookup."""
        sname = f"{name}-scheduler"
        svc = self.store.get("Service", ns, sname)
        if svc is None:
            raise HandlerError(f'services "{sname}" not found')
        ports = [p.get("port") for p in (svc.get("spec") or {}).get("ports") or []
                 if p.get("name") in (sname, port_name)]
        if len(ports) != 1:
            msg = (f"the Service {sname} has {len(ports)} ports named {port_name!r} (or {sname!r}); "
                   f"the operator's `[port] = [...]` raises ValueError, so this handler fails on "
                   f"every retry")
            raise HandlerError(msg, {"message": msg, "ports": [p.get("name") for p in
                                                               svc["spec"].get("ports") or []]})
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            msg = f"the Service {sname} has no clusterIP: k8s-sim cannot resolve it for the operator"
            raise HandlerError(msg, {"message": msg})
        from .kubelet import sandbox_problem
        if sandbox_problem():
            raise HandlerError(f"Cannot connect to host {ip}:{ports[0]} [Connection refused] "
                               "(k8s-sim: outside the sandbox nothing is proxied)")
        return ip, ports[0]

    def _http(self, method, ip, port, path, body=None):
        import http.client
        conn = http.client.HTTPConnection(ip, port, timeout=CONNECT_TIMEOUT)
        try:
            conn.connect()
            conn.sock.settimeout(HTTP_TIMEOUT)
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        except (OSError, http.client.HTTPException) as exc:
            raise HandlerError(f"Cannot connect to host {ip}:{port} [{exc!r}]")
        finally:
            conn.close()

    def _rpc(self, ns, name, calls):
        """The operator's Dask RPC fallback (over tcp://, as it always dials): calls(comm) -> result."""
        import asyncio
        ip, port = self._service_address(ns, name, "tcp-comm")

        async def go():
            from distributed.core import rpc
            async with rpc(f"tcp://{ip}:{port}", timeout=10) as comm:
                return await asyncio.wait_for(calls(comm), 120)
        return asyncio.run(go())

    def _retire(self, key, n, deployments):
        """retire_workers(): the Dask worker names to close."""
        ns, name = key
        ip, port = self._service_address(ns, name, "http-dashboard")
        status, ctype, raw = self._http("POST", ip, port, "/api/v1/retire_workers", {"n": n})
        if status <= 300:
            if not ctype.startswith("application/json"):
                raise HandlerError(f"Attempt to decode JSON with unexpected mimetype: {ctype}")
            retired = json.loads(raw)
            self.log("INFO", key, f"Retired workers {retired}")
            return [retired[w]["name"] for w in retired]
        self.log("DEBUG", key, f"Received {status} response from scheduler API with body {raw[:200]!r}")
        self.log("DEBUG", key, f"Scaling {name}-default failed via the HTTP API, falling back to the Dask RPC")
        try:
            async def calls(comm):
                names = await comm.workers_to_close(n=n, attribute="name")
                await comm.retire_workers(names=names)
                return names
            names = self._rpc(ns, name, calls)
            assert isinstance(names, list)
            return names
        except Exception:
            pass
        self.log("WARNING", key, f"Scaling {name}-default failed via the HTTP API and the Dask RPC, "
                 "falling back to LIFO scaling. This can result in lost data, see "
                 "https://kubernetes.dask.org/en/latest/operator_troubleshooting.html.")
        return deployments[-n:]

    def _retire_thread(self, key, st, n, deployments, want):
        try:
            names, err = self._retire(key, n, deployments), None
        except HandlerError as exc:
            names, err = None, exc
        except Exception as exc:   # a simulator bug
            names, err = None, HandlerError(repr(exc), {"message": repr(exc)})
        self._q.put(("done", key, lambda: self._retired(key, st, names, err, want)))

    def _retired(self, key, st, names, err, want):
        st.busy = False
        if st is not self._clusters.get(key):
            return
        if err is not None:
            return self._fail(key, st, err, "daskworkergroup_replica_update")
        ns, name = key
        self.log("INFO", key, f"Workers to close: {names}")
        for wid in names:
            if wid not in st.deployments:
                msg = (f'deployments.apps "{wid}" not found: the scheduler retired a worker whose '
                       "name is no worker Deployment's (workers must run with --name "
                       "$(DASK_WORKER_NAME))")
                return self._fail(key, st, HandlerError(msg, {"message": msg}),
                                  "daskworkergroup_replica_update")
            del st.deployments[wid]
            for p in self._worker_pods(ns, name):
                if st.pods.get(p["metadata"]["name"]) == wid:
                    st.pods.pop(p["metadata"]["name"])
                    if not p["metadata"].get("deletionTimestamp"):
                        self._delete_pod(ns, p["metadata"]["name"])
        st.handled = want
        self.log("INFO", key, f"Scaled worker group {name}-default down to {want} workers.")

    def _delete_pod(self, ns, pname):
        from .store import ApiError
        try:
            self.store.delete("Pod", ns, pname)
        except ApiError as exc:
            if exc.status != 404:
                raise

    # ----- daskcluster_autoshutdown -----
    def _idle_timer(self, dc, key, st):
        now = time.monotonic()
        if now < st.next_idle_check:
            return
        st.next_idle_check = now + AUTOSHUTDOWN_INTERVAL
        timeout = dc["spec"].get("idleTimeout") or 0
        if timeout and not st.idle_busy:
            st.idle_busy = True
            self._spawn(self._idle_thread, key, st, timeout, dc["metadata"]["uid"])

    def _idle_thread(self, key, st, timeout, uid):
        ns, name = key
        try:
            try:
                ip, port = self._service_address(ns, name, "http-dashboard")
                status, _ct, raw = self._http("GET", ip, port, "/api/v1/check_idle")
                if status <= 300:
                    idle_since = json.loads(raw)["idle_since"]
                else:
                    idle_since = self._rpc(ns, name, lambda comm: comm.check_idle())
                idle_since = float(idle_since) if idle_since else None
            except Exception:
                self.log("WARNING", key, "Unable to connect to scheduler, skipping autoshutdown check.")
                return
            if idle_since and time.time() > idle_since + timeout:
                self.log("INFO", key, f"idle since {idle_since} for longer than idleTimeout "
                         f"{timeout}s: deleting the DaskCluster")
                from .store import ApiError
                try:
                    self.store.delete("DaskCluster", ns, name, preconditions={"uid": uid})
                except ApiError:
                    pass
        finally:
            st.idle_busy = False
