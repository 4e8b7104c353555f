"""meta.k8s.io/v1 Table output (what `kubectl get` asks for with `Accept: ...;as=Table`).

Owns the column definitions and cell rendering for pods, services, secrets, configmaps, events,
namespaces, nodes, endpoints and the DaskCluster custom resource (Name/Age, like a CRD without
printer columns), after the real server's printers: pod READY/STATUS/RESTARTS/AGE (+IP, NODE
with -o wide), service TYPE/CLUSTER-IP/EXTERNAL-IP/PORT(S), etc. Rows carry the object as
PartialObjectMetadata (default), the full object (includeObject=Object) or nothing (None).
"""

import datetime

_COL = {"Name": ("string", "name", "Name must be unique within a namespace."),
        "Age": ("string", "", "CreationTimestamp is a timestamp representing the server time when "
                              "this object was created.")}


def _col(name, priority=0, type_="string", fmt="", desc=""):
    t, f, d = _COL.get(name, (type_, fmt, desc))
    return {"name": name, "type": t, "format": f, "description": d or name, "priority": priority}


def human_duration(seconds):
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    return f"{h // (24 * 365)}y"


def age(ts):
    if not ts:
        return "<unknown>"
    t = datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())


def _pod_row(p):
    st = p.get("status") or {}
    spec = p.get("spec") or {}
    total = len(spec.get("containers") or [])
    ready, restarts = 0, 0
    reason = st.get("reason") or st.get("phase") or "Pending"
    for cs in st.get("initContainerStatuses") or []:
        restarts += cs.get("restartCount", 0)
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) == 0:
            continue
        if "terminated" in state:
            reason = "Init:" + (state["terminated"].get("reason") or f"ExitCode:{state['terminated'].get('exitCode')}")
        elif "waiting" in state and state["waiting"].get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:0/{len(spec.get('initContainers') or [])}"
        break
    else:
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state:
                term = state["terminated"]
                reason = term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal")
                                                else f"ExitCode:{term.get('exitCode')}")
            elif "running" in state and cs.get("ready"):
                has_running = True
                ready += 1
            elif "running" in state:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "NotReady" if ready < total else "Running"
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [p["metadata"]["name"], f"{ready}/{total}", reason, restarts,
            age(p["metadata"].get("creationTimestamp")), st.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            "<none>"]


def _svc_row(s):
    spec = s.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    ext = spec.get("externalIPs") or []
    if t == "LoadBalancer":
        ing = [i.get("ip") or i.get("hostname") for i in
               ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        ext = ext + [i for i in ing if i]
        ext_s = ",".join(ext) if ext else "<pending>"
    elif t == "ExternalName":
        ext_s = spec.get("externalName", "<none>")
    else:
        ext_s = ",".join(ext) if ext else "<none>"
    ports = []
    for p in spec.get("ports") or []:
        if p.get("nodePort"):
            ports.append(f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}")
        else:
            ports.append(f"{p['port']}/{p.get('protocol', 'TCP')}")
    sel = spec.get("selector") or {}
    return [s["metadata"]["name"], t, spec.get("clusterIP") or "<none>", ext_s,
            ",".join(ports) or "<none>", age(s["metadata"].get("creationTimestamp")),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"]


def _event_row(e):
    io = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    first = e.get("firstTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    src = (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
    host = (e.get("source") or {}).get("host")
    return [age(last), e.get("type", ""), e.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}", io.get("fieldPath", ""),
            f"{src}, {host}" if host else src, e.get("message", ""), age(first),
            e.get("count", 1), e["metadata"]["name"]]


def _node_row(n):
    st = n.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    roles = sorted(k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
    info = st.get("nodeInfo") or {}
    addr = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [n["metadata"]["name"], status, ",".join(roles), age(n["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), addr.get("InternalIP", "<none>"),
            addr.get("ExternalIP", "<none>"), info.get("osImage", ""), info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", "")]


def _endpoints_row(e):
    eps = []
    for sub in e.get("subsets") or []:
        for a in sub.get("addresses") or []:
            for p in sub.get("ports") or [{"port": None}]:
                eps.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip"))
    return [e["metadata"]["name"], ",".join(eps) or "<none>", age(e["metadata"].get("creationTimestamp"))]


KINDS = {
    "Pod": ([_col("Name"), _col("Ready"), _col("Status"), _col("Restarts", type_="string"), _col("Age"),
             _col("IP", 1), _col("Node", 1), _col("Nominated Node", 1), _col("Readiness Gates", 1)],
            _pod_row),
    "Service": ([_col("Name"), _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                 _col("Age"), _col("Selector", 1)], _svc_row),
    "Secret": ([_col("Name"), _col("Type"), _col("Data", type_="string"), _col("Age")],
               lambda s: [s["metadata"]["name"], s.get("type", "Opaque"), len(s.get("data") or {}),
                          age(s["metadata"].get("creationTimestamp"))]),
    "ConfigMap": ([_col("Name"), _col("Data", type_="string"), _col("Age")],
                  lambda c: [c["metadata"]["name"],
                             len(c.get("data") or {}) + len(c.get("binaryData") or {}),
                             age(c["metadata"].get("creationTimestamp"))]),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Subobject", 1),
               _col("Source", 1), _col("Message"), _col("First Seen", 1), _col("Count", 1, "integer"),
               _col("Name", 1)], _event_row),
    "Namespace": ([_col("Name"), _col("Status"), _col("Age")],
                  lambda n: [n["metadata"]["name"], (n.get("status") or {}).get("phase", "Active"),
                             age(n["metadata"].get("creationTimestamp"))]),
    "Node": ([_col("Name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
              _col("Internal-IP", 1), _col("External-IP", 1), _col("OS-Image", 1),
              _col("Kernel-Version", 1), _col("Container-Runtime", 1)], _node_row),
    "Endpoints": ([_col("Name"), _col("Endpoints"), _col("Age")], _endpoints_row),
    # the CRD's additionalPrinterColumns
    "DaskCluster": ([_col("Name"), _col("Workers", type_="integer"), _col("Status"), _col("Age")],
                    lambda d: [d["metadata"]["name"], ((d.get("spec") or {}).get("worker") or {}).get("replicas"),
                               (d.get("status") or {}).get("phase", ""),
                               age(d["metadata"].get("creationTimestamp"))]),
}
for _cols in KINDS.values():
    for _c in _cols[0]:
        if _c["name"] in ("Restarts", "Data", "Count"):
            _c["type"] = "integer"


def supported(kind):
    return kind in KINDS


def table(kind, objs, include_object, list_meta):
    cols, row = KINDS[kind]
    rows = []
    for o in objs:
        r = {"cells": row(o)}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o["metadata"]}
        rows.append(r)
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
           "columnDefinitions": cols, "rows": rows}
    if list_meta is None:
        out["metadata"] = {"resourceVersion": objs[0]["metadata"].get("resourceVersion", "")} if objs else {}
    return out
