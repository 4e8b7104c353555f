"""The simulated cloud's state under one lock, its clock, and the inventory.

Owns `World`: projects (the `--project` ids, with their numbers), instances keyed
(project, zone, name), firewalls keyed (project, name), operations (operations.py), service
accounts and secrets (iam.py, secrets.py), stockout rules, quota usage per region, the event
list, and a timer thread (`schedule(delay, fn)`) that drives operations, boots and
`maxRunDuration` expiries. `inventory()` is `/_sim/inventory`: everything a test asserts on.
The VM side (vmboot, forwarders) is vms.py; it is attached as `world.vms`.
"""

import heapq
import itertools
import threading
import time
import traceback
from datetime import datetime, timezone

from . import catalog


def rfc3339(t=None):
    """Compute's timestamp style: 2026-11-20T10:11:12.345-08:00 (always the Pacific offset)."""
    t = time.time() if t is None else t
    d = datetime.fromtimestamp(t - 8 * 3600, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}-08:00"


def rfc3339z(t=None):
    """Secret Manager / IAM style: 2026-11-20T18:11:12.345678Z."""
    t = time.time() if t is None else t
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class World:
    def __init__(self, opts, errors=None):
        self.opts = opts
        self.errors = errors
        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)      # notified when an operation changes
        self.projects = {p: catalog.project_number(p) for p in opts["projects"]}
        self.instances = {}         # (project, zone, name) -> dict (see instances.py)
        self.deleted = []           # summaries of deleted instances
        self.firewalls = {}         # (project, name) -> Firewall dict
        self.operations = None      # operations.Operations
        self.service_accounts = {}  # email -> dict (iam.py)
        self.deleted_service_accounts = []
        self.secrets = {}           # (project, secret id) -> dict (secrets.py)
        self.stockouts = list(opts.get("stockouts") or [])
        self.quotas = {}            # (project, region, metric) -> limit override
        for spec in opts.get("quota") or []:
            metric, _, limit = spec.partition("=")
            for p in self.projects:
                for r in catalog.REGIONS:
                    self.quotas[(p, r, metric)] = float(limit)
        self.events = []
        self.vms = None
        self._heap, self._seq = [], itertools.count()
        self._stop = threading.Event()
        self._timer_cv = threading.Condition()
        self._thread = threading.Thread(target=self._run_timers, name="gce-timers", daemon=True)

    def start(self):
        self._thread.start()

    # ----- clock -----
    def schedule(self, delay, fn):
        with self._timer_cv:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), fn))
            self._timer_cv.notify()

    def _run_timers(self):
        while not self._stop.is_set():
            with self._timer_cv:
                while not self._stop.is_set():
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, fn = heapq.heappop(self._heap)
                        break
                    self._timer_cv.wait(min(0.5, self._heap[0][0] - now) if self._heap else 0.5)
                else:
                    return
            try:
                fn()
            except Exception:
                if self.errors is not None:
                    self.errors.record("exception", {"where": "timer",
                                                     "traceback": traceback.format_exc()[-4000:]})

    def spawn(self, fn, *args):
        threading.Thread(target=self._guard, args=(fn,) + args, daemon=True).start()

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            if self.errors is not None:
                self.errors.record("exception", {"where": getattr(fn, "__name__", "thread"),
                                                 "traceback": traceback.format_exc()[-4000:]})

    def event(self, kind, **detail):
        with self.lock:
            self.events.append({"time": round(time.time(), 3), "event": kind, **detail})

    # ----- projects and quotas -----
    def number(self, project):
        return self.projects.get(project)

    def quota_limit(self, project, region, metric):
        return self.quotas.get((project, region, metric), catalog.REGION_QUOTAS.get(metric, 0))

    def usage(self, project, region, extra=()):
        """{metric: usage} of the region's live instances (plus `extra` demand dicts)."""
        use = {m: 0.0 for m in catalog.REGION_QUOTAS}
        with self.lock:
            items = [i["_demand"] for (p, z, _), i in self.instances.items()
                     if p == project and catalog.ZONES.get(z) == region
                     and i["status"] not in ("TERMINATED",)]
        for d in list(items) + list(extra):
            for k, v in d.items():
                use[k] = use.get(k, 0.0) + v
        return use

    def stockout(self, zone, machine_type, model):
        with self.lock:
            for rule in self.stockouts:
                if rule.get("zone") not in (None, zone):
                    continue
                if rule.get("machineType") not in (None, machine_type):
                    continue
                if rule.get("provisioningModel") not in (None, model):
                    continue
                if rule.get("remaining") is not None:
                    if rule["remaining"] <= 0:
                        continue
                    rule["remaining"] -= 1
                rule["hits"] = rule.get("hits", 0) + 1
                return rule
        return None

    # ----- inventory -----
    def inventory(self):
        from . import firewalls, instances
        now = time.time()
        with self.lock:
            out = {
                "projects": [{"id": p, "number": n} for p, n in self.projects.items()],
                "instances": [instances.summary(i, now) for i in self.instances.values()],
                "deleted_instances": list(self.deleted),
                "firewalls": [firewalls.summary(f) for f in self.firewalls.values()],
                "service_accounts": [dict({k: v for k, v in sa.items() if not k.startswith("_")},
                                          propagated=sa["_ready"] <= now)
                                     for sa in self.service_accounts.values()],
                "deleted_service_accounts": list(self.deleted_service_accounts),
                "secrets": [{"project": p, "secret": s, "name": v["name"],
                             "labels": dict(v["labels"]), "versions": len(v["versions"]),
                             "bindings": [{"role": b["role"], "members": list(b["members"])}
                                          for b in v["policy"]["bindings"]],
                             "accessed_by": sorted(v["_accessed_by"])}
                            for (p, s), v in self.secrets.items()],
                "operations": self.operations.summaries() if self.operations else [],
                "stockouts": list(self.stockouts),
                "foreign_addresses": list(self.vms.addresses.foreign) if self.vms else [],
                "events": list(self.events),
            }
        if self.vms is not None:
            out.update(self.vms.snapshot(out["instances"]))
        return out

    def shutdown(self):
        self._stop.set()
        with self._timer_cv:
            self._timer_cv.notify_all()
        with self.cv:
            self.cv.notify_all()
        if self.vms is not None:
            self.vms.shutdown()
