"""The node's service proxy and endpoints controller (kube-proxy + the endpoints controller).

Owns, for every Service with a selector:
- unless the Sim runs its own endpoints controller (`sim.endpoints`, the API half's
  endpoints.py, which then owns these objects), the core/v1 Endpoints object of the same name (ready `addresses` / `notReadyAddresses` with
  targetRef and nodeName, the resolved target ports; labels copied from the Service), kept up
  to date as pods come, go and change readiness, and removed with the Service;
- TCP proxies (one asyncio loop in its own thread): clusterIP:port, and for LoadBalancer the
  ingress IP 10.100.0.N it allocates (status.loadBalancer.ingress [{ip, ipMode: VIP}] through the
  status subresource, finalizer service.kubernetes.io/load-balancer-cleanup, the
  service-controller's events), and NodePort on 10.0.0.1:nodePort.  Each connection goes to a
  random Ready endpoint (ClientIP affinity honoured), named targetPorts resolved through that
  pod's container ports, from the client's own source address (all of 10/8 and 127/8 are local
  in the sandbox, so the pod sees the client as behind kube-proxy's DNAT).  A frontend without
  endpoints is not listened on, so clients get "connection refused" as from kube-proxy's REJECT
  rule.  loadBalancerSourceRanges are enforced on the LB address: other peers are accepted and
  then get nothing (kube-proxy drops them; a userspace proxy cannot drop a SYN).

Started and stopped by kubelet.Kubelet; binds only inside the sandbox namespace.
"""

import asyncio
import ipaddress
import random
import socket
import struct
import threading
import time

from . import noderuntime
from .store import ApiError

HOST_IP = "10.0.0.1"
LB_NET = "10.100.0."
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
DROP_HOLD_SECONDS = 300


