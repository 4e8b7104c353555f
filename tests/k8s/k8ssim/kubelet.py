"""The simulated node `sim-node-1`: the scheduler's binding and the kubelet's pod lifecycle.

Owns `Kubelet(sim, python, workdir)`: one thread that watches the store and
- schedules pods without nodeName (resource fit against the Node's allocatable, nodeSelector,
  taints; FailedScheduling/Scheduled events from default-scheduler);
- runs bound pods as local Dask process groups bound to a pod IP 10.244.0.N (only once
  `ecsagent.sandbox` confirms the sandbox network namespace): volumes, sandbox, image "pull"
  (ErrImagePull/ImagePullBackOff), container start (podspec.plan_pod), probes, restarts with
  the kubelet's back-off (CrashLoopBackOff), the entry script's TTL backstop,
  activeDeadlineSeconds, graceful deletion, and the `crash`/`image_pull`/`unschedulable` faults;
- writes every status change through `store.mutate(..., subresource="status")`, shaped as the
  real kubelet reports it, with the kubelet's events;
- serves `read_log` (kubelet log endpoint semantics) and `pod_ip`/`sandbox_id` (port-forward),
  and owns the node's service proxy (netproxy.NetProxy), started and stopped with it.

`--backoff-scale F` (the `backoff_scale` argument) multiplies the restart and image-pull
back-off times (10 s doubling to 5 min) by F, so tests need not wait minutes.
"""

import json
import os
import secrets
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from . import clusterdns, noderuntime, podspec, podstatus
from .store import ApiError

NODE_NAME = "sim-node-1"
HOST_IP = "10.0.0.1"
POD_NET = "10.244.0."
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
KUBELET = "kubelet"
_sandbox_cache = {}


def sandbox_problem():
    """None inside the sandbox namespace, else why not (checked once per process)."""
    if "result" not in _sandbox_cache:
        from ecsagent.sandbox import check_sandbox  # path set up by podspec
        try:
            check_sandbox()
            _sandbox_cache["result"] = None
        except SystemExit as e:
            _sandbox_cache["result"] = str(e)
    return _sandbox_cache["result"]


def fmt_pod(pod):
    m = pod["metadata"]
    return f"{m['name']}_{m.get('namespace', '')}({m.get('uid', '')})"


class PodRun:
    """What the node keeps about one pod (by uid)."""

    def __init__(self, pod, pod_dir):
        m = pod["metadata"]
        self.ns, self.name, self.uid = m.get("namespace", "default"), m["name"], m["uid"]
        self.dir = pod_dir
        self.fault = None
        self.ip = None
        self.sandbox_id = None
        self.start_time = None
        self.stage = "mount"        # mount, sandbox, image, create, running, backoff, terminal, refused
        self.waiting = ("ContainerCreating", None)
        self.proc = None
        self.container_id = None
        self.started_at = None
        self.running = False
        self.restart_count = 0
        self.starts = 0
        self.terminated = None      # current terminated state (dict) when not running
        self.last_state = None      # lastState.terminated
        self.ready = False
        self.started_flag = False
        self.probes = {}            # kind -> {"plan", "next", "ok", "fail", "future", "result"}
        self.restart_delay = None   # current back-off
        self.restart_last = None    # when back-off was last bumped
        self.next_start = 0.0
        self.image_delay = None
        self.image_next = 0.0
        self.image_shown_at = 0.0
        self.deleted = False
        self.pulled = False
        self.next_retry = 0.0
        self.kill = None            # {"deadline", "escalated", "then"}
        self.ttl_term_at = self.ttl_kill_at = None
        self.timed_out = self.timeout_sigkill = False
        self.pod_reason = None      # (reason, message) for status.reason/message
        self.conditions = {}        # type -> dict
        self.last_status = None
        self.mounts = []            # volumeMounts for containerStatuses
        self.plan = None
        self.error_keys = set()


