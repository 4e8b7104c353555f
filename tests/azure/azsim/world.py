"""The simulated subscription's state under one lock, its timers, billing and the inventory.

Owns `World`: resource groups, resources (each a dict keyed by its lower-cased ARM id: `id`,
`type`, `name`, `rg`, `location`, `tags`, `created`, `props` = the ARM `properties` as stored,
plus internal keys starting with `_`), long-running operations (lro.py reads them), role
assignments, managed identities, issued tokens, events, deleted-resource billing; one ticker
thread for timers (`schedule`), background jobs (`spawn`), and `shutdown()`. Resource kinds
keep their own logic (compute.py, netres.py); the cascade of a resource-group delete is
`delete_group_contents`. Billing: a VM bills per second while allocated (running or stopped:
a guest power-off does NOT stop billing on Azure, only deallocation or deletion does); disks
and public IPs bill while they exist.
"""

import heapq
import itertools
import threading
import time
import traceback
import uuid

from . import catalog


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


class World:
    def __init__(self, opts, errors=None):
        self.opts = opts
        self.errors = errors
        self.sub = opts["subscription"]
        self.lock = threading.RLock()
        self._cv = threading.Condition(self.lock)
        self._timers, self._seq = [], itertools.count()
        self._stop = threading.Event()
        self._threads = []
        self.groups = {}          # lower name -> group dict
        self.res = {}             # lower id -> resource dict
        self.ops = {}             # operation id -> LRO dict (lro.py)
        self.assignments = {}     # lower id -> role assignment dict (rbac.py)
        self.principals = {}      # principalId -> {"kind", "created", "vm": lower id or None}
        self.tokens = {}          # access token -> {"principal", "kind", "exp", "aud", ...}
        self.events = []
        self.deleted = []         # billing records of deleted resources
        self.capacity = {"no_capacity": set(opts.get("no_capacity") or ()),
                         "spot_no_capacity": set(opts.get("spot_no_capacity") or ()),
                         "overconstrained": set(opts.get("overconstrained") or ())}
        self.hooks = {}           # kind -> fn(resource, why) run when a resource is removed
        self.started = time.time()

    # ----- timers and jobs -----
    def start(self):
        t = threading.Thread(target=self._tick_loop, name="azsim-ticker", daemon=True)
        t.start()
        self._threads.append(t)

    def schedule(self, delay, fn):
        with self._cv:
            heapq.heappush(self._timers, (time.time() + max(0.0, delay), next(self._seq), fn))
            self._cv.notify()

    def _tick_loop(self):
        while not self._stop.is_set():
            with self._cv:
                now = time.time()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                if not due:
                    wait = min(1.0, self._timers[0][0] - now) if self._timers else 1.0
                    self._cv.wait(max(0.01, wait))
                    continue
            for fn in due:
                self.safe(fn)

    def safe(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            if self.errors is not None:
                self.errors.record("exception", {"where": getattr(fn, "__name__", "timer"),
                                                 "traceback": traceback.format_exc()[-4000:]})

    def spawn(self, fn, *args):
        t = threading.Thread(target=self.safe, args=(fn, *args), daemon=True)
        t.start()
        with self.lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def event(self, kind, **detail):
        with self.lock:
            self.events.append({"time": round(time.time(), 3), "event": kind, **detail})

    # ----- ids -----
    def group_id(self, name):
        g = self.groups.get(str(name).lower())
        return f"/subscriptions/{self.sub}/resourceGroups/{g['name'] if g else name}"

    def rid(self, rg, rtype, name):
        """The canonical id of a resource `rtype` (e.g. Microsoft.Network/networkInterfaces)."""
        return f"{self.group_id(rg)}/providers/{rtype}/{name}"

    @staticmethod
    def key(resource_id):
        return str(resource_id).rstrip("/").lower()

    def get(self, resource_id, rtype=None):
        r = self.res.get(self.key(resource_id))
        if r is None or (rtype and r["type"].lower() != rtype.lower()):
            return None
        return r

    def add(self, rg, rtype, name, location, tags, props, **internal):
        now = time.time()
        r = {"id": self.rid(rg, rtype, name), "type": rtype, "name": name,
             "rg": str(rg).lower(), "location": location, "tags": dict(tags or {}),
             "created": now, "changed": now, "props": props, **internal}
        self.res[self.key(r["id"])] = r
        return r

    def in_group(self, rg):
        rg = str(rg).lower()
        return [r for r in self.res.values() if r["rg"] == rg]

    # ----- removal and billing -----
    def remove(self, resource_id, why):
        """Drop a resource from the state (its kind's hook stops processes, forwarders...)."""
        with self.lock:
            r = self.res.pop(self.key(resource_id), None)
            if r is None:
                return None
            now = time.time()
            bill = self.billing_of(r, now, deleted=now)
            if bill is not None:
                self.deleted.append(bill)
            self.event("deleted", id=r["id"], type=r["type"], why=why)
        hook = self.hooks.get(r["type"].lower())
        if hook is not None:
            self.safe(hook, r, why)
        return r

    def delete_group_contents(self, rg, why):
        """ARM's cascade: VMs first, then NICs, public IPs, NSGs, VNets, disks, the rest."""
        order = ["microsoft.compute/virtualmachines", "microsoft.network/networkinterfaces",
                 "microsoft.network/publicipaddresses", "microsoft.network/networksecuritygroups",
                 "microsoft.network/virtualnetworks", "microsoft.compute/disks"]
        with self.lock:
            items = sorted(self.in_group(rg), key=lambda r: (
                order.index(r["type"].lower()) if r["type"].lower() in order else len(order)))
            ids = [r["id"] for r in items]
            prefix = self.group_id(rg).lower() + "/"
            gone = [k for k, a in self.assignments.items()
                    if (a["scope"].lower() + "/").startswith(prefix)]
            for k in gone:
                self.assignments.pop(k, None)
        for rid in ids:
            self.remove(rid, why)
        return len(ids)

    def billing_of(self, r, now, deleted=None):
        t = r["type"].lower()
        end = deleted or now
        if t == "microsoft.compute/virtualmachines":
            name, rec = catalog.size(r["props"]["hardwareProfile"]["vmSize"]) or (None, None)
            hourly = rec[3] if rec else 0.0
            if str(r["props"].get("priority", "")).lower() == "spot":
                hourly = round(hourly * catalog.SPOT_DISCOUNT, 5)
            secs = r.get("_billed", 0.0)
            if r.get("_alloc_since") is not None:
                secs += max(0.0, end - r["_alloc_since"])
            return {"id": r["id"], "type": r["type"], "size": name, "power": r.get("_power"),
                    "provisioningState": r["props"].get("provisioningState"),
                    "allocated": r.get("_alloc_since") is not None and deleted is None,
                    "billed_seconds": round(secs, 1), "price_hourly": hourly,
                    "cost_usd": round(hourly * secs / 3600.0, 6),
                    "deleted_at": iso(deleted) if deleted else None}
        if t == "microsoft.compute/disks":
            sku = r.get("_sku", "Standard_LRS")
            hourly = catalog.DISK_PRICE_HOURLY.get(sku, 0.0041) * r.get("_size_gb", 30) / 32.0
        elif t == "microsoft.network/publicipaddresses":
            hourly = catalog.PUBLIC_IP_PRICE_HOURLY
        else:
            return None
        secs = max(0.0, end - r["created"])
        return {"id": r["id"], "type": r["type"], "billed_seconds": round(secs, 1),
                "price_hourly": round(hourly, 6), "cost_usd": round(hourly * secs / 3600.0, 6),
                "deleted_at": iso(deleted) if deleted else None}

    # ----- principals and tokens -----
    def new_principal(self, kind, vm=None):
        pid = str(uuid.uuid4())
        with self.lock:
            self.principals[pid] = {"kind": kind, "created": time.time(), "vm": vm}
        return pid

    def shutdown(self, rt=None, fwd=None, deadline=30.0):
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if fwd is not None:
            fwd.close_all()
        end = time.time() + deadline
        with self.lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, min(10.0, end - time.time())))
        if rt is not None:
            try:
                rt.shutdown()
            except Exception:
                if self.errors is not None:
                    self.errors.record("exception", {"where": "runtime shutdown",
                                                     "traceback": traceback.format_exc()[-4000:]})