def pod_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def find_port(pod, target):
    """A Service targetPort (number or container port name) on `pod` -> port number or None."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod.get("spec", {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == "TCP":
                return int(p["containerPort"])
    return None


def selector_matches(selector, labels):
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def endpoint_subsets(svc, pods):
    """The Endpoints subsets the endpoints controller computes for `svc` (repacked)."""
    spec = svc.get("spec") or {}
    selector = spec.get("selector")
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups = {}
    for pod in pods:
        meta = pod["metadata"]
        st = pod.get("status") or {}
        if meta.get("namespace") != svc["metadata"]["namespace"]:
            continue
        if not selector_matches(selector, meta.get("labels")):
            continue
        if not st.get("podIP") or st.get("phase") in ("Succeeded", "Failed"):
            continue
        if meta.get("deletionTimestamp") and not publish:
            continue
        ports = []
        for sp in spec.get("ports") or []:
            port = find_port(pod, sp.get("targetPort", sp.get("port")))
            if port is None:
                continue
            ep = {"port": port, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                ep["name"] = sp["name"]
            if sp.get("appProtocol"):
                ep["appProtocol"] = sp["appProtocol"]
            ports.append(ep)
        if not ports:
            continue
        addr = {"ip": st["podIP"], "targetRef": {"kind": "Pod", "namespace": meta["namespace"],
                                                 "name": meta["name"], "uid": meta["uid"]}}
        if pod["spec"].get("nodeName"):
            addr["nodeName"] = pod["spec"]["nodeName"]
        if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == svc["metadata"]["name"]:
            addr["hostname"] = pod["spec"]["hostname"]
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(key, {"ports": sorted(ports, key=lambda p: p.get("name", "")),
                                    "addresses": [], "notReadyAddresses": []})
        g["addresses" if (pod_ready(pod) or publish) else "notReadyAddresses"].append(addr)
    subsets = []
    for key in sorted(groups):
        g = groups[key]
        sub = {}
        for k in ("addresses", "notReadyAddresses"):
            if g[k]:
                sub[k] = sorted(g[k], key=lambda a: ipaddress.ip_address(a["ip"]))
        sub["ports"] = g["ports"]
        subsets.append(sub)
    return subsets


def source_ranges(svc):
    spec = svc.get("spec") or {}
    ranges = spec.get("loadBalancerSourceRanges") or []
    if not ranges:
        ann = (svc["metadata"].get("annotations") or {}).get(SOURCE_RANGES_ANNOTATION, "")
        ranges = [r.strip() for r in ann.split(",") if r.strip()]
    return [ipaddress.ip_network(r, strict=False) for r in ranges]


class Frontend:
    """One listening address of a Service port and where its connections go."""

    def __init__(self, key):
        self.key = key              # (ip, port)
        self.server = None
        self.targets = []           # [(pod ip, port)]
        self.ranges = []            # allowed source networks (LB only)
        self.affinity = None        # ClientIP timeout seconds or None
        self.sticky = {}            # client ip -> (target, expires)
        self.svc = None


class NetProxy:
    def __init__(self, sim):
        self.sim = sim
        self.store = sim.store
        self.loop = None
        self.thread = None
        self.frontends = {}         # (ip, port) -> Frontend
        self.conns = set()
        self.lb_ips = {}            # (ns, name) -> ip
        self.managed_endpoints = set()
        self.reported = set()
        # The API half may run its own endpoints controller (Sim.endpoints); then it owns the
        # Endpoints objects and this proxy only reads pods.
        self.own_endpoints = getattr(sim, "endpoints", None) is None
        self._kick_pending = False
        self._ready = threading.Event()

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self._run, name="netproxy", daemon=True)
        self.thread.start()
        self._ready.wait(5)
        self.store.subscribe(self._on_change)
        self.loop.call_soon_threadsafe(self._kick)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def stop(self):
        if self.loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        try:
            fut.result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _shutdown(self):
        for fe in list(self.frontends.values()):
            await self._close(fe)
        self.frontends.clear()
        for w in list(self.conns):
            w.close()

    def _on_change(self, etype, kind, obj):
        if kind in ("Service", "Pod") and self.loop is not None:
            self.loop.call_soon_threadsafe(self._kick)

    def _kick(self):
        if not self._kick_pending:
            self._kick_pending = True
            self.loop.call_later(0.05, lambda: asyncio.ensure_future(self._reconcile()))

    def _error(self, key, detail):
        if key not in self.reported:
            self.reported.add(key)
            self.sim.errors("netproxy", detail)

    # ---- reconcile ----------------------------------------------------------------------------

    async def _reconcile(self):
        self._kick_pending = False
        try:
            services = self.store.list("Service")
            pods = self.store.list("Pod")
            desired = {}
            live = set()
            for svc in services:
                key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
                live.add(key)
                if svc["metadata"].get("deletionTimestamp"):
                    self._finish_lb(svc)
                    continue
                for fkey, fe in self._service_frontends(svc, pods).items():
                    desired[fkey] = fe
            for key in list(self.managed_endpoints):
                if key not in live:
                    self.managed_endpoints.discard(key)
                    self.store.remove("Endpoints", key[0], key[1])
            for key in list(self.lb_ips):
                if key not in live:
                    del self.lb_ips[key]
            for fkey in list(self.frontends):
                if fkey not in desired or not desired[fkey].targets:
                    await self._close(self.frontends.pop(fkey))
            for fkey, want in desired.items():
                if not want.targets:
                    continue
                fe = self.frontends.get(fkey)
                if fe is None:
                    fe = want
                    if not await self._listen(fe):
                        continue
                    self.frontends[fkey] = fe
                else:
                    fe.targets, fe.ranges, fe.affinity, fe.svc = (want.targets, want.ranges,
                                                                  want.affinity, want.svc)
        except Exception as e:
            import traceback
            self.sim.errors("netproxy", {"error": repr(e), "trace": traceback.format_exc()})

    def _service_frontends(self, svc, pods):
        spec = svc.get("spec") or {}
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        out = {}
        if spec.get("type") == "ExternalName" or not spec.get("selector"):
            return out
        if self.own_endpoints:
            self._write_endpoints(svc, pods)
        lb_ip = self._ensure_lb(svc) if spec.get("type") == "LoadBalancer" else None
        cluster_ip = spec.get("clusterIP")
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            affinity = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
                "timeoutSeconds", 10800)
        for sp in spec.get("ports") or []:
            if sp.get("protocol", "TCP") != "TCP":
                self._error(("proto", ns, name, sp.get("port")),
                            {"service": f"{ns}/{name}", "port": sp,
                             "reason": "only TCP service ports are proxied"})
                continue
            targets = []
            for pod in pods:
                st = pod.get("status") or {}
                if (pod["metadata"].get("namespace") != ns
                        or not selector_matches(spec["selector"], pod["metadata"].get("labels"))
                        or not st.get("podIP") or st.get("phase") in ("Succeeded", "Failed")):
                    continue
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                if not (pod_ready(pod) or spec.get("publishNotReadyAddresses")):
                    continue
                port = find_port(pod, sp.get("targetPort", sp.get("port")))
                if port is not None:
                    targets.append((st["podIP"], port))
            fronts = []
            if cluster_ip and cluster_ip != "None":
                fronts.append(((cluster_ip, int(sp["port"])), []))
            if lb_ip:
                fronts.append(((lb_ip, int(sp["port"])), source_ranges(svc)))
            if sp.get("nodePort"):
                fronts.append(((HOST_IP, int(sp["nodePort"])), []))
            for fkey, ranges in fronts:
                fe = Frontend(fkey)
                fe.targets, fe.ranges, fe.affinity, fe.svc = targets, ranges, affinity, (ns, name)
                out[fkey] = fe
        return out

    def _write_endpoints(self, svc, pods):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        subsets = endpoint_subsets(svc, pods)
        labels = dict(svc["metadata"].get("labels") or {})
        labels["endpoints.kubernetes.io/managed-by"] = "endpoint-controller"
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        cur = self.store.get("Endpoints", ns, name)
        self.managed_endpoints.add((ns, name))
        if cur is not None and (cur.get("subsets") or []) == subsets and \
                (cur["metadata"].get("labels") or {}) == labels:
            return
        trigger = noderuntime.rfc3339()

        def fn(o):
            o["metadata"]["labels"] = labels
            o["metadata"].setdefault("annotations", {})[
                "endpoints.kubernetes.io/last-change-trigger-time"] = trigger
            if subsets:
                o["subsets"] = subsets
            else:
                o.pop("subsets", None)
        try:
            if cur is None:
                obj = {"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": name, "namespace": ns}}
                fn(obj)
                self.store.create("Endpoints", ns, obj, internal=True)
            else:
                self.store.mutate("Endpoints", ns, name, fn)
        except ApiError as e:
            if e.status not in (404, 409):
                self._error(("ep", ns, name, e.reason), {"service": f"{ns}/{name}",
                                                          "endpoints": repr(e)})

    def _ensure_lb(self, svc):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ip = self.lb_ips.get((ns, name))
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if ip is None and ingress and ingress[0].get("ip", "").startswith(LB_NET):
            ip = ingress[0]["ip"]
        if ip is None:
            used = set(self.lb_ips.values())
            ip = next(f"{LB_NET}{n}" for n in range(1, 255) if f"{LB_NET}{n}" not in used)
            self.store.record_event(svc, "Normal", "EnsuringLoadBalancer",
                                    "Ensuring load balancer", "service-controller")
        self.lb_ips[(ns, name)] = ip
        if LB_FINALIZER not in (svc["metadata"].get("finalizers") or []):
            def fin(o):
                o["metadata"].setdefault("finalizers", []).append(LB_FINALIZER)
            self.store.mutate("Service", ns, name, fin)
        want = [{"ip": ip, "ipMode": "VIP"}]
        if ingress != want:
            def st(o):
                o.setdefault("status", {})["loadBalancer"] = {"ingress": want}
            self.store.mutate("Service", ns, name, st, subresource="status")
            self.store.record_event(svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer",
                                    "service-controller")
        return ip

    def _finish_lb(self, svc):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        self.lb_ips.pop((ns, name), None)
        if LB_FINALIZER in (svc["metadata"].get("finalizers") or []):
            self.store.record_event(svc, "Normal", "DeletingLoadBalancer",
                                    "Deleting load balancer", "service-controller")
            self.store.drop_finalizer("Service", ns, name, LB_FINALIZER)
            self.store.record_event(svc, "Normal", "DeletedLoadBalancer",
                                    "Deleted load balancer", "service-controller")

    # ---- listeners and connections ------------------------------------------------------------

    async def _listen(self, fe):
        from .kubelet import sandbox_problem
        problem = sandbox_problem()
        if problem:
            self._error(("sandbox",), {"reason": "services are not proxied outside the sandbox"
                                                 " network namespace", "problem": problem})
            return False
        try:
            fe.server = await asyncio.start_server(
                lambda r, w: self._serve(fe, r, w), host=fe.key[0], port=fe.key[1],
                reuse_address=True)
        except OSError as e:
            self._error(("bind", fe.key), {"frontend": f"{fe.key[0]}:{fe.key[1]}",
                                           "service": "/".join(fe.svc), "bind": repr(e)})
            return False
        return True

    async def _close(self, fe):
        if fe.server is not None:
            fe.server.close()
            try:
                await asyncio.wait_for(fe.server.wait_closed(), 1)
            except Exception:
                pass
            fe.server = None

    def _pick(self, fe, client_ip):
        if fe.affinity is not None:
            hit = fe.sticky.get(client_ip)
            if hit and hit[1] > time.monotonic() and hit[0] in fe.targets:
                fe.sticky[client_ip] = (hit[0], time.monotonic() + fe.affinity)
                return hit[0]
        target = random.choice(fe.targets)
        if fe.affinity is not None:
            fe.sticky[client_ip] = (target, time.monotonic() + fe.affinity)
        return target

    async def _serve(self, fe, reader, writer):
        self.conns.add(writer)
        try:
            peer = writer.get_extra_info("peername")[0]
            if fe.ranges and not any(ipaddress.ip_address(peer) in n for n in fe.ranges):
                await self._hold(reader)
                return
            if not fe.targets:
                _reset(writer)
                return
            ip, port = self._pick(fe, peer)
            try:
                up_r, up_w = await asyncio.wait_for(
                    asyncio.open_connection(ip, port, local_addr=(peer, 0)), 10)
            except OSError:
                try:
                    up_r, up_w = await asyncio.wait_for(asyncio.open_connection(ip, port), 10)
                except (OSError, asyncio.TimeoutError):
                    _reset(writer)
                    return
            except asyncio.TimeoutError:
                _reset(writer)
                return
            self.conns.add(up_w)
            try:
                await asyncio.gather(_pump(reader, up_w), _pump(up_r, writer))
            finally:
                self.conns.discard(up_w)
                up_w.close()
        except Exception:
            pass
        finally:
            self.conns.discard(writer)
            writer.close()

    async def _hold(self, reader):
        """A dropped peer: nothing ever answers (the connection ends when it gives up)."""
        try:
            await asyncio.wait_for(_drain(reader), DROP_HOLD_SECONDS)
        except (asyncio.TimeoutError, OSError):
            pass


async def _drain(reader):
    while await reader.read(65536):
        pass


async def _pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


def _reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()
