"""The endpoints controller: one core/v1 Endpoints object per Service with a selector.

Owns `EndpointsController`, a worker thread fed by Pod/Service change notifications. For each
Service it lists the pods matching the selector that have a pod IP: Ready ones go to
`addresses`, the others to `notReadyAddresses` (terminating pods are left out), with the
Service's ports resolved against each pod (named targetPorts looked up in the containers'
ports; pods missing a named port are skipped for it, as the real controller does). The
Endpoints object carries the Service's labels and is deleted with the Service.
"""

import queue
import threading

from .selectors import match_labels
from .store import ApiError


def _selector_text(sel):
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


def _resolve(port, pod):
    tp = port.get("targetPort", port.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == tp and p.get("protocol", "TCP") == port.get("protocol", "TCP"):
                return p.get("containerPort")
    return None


def _ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def desired_subsets(svc, pods):
    groups = {}
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for p in (svc.get("spec") or {}).get("ports") or []:
            num = _resolve(p, pod)
            if num is None:
                continue
            ep = {"port": num, "protocol": p.get("protocol", "TCP")}
            if p.get("name"):
                ep["name"] = p["name"]
            ports.append(ep)
        if not ports:
            continue
        key = tuple(sorted((x.get("name", ""), x["port"], x["protocol"]) for x in ports))
        g = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        addr = {"ip": ip, "nodeName": pod["spec"].get("nodeName") or "sim-node-1",
                "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                              "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}}
        g["addresses" if _ready(pod) else "notReadyAddresses"].append(addr)
    out = []
    for _, g in sorted(groups.items()):
        sub = {k: v for k, v in g.items() if v}
        for k in ("addresses", "notReadyAddresses"):
            if k in sub:
                sub[k].sort(key=lambda a: a["ip"])
        out.append(sub)
    return out


class EndpointsController:
    def __init__(self, store, errors):
        self.store, self.errors = store, errors
        self._q = queue.Queue()
        self._stop = False
        store.subscribe(self._on_change)

    def start(self):
        threading.Thread(target=self._run, name="sim-endpoints", daemon=True).start()

    def stop(self):
        self._stop = True
        self._q.put(None)

    def _on_change(self, etype, kind, obj):
        meta = obj["metadata"]
        if kind == "Service":
            self._q.put(("svc", meta["namespace"], meta["name"]))
        elif kind == "Pod":
            self._q.put(("ns", meta["namespace"], None))

    def _run(self):
        while not self._stop:
            item = self._q.get()
            if item is None:
                break
            batch = {item}
            while not self._q.empty():
                nxt = self._q.get()
                if nxt is None:
                    return
                batch.add(nxt)
            for what, ns, name in sorted(batch, key=lambda x: (x[0], x[1], x[2] or "")):
                try:
                    if what == "svc":
                        self.sync(ns, name)
                    else:
                        for svc in self.store.list("Service", ns):
                            self.sync(ns, svc["metadata"]["name"])
                except ApiError as exc:
                    if exc.status not in (404, 409, 403):
                        self.errors("endpoints", {"service": f"{ns}/{name}", "error": exc.message})
                except Exception as exc:
                    self.errors("endpoints", {"service": f"{ns}/{name}", "error": repr(exc)})

    def sync(self, ns, name):
        svc = self.store.get("Service", ns, name)
        ep = self.store.get("Endpoints", ns, name)
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            if ep is not None:
                self.store.delete("Endpoints", ns, name)
            return
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            return       # Endpoints of selector-less Services are managed by their users
        pods = [p for p in self.store.list("Pod", ns, label_selector=_selector_text(sel))
                if match_labels(_selector_text(sel), p["metadata"].get("labels"))]
        subsets = desired_subsets(svc, pods)
        labels = dict(svc["metadata"].get("labels") or {})
        if ep is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "labels": labels}}
            if subsets:
                body["subsets"] = subsets
            self.store.create("Endpoints", ns, body, internal=True)
            return
        if (ep.get("subsets") or []) == subsets and (ep["metadata"].get("labels") or {}) == labels:
            return

        def fn(o):
            if subsets:
                o["subsets"] = subsets
            else:
                o.pop("subsets", None)
            if labels:
                o["metadata"]["labels"] = labels
            else:
                o["metadata"].pop("labels", None)
        self.store.mutate("Endpoints", ns, name, fn)
