"""Kubernetes API simulator for clusterctl's tests (see tests/k8s/README.md).

Owns `Sim`, the object handed to every part: `store` (store.Store), `faults` (faults.Faults),
`kubelet` (kubelet.Kubelet, set by the server at start), `workdir`, `errors(kind, detail)`
(appends one JSON line to WORKDIR/sim-errors.jsonl) and `log_request(entry)`
(WORKDIR/sim-requests.jsonl). `Sim.build(...)` wires store, admission, faults and the garbage
collector and the endpoints controller together; the kubelet and the operator are started by
server.py.
"""

import json
import os
import threading
import time


class Sim:
    def __init__(self, workdir, specs_dir=None, with_dask=False, namespace="default",
                 node_cpu="4", node_memory="8Gi", python=None):
        from .faults import Faults
        from .store import Store
        from .validate import Admission
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.with_dask = with_dask
        self.namespace = namespace
        self.node_cpu, self.node_memory = str(node_cpu), str(node_memory)
        self.python = python
        self._lock = threading.Lock()
        self._err_path = os.path.join(self.workdir, "sim-errors.jsonl")
        self._req_path = os.path.join(self.workdir, "sim-requests.jsonl")
        self.request_counts = {}
        self.admission = Admission(specs_dir, errors=self.errors, with_dask=with_dask)
        self.store = Store(self.admission, errors=self.errors)
        self.faults = Faults()
        self.kubelet = None
        self.operator = None
        from .endpoints import EndpointsController
        from .gc import GarbageCollector
        self.gc = GarbageCollector(self.store, self.errors)
        self.endpoints = EndpointsController(self.store, self.errors)

    def errors(self, kind, detail):
        """Append one entry to WORKDIR/sim-errors.jsonl (tests assert the file stays empty)."""
        line = json.dumps({"time": time.time(), "kind": kind, "detail": detail}, default=str)
        with self._lock:
            with open(self._err_path, "a") as fh:
                fh.write(line + "\n")

    def log_request(self, entry):
        key = f"{entry.get('method')} {entry.get('status')}"
        line = json.dumps(entry, default=str)
        with self._lock:
            self.request_counts[key] = self.request_counts.get(key, 0) + 1
            with open(self._req_path, "a") as fh:
                fh.write(line + "\n")

    def bootstrap(self):
        """The objects a fresh cluster has: namespaces default/kube-system (+ --namespace) and the node."""
        for ns in dict.fromkeys(["default", "kube-system", "kube-public", self.namespace]):
            if self.store.get("Namespace", None, ns) is None:
                self.store.create("Namespace", None, {"metadata": {"name": ns}}, internal=True)
        if self.store.get("Node", None, "sim-node-1") is None:
            self.store.create("Node", None, node_object(self.node_cpu, self.node_memory), internal=True)
        self.gc.start()
        self.endpoints.start()


def node_object(cpu, memory):
    from .store import now_rfc3339
    ts = now_rfc3339()
    res = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"}
    cond = [
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
         "message": "kubelet has sufficient memory available"},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
         "message": "kubelet has no disk pressure"},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
         "message": "kubelet has sufficient PID available"},
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "message": "kubelet is posting ready status"},
    ]
    for c in cond:
        c["lastHeartbeatTime"] = ts
        c["lastTransitionTime"] = ts
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "sim-node-1", "labels": {
            "kubernetes.io/hostname": "sim-node-1", "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                          {"type": "Hostname", "address": "sim-node-1"}],
            "capacity": dict(res), "allocatable": dict(res), "conditions": cond,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "sim", "containerRuntimeVersion": "sim://1.0",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "v1.35.0",
                         "kubeletVersion": "v1.35.0", "machineID": "sim", "operatingSystem": "linux",
                         "osImage": "k8s-sim", "systemUUID": "sim"},
        },
    }
