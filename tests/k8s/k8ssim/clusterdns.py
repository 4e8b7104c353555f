"""Cluster DNS for the simulated node: Service names -> clusterIPs, as CoreDNS answers a pod (pure).

Owns how a host name in a pod's resolved argv/env is looked up at container start:
- the pod's /etc/hosts as the kubelet writes it (`localhost`, the pod's hostname and, with
  `spec.subdomain`, its FQDN -> the pod IP) wins, as nsswitch `files dns` does;
- then the pod's resolv.conf (`search <ns>.svc.cluster.local svc.cluster.local cluster.local`,
  `ndots:5`): each candidate FQDN `<svc>.<ns>.svc.cluster.local` is a Service with a clusterIP;
- an answer is an IP literal the caller substitutes for the name, an NXDOMAIN (the name stays:
  the Dask process then fails to resolve it, as a pod's does), or `DNSUnsupported` (a headless or
  ExternalName Service, a pod record, or a name only an upstream resolver could answer).

Nothing here touches the network; `lookup(kind, namespace, name)` reads Services and
Namespaces.
"""

import re

CLUSTER_DOMAIN = "cluster.local"
NDOTS = 5
# `[tcp://|tls://]HOST:PORT` with HOST an IP literal or a DNS name.
ADDRESS_RE = re.compile(r"^(?P<scheme>(?:tcp|tls)://)?(?P<host>[A-Za-z0-9.-]+):(?P<port>[0-9]+)$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NXDOMAIN = "NXDOMAIN"


class DNSUnsupported(Exception):
    """The simulator cannot give this name the answer a real cluster's DNS would."""


def is_name(host):
    """A syntactically valid DNS name (not an IP literal, not all digits and dots)."""
    name = host[:-1] if host.endswith(".") else host
    if not name or re.fullmatch(r"[0-9.]+", name) or len(name) > 253:
        return False
    return all(_LABEL_RE.match(label) for label in name.lower().split("."))


class PodDNS:
    """Name resolution as seen from inside one pod."""

    def __init__(self, pod, pod_ip, lookup):
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.namespace = meta.get("namespace") or "default"
        self.lookup = lookup
        hostname = (spec.get("hostname") or meta.get("name") or "")[:63].lower()
        self.hosts = {"localhost": "127.0.0.1"}
        if hostname and pod_ip:
            self.hosts[hostname] = pod_ip
            if spec.get("subdomain"):
                fqdn = f"{hostname}.{spec['subdomain']}.{self.namespace}.svc.{CLUSTER_DOMAIN}"
                self.hosts[fqdn.lower()] = pod_ip
        self.search = [f"{self.namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}",
                       CLUSTER_DOMAIN]

    def candidates(self, name):
        """The FQDNs the pod's resolver asks, in order (resolv.conf search + ndots)."""
        if name.endswith("."):
            return [name[:-1]]
        searched = [f"{name}.{d}" for d in self.search]
        return searched + [name] if name.count(".") < NDOTS else [name] + searched

    def _zone(self, fqdn):
        """CoreDNS's kubernetes plugin for one FQDN: (ip, source), NXDOMAIN, or None when the
        name is outside the cluster zone."""
        suffix = "." + CLUSTER_DOMAIN
        if not fqdn.endswith(suffix):
            return None
        labels = fqdn[:-len(suffix)].split(".")
        if len(labels) == 3 and labels[2] == "svc":
            svc_name, ns = labels[0], labels[1]
            svc = self.lookup("Service", ns, svc_name)
            if svc is None:
                return NXDOMAIN
            spec = svc.get("spec") or {}
            if spec.get("type") == "ExternalName":
                raise DNSUnsupported(f"Service {ns}/{svc_name} is ExternalName; its CNAME to"
                                     f" {spec.get('externalName')!r} needs an upstream resolver")
            cip = spec.get("clusterIP")
            if cip == "None":
                raise DNSUnsupported(f"Service {ns}/{svc_name} is headless; CoreDNS would answer"
                                     " with its ready endpoints, which the simulator does not")
            if not cip:
                raise DNSUnsupported(f"Service {ns}/{svc_name} has no clusterIP")
            return cip, f"Service {ns}/{svc_name}"
        if len(labels) == 3 and labels[2] == "pod":
            raise DNSUnsupported(f"{fqdn}: pod A records are not simulated")
        if len(labels) == 4 and labels[3] == "svc":
            svc = self.lookup("Service", labels[2], labels[1])
            if svc is not None and (svc.get("spec") or {}).get("clusterIP") == "None":
                raise DNSUnsupported(f"{fqdn}: hostname records of the headless Service"
                                     f" {labels[2]}/{labels[1]} are not simulated")
        return NXDOMAIN

    def _authoritative_nx(self, name):
        """True when no resolver past CoreDNS could answer `name` either: names in the cluster
        domain, `<svc>.<ns>.svc`, `<svc>.<ns>` of an existing namespace, single labels."""
        labels = name.rstrip(".").split(".")
        if name.rstrip(".").endswith("." + CLUSTER_DOMAIN) or len(labels) == 1:
            return True
        if len(labels) == 3 and labels[2] == "svc":
            return True
        return len(labels) == 2 and self.lookup("Namespace", None, labels[1]) is not None

    def resolve(self, host):
        """-> {"name", "answer" (IP or NXDOMAIN), "query", "source"}; DNSUnsupported."""
        name = host.lower()
        if name.rstrip(".") in self.hosts:
            return {"name": host, "answer": self.hosts[name.rstrip(".")],
                    "query": name.rstrip("."), "source": "/etc/hosts"}
        for fqdn in self.candidates(name):
            got = self._zone(fqdn)
            if got is None or got == NXDOMAIN:
                continue
            return {"name": host, "answer": got[0], "query": fqdn, "source": got[1]}
        if not self._authoritative_nx(name):
            raise DNSUnsupported(f"{host!r} is no Service of the cluster and would be asked of an"
                                 " upstream resolver, which the simulator does not have")
        return {"name": host, "answer": NXDOMAIN, "query": self.candidates(name)[0],
                "source": "CoreDNS (no such Service)"}

    def rewrite_address(self, value):
        """`[scheme://]NAME:PORT` -> (value with NAME's IP, record) or (value, record) for an
        NXDOMAIN; (value, None) when `value` is no address with a DNS name."""
        m = ADDRESS_RE.match(value)
        if not m or not is_name(m.group("host")):
            return value, None
        rec = self.resolve(m.group("host"))
        if rec["answer"] == NXDOMAIN:
            return value, rec
        return f"{m.group('scheme') or ''}{rec['answer']}:{m.group('port')}", rec


def now_answered(records, resolver):
    """The NXDOMAIN records of a running container that its resolver would answer now (a
    Service created after the container started: a pod's retried lookup would find it)."""
    out = []
    for rec in records:
        if rec.get("answer") != NXDOMAIN:
            continue
        try:
            got = resolver.resolve(rec["name"])
        except DNSUnsupported:
            continue
        if got["answer"] != NXDOMAIN:
            out.append(got)
    return out
