"""Server-set defaults, as the real API server's defaulting + admission plugins apply them.

Owns: pod spec defaults (dnsPolicy, schedulerName, terminationGracePeriodSeconds, restartPolicy,
serviceAccountName, the not-ready/unreachable tolerations of DefaultTolerationSeconds, priority,
enableServiceLinks, preemptionPolicy; per container terminationMessagePath/Policy,
imagePullPolicy from the tag, port protocol, probe timings, fieldRef apiVersion, requests from
limits; secret volume defaultMode) and the new-pod status (phase Pending, qosClass); Service
defaults and allocations (clusterIP 10.96.0.N, clusterIPs, ipFamilies, ipFamilyPolicy,
sessionAffinity, internalTrafficPolicy, targetPort, nodePorts 30000-32767); Namespace finalizer
and phase; Secret type. On update the allocated Service values are carried over like the real
`patchAllocatedValues`.
"""

import copy
import ipaddress

from .validate import parse_quantity

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _image_pull_policy(image):
    if not image:
        return "IfNotPresent"
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return "Always"
    return "IfNotPresent"


def _container_defaults(c):
    if not isinstance(c, dict):
        return
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image")))
    res = c.setdefault("resources", {})
    if isinstance(res, dict) and isinstance(res.get("limits"), dict):
        req = res.setdefault("requests", {})
        if isinstance(req, dict):
            for k, v in res["limits"].items():
                req.setdefault(k, v)
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for name in _PROBES:
        pr = c.get(name)
        if isinstance(pr, dict):
            pr.setdefault("timeoutSeconds", 1)
            pr.setdefault("periodSeconds", 10)
            pr.setdefault("successThreshold", 1)
            pr.setdefault("failureThreshold", 3)
            if isinstance(pr.get("httpGet"), dict):
                pr["httpGet"].setdefault("scheme", "HTTP")
                pr["httpGet"].setdefault("path", "/")
    for e in c.get("env") or []:
        if isinstance(e, dict) and isinstance(e.get("valueFrom"), dict):
            fr = e["valueFrom"].get("fieldRef")
            if isinstance(fr, dict):
                fr.setdefault("apiVersion", "v1")


def pod_spec_defaults(spec):
    """Defaults of a PodSpec (also used for the PodSpecs embedded in a DaskCluster)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    if "serviceAccountName" not in spec and "serviceAccount" in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            _container_defaults(c)
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        for src in ("secret", "configMap"):
            if isinstance(v.get(src), dict):
                v[src].setdefault("defaultMode", 0o644)


def _toleration_defaults(spec):
    tols = spec.setdefault("tolerations", [])
    if not isinstance(tols, list):
        return
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(isinstance(t, dict) and t.get("key") == key and
                   t.get("effect", "NoExecute") in ("NoExecute", "") for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300})


def qos_class(spec):
    """Guaranteed / Burstable / BestEffort from the containers' requests and limits."""
    reqs, lims, any_set, guaranteed = {}, {}, False, True
    for c in (spec.get("containers") or []):
        res = c.get("resources") or {}
        r, l = res.get("requests") or {}, res.get("limits") or {}
        if r or l:
            any_set = True
        for k in ("cpu", "memory"):
            if k not in l:
                guaranteed = False
            elif k in r:
                try:
                    if parse_quantity(r[k]) != parse_quantity(l[k]):
                        guaranteed = False
                except ValueError:
                    guaranteed = False
        reqs.update(r)
        lims.update(l)
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _used_service_values(store):
    ips, ports = set(), set()
    for svc in store.list("Service"):
        for ip in (svc.get("spec") or {}).get("clusterIPs") or []:
            ips.add(ip)
        for p in (svc.get("spec") or {}).get("ports") or []:
            if p.get("nodePort"):
                ports.add(p["nodePort"])
    return ips, ports


def _alloc_ip(store):
    used, _ = _used_service_values(store)
    for n in range(10, 65000):
        ip = str(ipaddress.ip_address("10.96.0.0") + n)
        if ip not in used:
            return ip
    raise RuntimeError("service IP range exhausted")


def _alloc_nodeport(store, taken):
    _, used = _used_service_values(store)
    for p in range(30000, 32768):
        if p not in used and p not in taken:
            return p
    raise RuntimeError("node port range exhausted")


def service_defaults(spec, store, old_spec=None):
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] == "ExternalName":
        return
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]
    if old_spec is not None:
        for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if not spec.get(f) and old_spec.get(f):
                spec[f] = copy.deepcopy(old_spec[f])
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or []}
        for p in spec.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if np and spec["type"] in ("NodePort", "LoadBalancer"):
                    p["nodePort"] = np
    if store is not None:
        if spec.get("clusterIP") in (None, ""):
            spec["clusterIP"] = _alloc_ip(store)
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            taken = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
            for p in spec.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    p["nodePort"] = _alloc_nodeport(store, taken)
                    taken.add(p["nodePort"])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def on_create(kind, obj, store):
    meta = obj["metadata"]
    if kind == "Pod":
        spec = obj.setdefault("spec", {})
        pod_spec_defaults(spec)
        if isinstance(spec, dict):
            _toleration_defaults(spec)
        obj["status"] = {"phase": "Pending"}
        if isinstance(spec, dict):
            try:
                obj["status"]["qosClass"] = qos_class(spec)
            except (AttributeError, TypeError):
                pass
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
        service_defaults(obj.setdefault("spec", {}), store)
    elif kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        if isinstance(meta.get("name"), str):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        _merge_string_data(obj)
    elif kind == "DaskCluster":
        obj.pop("status", None)
        from . import operator
        operator.defaults(obj)


def _merge_string_data(obj):
    import base64
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        data = obj.setdefault("data", {})
        for k, v in sd.items():
            if isinstance(v, str):
                data[k] = base64.b64encode(v.encode()).decode()


def on_update(kind, old, new):
    if kind == "Pod":
        pod_spec_defaults(new.get("spec"))
    elif kind == "Service":
        service_defaults(new.setdefault("spec", {}), None, old.get("spec") or {})
    elif kind == "Secret":
        new.setdefault("type", old.get("type", "Opaque"))
        _merge_string_data(new)
    elif kind == "Namespace":
        if "spec" not in new and old.get("spec"):
            new["spec"] = copy.deepcopy(old["spec"])
        lbl = new["metadata"].setdefault("labels", {})
        if isinstance(lbl, dict):
            lbl["kubernetes.io/metadata.name"] = new["metadata"]["name"]
    elif kind == "DaskCluster":
        from . import operator
        operator.defaults(new)