class Kubelet:
    def __init__(self, sim, python, workdir, backoff_scale=1.0, tick=0.1):
        self.sim = sim
        self.store = sim.store
        self.workdir = os.path.abspath(workdir)
        self.pods_dir = os.path.join(self.workdir, "pods")
        self.backoff_scale = float(backoff_scale)
        self.tick = tick
        self.base_env = {k: os.environ[k] for k in podspec.BASE_ENV_KEYS if k in os.environ}
        self.python_arg = python
        self.python = None
        self.distributed_version = None
        self.runs = {}              # uid -> PodRun
        self.ips = {}               # ip -> uid
        self._next_ip = 2
        self.pulled_images = set()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._probe_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        from .scheduler import Scheduler
        self.scheduler = Scheduler(self)
        self.proxy = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self):
        from vmboot.procs import probe_python
        self.python, self.distributed_version = probe_python(self.python_arg, self.base_env)
        os.makedirs(self.pods_dir, exist_ok=True)
        sandbox_problem()
        self.store.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self._thread.start()
        from .netproxy import NetProxy
        self.proxy = NetProxy(self.sim)
        self.proxy.start()

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.proxy is not None:
            self.proxy.stop()
        procs = [r.proc for r in self.runs.values() if r.proc is not None]
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(p.group_alive() for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in procs:
            p.signal(signal.SIGKILL)
            if p.poll() is None:
                try:
                    p.proc.wait(2)
                except Exception:
                    pass
            p.log.close()
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    def _on_change(self, etype, kind, obj):
        self.scheduler.on_change(etype, kind, obj)
        if kind in ("Pod", "Node", "Secret", "ConfigMap"):
            self._wake.set()
        if kind == "Service" and etype == "ADDED":   # cluster DNS is resolved at start only
            for run in [r for r in list(self.runs.values()) if r.running and r.plan]:
                for rec in clusterdns.now_answered(run.plan.dns, run.plan.resolver):
                    self.sim_error(run, ("dns", rec["name"]), {"dns": rec, "error": (
                        "a Service for a name this running container could not resolve at"
                        " start appeared; a pod's later lookup would find it, this one's not")})

    def _loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.tick)
            self._wake.clear()
            try:
                self.sync()
            except Exception as e:
                self.sim.errors("kubelet", {"error": repr(e), "trace": traceback.format_exc()})
                time.sleep(0.5)

    # ---- helpers ------------------------------------------------------------------------------

    def scaled(self, seconds):
        return seconds * self.backoff_scale

    def event(self, pod, type_, reason, message, component=KUBELET, container=True):
        ref = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
               "namespace": pod["metadata"].get("namespace"), "uid": pod["metadata"]["uid"],
               "resourceVersion": pod["metadata"].get("resourceVersion")}
        if container:
            ref["fieldPath"] = f"spec.containers{{{pod['spec']['containers'][0]['name']}}}"
        try:
            self.store.record_event(ref, type_, reason, message, component)
        except ApiError as e:
            if e.status != 404:
                self.sim.errors("kubelet-event", {"pod": ref["name"], "reason": reason,
                                                  "error": repr(e)})

    def sim_error(self, run, key, detail):
        if key in run.error_keys:
            return
        run.error_keys.add(key)
        self.sim.errors("kubelet", {"pod": f"{run.ns}/{run.name}", **detail})

    def lookup(self, kind, ns, name):
        return self.store.get(kind, ns, name)

    def node(self):
        return self.store.get("Node", None, NODE_NAME)

    # ---- the loop -----------------------------------------------------------------------------

    def sync(self):
        pods = self.store.list("Pod")
        seen = set()
        self.scheduler.schedule(pods)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if pod.get("spec", {}).get("nodeName") != NODE_NAME:
                continue
            seen.add(uid)
            run = self.runs.get(uid)
            if run is None:
                run = self.runs[uid] = self._new_run(pod)
            try:
                self.sync_pod(pod, run)
                if run.stage != "gone":
                    self.write_status(pod, run)
            except Exception as e:
                self.sim_error(run, "exception:" + repr(e)[:80],
                               {"error": repr(e), "trace": traceback.format_exc()})
        for uid in list(self.runs):
            if uid not in seen:
                self._forget(self.runs.pop(uid), kill=True)

    def _new_run(self, pod):
        m = pod["metadata"]
        pod_dir = os.path.join(self.pods_dir, f"{m.get('namespace', 'default')}_{m['name']}")
        if os.path.exists(pod_dir):
            n = 1
            while os.path.exists(f"{pod_dir}.old{n}"):
                n += 1
            os.rename(pod_dir, f"{pod_dir}.old{n}")
        os.makedirs(os.path.join(pod_dir, "work"))
        run = PodRun(pod, pod_dir)
        run.fault = self.sim.faults.pod_fault(pod)
        run.start_time = time.time()
        run.mounts = [{"name": vm.get("name"), "mountPath": vm.get("mountPath"),
                       **({"readOnly": True, "recursiveReadOnly": "Disabled"}
                          if vm.get("readOnly") else {})}
                      for vm in pod["spec"]["containers"][0].get("volumeMounts") or []]
        return run

    def _forget(self, run, kill):
        if run.proc is not None and kill:
            run.proc.signal(signal.SIGKILL)
            run.proc.finish()
        self._release_ip(run)
        run.stage = "gone"

    def _release_ip(self, run):
        if run.ip and self.ips.get(run.ip) == run.uid:
            del self.ips[run.ip]

    # ---- one pod ------------------------------------------------------------------------------

    def sync_pod(self, pod, run):
        now = time.monotonic()
        if run.stage in ("gone",):
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._deleting(pod, run)
            return
        if run.kill is not None:
            self._progress_kill(pod, run)
            return
        if run.stage == "terminal":
            return
        ads = pod["spec"].get("activeDeadlineSeconds")
        if ads is not None and time.time() - run.start_time >= ads:
            msg = "Pod was active on the node longer than the specified deadline"
            run.pod_reason = ("DeadlineExceeded", msg)
            self.event(pod, "Normal", "DeadlineExceeded", msg, container=False)
            if run.running:
                name = pod["spec"]["containers"][0]["name"]
                self.event(pod, "Normal", "Killing", f"Stopping container {name}")
                self._start_kill(pod, run, self._grace(pod), then="terminal")
            else:
                self._terminal(run)
            return
        if run.running:
            self._watch_running(pod, run, now)
            return
        if now < run.next_retry:
            return
        stage = run.stage
        if stage == "mount":
            self._mount(pod, run)
        if run.stage == "sandbox":
            self._sandbox(pod, run)
        if run.stage == "image":
            self._image(pod, run, now)
        if run.stage == "create":
            self._create(pod, run)
        if run.stage == "backoff" and now >= run.next_start:
            run.stage = "image"
            self._image(pod, run, now)
            if run.stage == "create":
                self._create(pod, run)

    def _grace(self, pod):
        g = pod["spec"].get("terminationGracePeriodSeconds")
        return 30 if g is None else int(g)

    def _refuse(self, pod, run, err):
        run.stage = "refused"
        run.waiting = (err.reason, f"k8s-sim cannot run this container faithfully: {err.message}")
        self.event(pod, "Warning", "Failed", f"Error: {run.waiting[1]}")
        self.sim_error(run, "refused", {"reason": err.message, "stage": "create"})

    def _mount(self, pod, run):
        try:
            for v in pod["spec"].get("volumes") or []:
                podspec.project_volume(pod, v, self.lookup)
        except podspec.MountError as e:
            self.event(pod, "Warning", "FailedMount", e.message, container=False)
            run.next_retry = time.monotonic() + 2.0
            return
        except podspec.PodSpecError as e:
            self._refuse(pod, run, e)
            return
        run.stage = "sandbox"

    def _sandbox(self, pod, run):
        problem = sandbox_problem()
        if problem:
            run.next_retry = float("inf")
            self.event(pod, "Warning", "FailedCreatePodSandBox",
                       "Failed to create pod sandbox: k8s-sim refuses to start pods outside its"
                       " sandbox network namespace", container=False)
            self.sim_error(run, "sandbox", {"reason": problem})
            return
        with self._lock:
            for _ in range(253):
                n = self._next_ip
                self._next_ip = 2 if self._next_ip >= 254 else self._next_ip + 1
                ip = f"{POD_NET}{n}"
                if ip not in self.ips:
                    self.ips[ip] = run.uid
                    run.ip = ip
                    break
        if run.ip is None:
            self.event(pod, "Warning", "FailedCreatePodSandBox", "Failed to create pod sandbox:"
                       " failed to allocate for range 0: no IP addresses available in range set:"
                       " 10.244.0.1-10.244.0.254", container=False)
            run.next_retry = time.monotonic() + 5
            return
        run.sandbox_id = secrets.token_hex(32)
        run.stage = "image"

    def _image(self, pod, run, now):
        c = pod["spec"]["containers"][0]
        image = c.get("image", "")
        if run.image_delay is not None and now < run.image_next:
            if now < run.image_shown_at:
                return
            msg = f'Back-off pulling image "{image}"'
            if run.waiting[0] != "ImagePullBackOff":
                self.event(pod, "Normal", "BackOff", msg)
                self.event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            run.waiting = ("ImagePullBackOff", msg)
            run.next_retry = run.image_next
            return
        policy = c.get("imagePullPolicy", "IfNotPresent")
        problem = None
        if run.fault == "image_pull":
            problem = "fault"
        else:
            why = podspec.check_image(image, self.distributed_version)
            if why:
                problem = why
                self.sim_error(run, "image", {"image": image, "reason": why})
        present = image in self.pulled_images and problem is None
        if policy == "Never" and not present:
            run.waiting = ("ErrImageNeverPull", f'Container image "{image}" is not present with'
                           ' pull policy of Never')
            self.event(pod, "Warning", "ErrImageNeverPull", run.waiting[1])
            run.next_retry = now + self.scaled(BACKOFF_INITIAL)
            return
        if present and policy != "Always":
            self.event(pod, "Normal", "Pulled",
                       f'Container image "{image}" already present on machine')
            run.pulled = True
            run.stage = "create"
            return
        t0 = time.monotonic()
        self.event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
        if problem:
            ref = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
            err = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}":'
                   f' failed to resolve reference "{ref}": {ref}: not found')
            self.event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {err}')
            self.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            run.waiting = ("ErrImagePull", err)
            run.image_delay = (self.scaled(BACKOFF_INITIAL) if run.image_delay is None
                               else min(run.image_delay * 2, self.scaled(BACKOFF_MAX)))
            run.image_next = now + run.image_delay
            run.image_shown_at = now + min(1.0, run.image_delay)
            run.next_retry = run.image_shown_at
            return
        ms = int((time.monotonic() - t0) * 1000)
        self.event(pod, "Normal", "Pulled", f'Successfully pulled image "{image}" in {ms}ms'
                   f" ({ms}ms including waiting)")
        self.pulled_images.add(image)
        run.pulled = True
        run.image_delay = None
        run.stage = "create"

    def _create(self, pod, run):
        c = pod["spec"]["containers"][0]
        node = self.node() or {}
        try:
            plan = podspec.plan_pod(pod, python=self.python, pod_dir=run.dir, pod_ip=run.ip,
                                    host_ip=HOST_IP, lookup=self.lookup, base_env=self.base_env,
                                    node_alloc=(node.get("status") or {}).get("allocatable"))
        except podspec.PodSpecError as e:
            if e.sim:
                self._refuse(pod, run, e)
                return
            if isinstance(e, podspec.MountError):
                self.event(pod, "Warning", "FailedMount", e.message, container=False)
                run.waiting = ("ContainerCreating", None)
            else:
                self.event(pod, "Warning", "Failed", f"Error: {e.message}")
                run.waiting = (e.reason, e.message)
            run.next_retry = time.monotonic() + 2.0
            return
        if run.plan is None:
            for d in plan.dirs:
                os.makedirs(d, mode=0o755, exist_ok=True)
            for path, data, mode, _src in plan.files:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
                os.chmod(path, mode)
        run.plan = plan
        run.container_id = "containerd://" + secrets.token_hex(32)
        log_path = os.path.join(run.dir, f"{c['name']}-{run.restart_count}.log")
        self.event(pod, "Normal", "Created", f"Created container: {c['name']}")
        record = {"pod": f"{run.ns}/{run.name}", "uid": run.uid, "restart": run.restart_count,
                  "container_id": run.container_id, "pod_ip": run.ip, "role": plan.role,
                  "argv": plan.argv, "env_names": sorted(plan.env),
                  "env_sources": dict(sorted(plan.env_sources.items())),
                  "env_rewritten_to_rooted": plan.env_rewritten, "dns": plan.dns,
                  "container": {"image": c.get("image"), "argv": plan.container_argv,
                                "files_root": plan.files_root},
                  "files": [{"path": p, "mode": f"{m:04o}", "bytes": len(d), "from": s}
                            for p, d, m, s in plan.files],
                  "expires": plan.expires, "notes": plan.notes, "fault": run.fault,
                  "log": log_path, "time": noderuntime.rfc3339()}
        bs = podspec.backstop(plan.expires, time.time())
        run.started_at = time.time()
        run.running = True
        run.terminated = None
        run.timed_out = run.timeout_sigkill = False
        run.ready = False
        run.started_flag = "startup" not in plan.probes
        run.starts += 1
        if run.fault == "crash":
            record["ran"] = "fault: crash (exit 1 at once)"
            log = noderuntime.CriLog(log_path)
            log.write_line(b"stderr", b"k8s-sim fault injection: crash (the container exits 1)")
            log.close()
            self._write_run_json(run, record)
            self.event(pod, "Normal", "Started", f"Started container {c['name']}")
            self._exited(pod, run, 1)
            return
        if bs is None:
            record["ran"] = "expired: the entry script exits 0 before starting Dask"
            open(log_path, "ab").close()
            self._write_run_json(run, record)
            self.event(pod, "Normal", "Started", f"Started container {c['name']}")
            self._exited(pod, run, 0)
            return
        record["ran"] = "dask"
        record["backstop"] = {"sigterm_after": bs[0], "sigkill_after": bs[0] + bs[1]}
        self._write_run_json(run, record)
        run.proc = noderuntime.Process(plan.argv, plan.env, os.path.join(run.dir, "work"),
                                       log_path)
        run.ttl_term_at = time.monotonic() + bs[0]
        run.ttl_kill_at = None
        mono = time.monotonic()
        run.probes = {k: {"plan": p, "next": mono + p.initial_delay, "ok": 0, "fail": 0,
                          "future": None} for k, p in plan.probes.items()}
        run.stage = "running"
        run.waiting = None
        self.event(pod, "Normal", "Started", f"Started container {c['name']}")

    def _write_run_json(self, run, record):
        path = os.path.join(run.dir, "run.json")
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            doc = {"starts": []}
        doc["starts"].append(record)
        doc.update({k: record[k] for k in ("argv", "env_names", "env_sources", "pod_ip", "dns")})
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(path + ".tmp", path)

    # ---- a running container ------------------------------------------------------------------

    def _watch_running(self, pod, run, now):
        proc = run.proc
        if proc.poll() is not None:
            proc.finish()
            code = proc.exit_code()
            if run.timed_out:
                code = 137 if run.timeout_sigkill else 124
            self._exited(pod, run, code)
            return
        if run.ttl_term_at is not None and now >= run.ttl_term_at:
            run.ttl_term_at = None
            run.timed_out = True
            run.ttl_kill_at = now + podspec.KILL_AFTER_SECONDS
            proc.signal(signal.SIGTERM)
        if run.ttl_kill_at is not None and now >= run.ttl_kill_at:
            run.ttl_kill_at = None
            run.timeout_sigkill = True
            proc.signal(signal.SIGKILL)
        self._probe(pod, run, now)

    def _probe(self, pod, run, now):
        order = ["startup"] if not run.started_flag and "startup" in run.probes else [
            k for k in ("readiness", "liveness") if k in run.probes]
        for kind in order:
            st = run.probes[kind]
            fut = st["future"]
            if fut is not None:
                if not fut.done():
                    continue
                st["future"] = None
                ok, msg = fut.result()
                self._probe_result(pod, run, kind, st, ok, msg)
                if run.kill is not None:
                    return
            if now >= st["next"] and st["future"] is None:
                st["next"] = now + st["plan"].period
                st["future"] = self._probe_pool.submit(noderuntime.run_probe, st["plan"], run.ip)

    def _probe_result(self, pod, run, kind, st, ok, msg):
        p = st["plan"]
        label = kind.capitalize()
        if ok:
            st["ok"], st["fail"] = st["ok"] + 1, 0
            if st["ok"] >= p.success_threshold:
                if kind == "readiness":
                    run.ready = True
                elif kind == "startup":
                    run.started_flag = True
                    mono = time.monotonic()
                    for k in ("readiness", "liveness"):
                        if k in run.probes:
                            run.probes[k]["next"] = mono
            return
        st["ok"], st["fail"] = 0, st["fail"] + 1
        if p.error:
            self.event(pod, "Warning", "Unhealthy",
                       f"{label} probe errored and resulted in unknown state: {msg}")
        else:
            self.event(pod, "Warning", "Unhealthy", f"{label} probe failed: {msg}")
        if st["fail"] >= p.failure_threshold:
            if kind == "readiness":
                run.ready = False
            else:
                name = pod["spec"]["containers"][0]["name"]
                self.event(pod, "Normal", "Killing", f"Container {name} failed {kind} probe,"
                           " will be restarted")
                grace = p.grace if p.grace is not None else self._grace(pod)
                self._start_kill(pod, run, grace, then="exit")

    def _exited(self, pod, run, code):
        """The container ended with `code`: terminated state, then restart or terminal."""
        run.running = False
        run.ready = False
        run.probes = {}
        run.ttl_term_at = run.ttl_kill_at = None
        finished = time.time()
        run.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                          "startedAt": noderuntime.rfc3339(run.started_at),
                          "finishedAt": noderuntime.rfc3339(finished),
                          "containerID": run.container_id}
        run.proc = None
        policy = pod["spec"].get("restartPolicy", "Always")
        restart = (policy == "Always" or (policy == "OnFailure" and code != 0))
        if not restart or run.pod_reason is not None:
            self._terminal(run)
            return
        # The kubelet's doBackOff: the first restart is at once, then 10 s doubling to 5 min
        # (reset when the last back-off is older than twice the cap).
        mono = time.monotonic()
        if run.restart_delay is None or (run.restart_last is not None and
                                         mono - run.restart_last > 2 * self.scaled(BACKOFF_MAX)):
            run.restart_delay = self.scaled(BACKOFF_INITIAL)
            run.next_start = mono
        else:
            run.next_start = mono + run.restart_delay
            run.restart_delay = min(run.restart_delay * 2, self.scaled(BACKOFF_MAX))
        run.restart_last = mono
        run.last_state = run.terminated
        run.restart_count += 1
        run.stage = "backoff"
        if run.next_start > mono:
            delay = run.next_start - mono
            name = pod["spec"]["containers"][0]["name"]
            run.waiting = ("CrashLoopBackOff", f"back-off {_go_duration(delay)} restarting failed"
                           f" container={name} pod={fmt_pod(pod)}")
            self.event(pod, "Warning", "BackOff", f"Back-off restarting failed container {name}"
                       f" in pod {fmt_pod(pod)}")
        else:
            run.waiting = ("ContainerCreating", None)

    def _terminal(self, run):
        run.stage = "terminal"
        run.running = False
        run.waiting = None if run.terminated else run.waiting
        self._release_ip(run)

    # ---- kills and deletion -------------------------------------------------------------------

    def _start_kill(self, pod, run, grace, then):
        proc = run.proc
        if proc is None:
            return
        if grace <= 0:
            proc.signal(signal.SIGKILL)
        else:
            proc.signal(signal.SIGTERM)
        run.kill = {"deadline": time.monotonic() + max(grace, 0), "escalated": grace <= 0,
                    "then": then}

    def _progress_kill(self, pod, run):
        proc = run.proc
        if proc.poll() is not None and not proc.group_alive():
            proc.finish()
            code = proc.exit_code()
            then = run.kill["then"]
            run.kill = None
            self._exited(pod, run, code)
            if then == "terminal":
                self._terminal(run)
            return
        if proc.poll() is not None:
            proc.signal(signal.SIGKILL)   # the init is gone: so is the rest of the container
        if time.monotonic() >= run.kill["deadline"] and not run.kill["escalated"]:
            run.kill["escalated"] = True
            proc.signal(signal.SIGKILL)

    def _deleting(self, pod, run):
        grace = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        if run.proc is not None:
            if run.kill is None or run.kill["then"] != "remove":
                name = pod["spec"]["containers"][0]["name"]
                self.event(pod, "Normal", "Killing", f"Stopping container {name}")
                run.kill = None
                self._start_kill(pod, run, grace, then="remove")
            else:
                dl = time.monotonic() + grace
                if dl < run.kill["deadline"]:
                    run.kill["deadline"] = dl
            self._progress_kill(pod, run)
            if run.proc is not None:
                return
        # Nothing runs any more: the final status (terminal phase), then the removal.
        if run.stage not in ("terminal",):
            self._terminal(run)
        run.deleted = True
        self.write_status(pod, run)
        self.store.remove("Pod", run.ns, run.name)
        self._forget(run, kill=False)

    # ---- status -------------------------------------------------------------------------------

    def write_status(self, pod, run):
        st = podstatus.pod_status(pod, run, HOST_IP)
        if st == run.last_status:
            return
        run.last_status = st

        def fn(o):
            o["status"] = st
        try:
            self.store.mutate("Pod", run.ns, run.name, fn, subresource="status")
        except ApiError as e:
            if e.status != 404:
                self.sim_error(run, "status:" + e.reason, {"status_update": repr(e)})
                run.last_status = None

    # ---- endpoints used by the server ---------------------------------------------------------

    def _run_for(self, namespace, name):
        pod = self.store.get("Pod", namespace, name)
        if pod is None:
            return None, None
        return pod, self.runs.get(pod["metadata"]["uid"])

    def pod_ip(self, namespace, name):
        """The pod's IP while its sandbox lives (port-forward target), else None."""
        _pod, run = self._run_for(namespace, name)
        if run is None or run.stage in ("terminal", "gone") or not run.ip:
            return None
        return run.ip

    def sandbox_id(self, namespace, name):
        _pod, run = self._run_for(namespace, name)
        return run.sandbox_id if run else None

    def log_path(self, namespace, pod, container=None, previous=False):
        """(path of the log file the endpoint reads, container name); raises like read_log."""
        obj, run = self._run_for(namespace, pod)
        if obj is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found',
                           {"name": pod, "kind": "pods"})
        names = [c["name"] for c in obj["spec"].get("containers") or []]
        if not container:
            if len(names) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod"
                               f" {pod}, choose one of: [{' '.join(names)}]")
            container = names[0]
        elif container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        if not obj["spec"].get("nodeName"):
            return None, container
        cs = next((s for s in (obj.get("status") or {}).get("containerStatuses") or []
                   if s.get("name") == container), None)
        bad = lambda m: ApiError(400, "BadRequest", m)  # noqa: E731
        if cs is None or run is None:
            raise bad(f'container "{container}" in pod "{pod}" is waiting to start:'
                      " ContainerCreating")
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
        count = cs.get("restartCount", 0)
        if previous:
            if not last or not last.get("containerID"):
                raise bad(f'previous terminated container "{container}" in pod "{pod}" not found')
            return os.path.join(run.dir, f"{container}-{count - 1}.log"), container
        if "running" in state or "terminated" in state:
            return os.path.join(run.dir, f"{container}-{count}.log"), container
        if last:
            return os.path.join(run.dir, f"{container}-{count - 1}.log"), container
        reason = (state.get("waiting") or {}).get("reason", "")
        if reason == "ErrImagePull":
            reason = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            reason = "trying and failing to pull image"
        raise bad(f'container "{container}" in pod "{pod}" is waiting to start: {reason}')

    def read_log(self, namespace, pod, container=None, previous=False, tail_lines=None,
                 timestamps=False, since_seconds=None, since_time=None, limit_bytes=None):
        path, _c = self.log_path(namespace, pod, container, previous)
        if path is None:
            return ""
        since_ns = None
        if since_seconds is not None:
            since_ns = time.time_ns() - int(since_seconds) * 10 ** 9
        elif since_time:
            since_ns = noderuntime.parse_rfc3339(since_time)
        return noderuntime.read_log(path, tail_lines, timestamps, since_ns, limit_bytes)


def _go_duration(seconds):
    """Go's time.Duration String() for whole-ish seconds: 10s, 5m0s, 2m40s."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    return f"{s // 60}m{s % 60}s"
