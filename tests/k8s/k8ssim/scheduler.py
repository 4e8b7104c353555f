"""The scheduler of the simulated cluster (default-scheduler, one node `sim-node-1`).

Owns binding: a pod without nodeName (schedulerName default-scheduler) is bound to the node when
its requests (podspec.pod_requests: cpu millicores, memory bytes, one pod slot) fit the Node's
allocatable minus the requests of the non-terminal pods already bound, its nodeSelector matches
the node's labels and it tolerates the node's NoSchedule/NoExecute taints.  Otherwise the pod
keeps PodScheduled False/Unschedulable with the scheduler's FitError message and a Warning
FailedScheduling event; it is retried after a relevant change (a pod added, deleted or finished,
the node changed) at most once a second, and at least every minute.  The `unschedulable` fault
reports the node as unschedulable.  Runs in the kubelet's thread.
"""

import time

from . import noderuntime, podspec
from .store import ApiError

NODE_NAME = "sim-node-1"
SCHEDULER = "default-scheduler"


class Scheduler:
    def __init__(self, kubelet):
        self.kubelet = kubelet
        self._dirty = True
        self._next = 0.0

    def on_change(self, etype, kind, obj):
        if kind == "Node" or (kind == "Pod" and (
                etype != "MODIFIED" or not (obj.get("spec") or {}).get("nodeName")
                or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"))):
            self._dirty = True

    def schedule(self, pods):
        pending = [p for p in pods if not p.get("spec", {}).get("nodeName")
                   and not p["metadata"].get("deletionTimestamp")
                   and p["spec"].get("schedulerName", SCHEDULER) == SCHEDULER
                   and (p.get("status") or {}).get("phase", "Pending") == "Pending"]
        if not pending:
            return
        now = time.monotonic()
        if now < self._next or (not self._dirty and now < self._next + 60):
            return
        self._dirty = False
        node = self.kubelet.node()
        if node is None:
            return
        alloc = node["status"].get("allocatable") or {}
        used_cpu = used_mem = used_pods = 0
        for p in pods:
            if (p.get("spec", {}).get("nodeName") == NODE_NAME
                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")):
                c, m = podspec.pod_requests(p)
                used_cpu, used_mem, used_pods = used_cpu + c, used_mem + m, used_pods + 1
        for pod in sorted(pending, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            reasons = self._fit(pod, node, alloc, used_cpu, used_mem, used_pods)
            if reasons:
                self._unschedulable(pod, reasons)
                continue
            c, m = podspec.pod_requests(pod)
            if self._bind(pod):
                used_cpu, used_mem, used_pods = used_cpu + c, used_mem + m, used_pods + 1
        self._next = now + 1.0

    def _fit(self, pod, node, alloc, used_cpu, used_mem, used_pods):
        if self.kubelet.sim.faults.pod_fault(pod) == "unschedulable":
            return ["node(s) were unschedulable"]
        spec = pod["spec"]
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return ["node(s) didn't match Pod's node affinity/selector"]
        for t in node.get("spec", {}).get("taints") or []:
            if t.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if not any(_tolerates(tol, t) for tol in spec.get("tolerations") or []):
                val = f": {t['value']}" if t.get("value") else ""
                return [f"node(s) had untolerated taint {{{t['key']}{val}}}"]
        reasons = []
        cpu, mem = podspec.pod_requests(pod)
        if used_pods + 1 > int(alloc.get("pods", "110")):
            reasons.append("Too many pods")
        if cpu and used_cpu + cpu > podspec.cpu_millis(alloc.get("cpu", "0")):
            reasons.append("Insufficient cpu")
        if mem and used_mem + mem > podspec.mem_bytes(alloc.get("memory", "0")):
            reasons.append("Insufficient memory")
        return reasons

    def _unschedulable(self, pod, reasons):
        text = ", ".join(f"1 {r}" for r in sorted(reasons))
        if pod["spec"].get("preemptionPolicy") == "Never":
            pre = "preemption: not eligible due to preemptionPolicy=Never."
        else:
            pre = ("preemption: 0/1 nodes are available: 1 No preemption victims found for"
                   " incoming pod.")
        msg = f"0/1 nodes are available: {text}. {pre}"
        now = noderuntime.rfc3339()

        def fn(o):
            st = o.setdefault("status", {})
            st["phase"] = "Pending"
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            old = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"),
                       None)
            keep = old and old.get("status") == "False" and old.get("reason") == "Unschedulable"
            conds.append({"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                          "lastTransitionTime": old["lastTransitionTime"] if keep else now,
                          "reason": "Unschedulable", "message": msg,
                          "observedGeneration": o["metadata"].get("generation", 1)})
            st["conditions"] = conds
        try:
            self.kubelet.store.mutate("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], fn,
                              subresource="status")
        except ApiError:
            return
        self.kubelet.event(pod, "Warning", "FailedScheduling", msg, SCHEDULER, container=False)

    def _bind(self, pod):
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]

        def bind(o):
            o["spec"]["nodeName"] = NODE_NAME
        try:
            self.kubelet.store.mutate("Pod", ns, name, bind)
        except ApiError as e:
            if e.status != 404:
                self.kubelet.sim.errors("scheduler", {"pod": f"{ns}/{name}", "bind": repr(e)})
            return False
        now = noderuntime.rfc3339()

        def cond(o):
            st = o.setdefault("status", {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now,
                          "observedGeneration": o["metadata"].get("generation", 1)})
            st["conditions"] = conds
        try:
            self.kubelet.store.mutate("Pod", ns, name, cond, subresource="status")
        except ApiError:
            pass
        self.kubelet.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {NODE_NAME}",
                   SCHEDULER, container=False)
        return True


def _tolerates(tol, taint):
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("operator") == "Exists":
        return not tol.get("key") or tol["key"] == taint.get("key")
    return tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", "")
