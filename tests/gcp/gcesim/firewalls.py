"""VPC firewall rules: insert, get, list (filter), delete, patch; the default network's own
rules; and the ingress verdict the external-address forwarders ask for each connection.

Owns the handlers (insert and delete answer a global Operation that is DONE after
`--firewall-delay`; the rule applies from its insert), the checks Compute makes beyond the
discovery document (name and tag syntax, CIDRs, protocols and port ranges, `allowed` xor
`denied`, sources only on INGRESS; an INGRESS rule with no source at all gets `sourceRanges:
["0.0.0.0/0"]`, world-open, as Compute fills it in), the four default rules of the `default`
network at priority 65534 (allow-internal from 10.128.0.0/9, ssh, rdp, icmp from 0.0.0.0/0)
and `ingress_verdict`: the highest-priority matching rule wins, deny before allow at equal
priority, implied deny-all at 65535. Targets: no target = every instance of the network,
`targetTags`, `targetServiceAccounts`; sources: `sourceRanges`, `sourceTags` and
`sourceServiceAccounts` (matched by the source address being an instance's).
"""

import ipaddress
import re

from simkit import Response

from . import catalog, network
from .errors import gerr, invalid, not_found
from .operations import check_request_id
from .plan import NAME_RX
from .world import rfc3339

PROTOCOLS = {"tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"}


def summary(f):
    return {k: v for k, v in f.items() if not k.startswith("_")} | {
        "project": f["_project"], "world_open": "0.0.0.0/0" in (f.get("sourceRanges") or [])
        and f.get("direction") == "INGRESS" and bool(f.get("allowed"))}


def default_rules(project):
    net = network.network_link(project)
    rules = [("default-allow-internal", ["10.128.0.0/9"],
              [{"IPProtocol": "tcp", "ports": ["0-65535"]},
               {"IPProtocol": "udp", "ports": ["0-65535"]}, {"IPProtocol": "icmp"}],
              "Allow internal traffic on the default network"),
             ("default-allow-ssh", ["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["22"]}],
              "Allow SSH from anywhere"),
             ("default-allow-rdp", ["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["3389"]}],
              "Allow RDP from anywhere"),
             ("default-allow-icmp", ["0.0.0.0/0"], [{"IPProtocol": "icmp"}],
              "Allow ICMP from anywhere")]
    return {name: {"kind": "compute#firewall", "id": catalog.num_id("fw", project, name),
                   "creationTimestamp": catalog.CREATED, "name": name, "description": desc,
                   "network": net, "priority": 65534, "sourceRanges": src, "allowed": allowed,
                   "direction": "INGRESS", "logConfig": {"enable": False}, "disabled": False,
                   "selfLink": catalog.link("projects", project, "global", "firewalls", name),
                   "_project": project}
            for name, src, allowed, desc in rules}


def _ports_ok(ports):
    for p in ports or []:
        m = re.match(r"^(\d+)(?:-(\d+))?$", str(p))
        if not m:
            return False
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= 65535:
            return False
    return True


def _covers(ports, port):
    if not ports:
        return True
    for p in ports:
        lo, _, hi = str(p).partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def check(project, body, nets=None):
    """Compute's semantic checks; returns the stored rule (without id/links)."""
    f = dict(body)
    f["network"] = network.resolve_network(project, body.get("network"), "resource.network",
                                           nets)
    f.setdefault("direction", "INGRESS")
    f.setdefault("priority", 1000)
    if not 0 <= int(f["priority"]) <= 65535:
        raise invalid("resource.priority", f["priority"], "Must be between 0 and 65535.")
    if bool(f.get("allowed")) == bool(f.get("denied")):
        raise gerr(400, "invalid", "Invalid value for field 'resource': exactly one of "
                   "'allowed' and 'denied' must be set.")
    for key in ("allowed", "denied"):
        for i, r in enumerate(f.get(key) or []):
            proto = str(r.get("IPProtocol", "")).lower()
            if proto not in PROTOCOLS and not proto.isdigit():
                raise invalid(f"resource.{key}[{i}].IPProtocol", r.get("IPProtocol"),
                              "Must be tcp, udp, icmp, esp, ah, sctp, ipip, all or a number.")
            if r.get("ports") and proto not in ("tcp", "udp", "sctp"):
                raise invalid(f"resource.{key}[{i}].ports", r["ports"], "Ports may be given "
                              "only for tcp, udp and sctp.")
            if not _ports_ok(r.get("ports")):
                raise invalid(f"resource.{key}[{i}].ports", r.get("ports"),
                              "Must be a port or a range of ports like 8786-8787.")
    for key in ("sourceRanges", "destinationRanges"):
        for v in f.get(key) or []:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError:
                raise invalid(f"resource.{key}", v, "Must be a valid CIDR range.")
    for key in ("sourceTags", "targetTags"):
        for v in f.get(key) or []:
            if not NAME_RX.match(v):
                raise invalid(f"resource.{key}", v, "Must be a match of regex "
                              "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    if f["direction"] == "EGRESS" and (f.get("sourceTags") or f.get("sourceServiceAccounts")):
        raise gerr(400, "invalid", "Source tags and service accounts are only allowed on "
                   "INGRESS rules.")
    if f.get("targetTags") and f.get("targetServiceAccounts"):
        raise gerr(400, "invalid", "targetTags and targetServiceAccounts cannot both be set.")
    if f["direction"] == "INGRESS" and not (f.get("sourceRanges") or f.get("sourceTags")
                                            or f.get("sourceServiceAccounts")):
        f["sourceRanges"] = ["0.0.0.0/0"]
    if f["direction"] == "EGRESS" and not f.get("destinationRanges"):
        f["destinationRanges"] = ["0.0.0.0/0"]
    f.setdefault("disabled", False)
    f.setdefault("logConfig", {"enable": False})
    return f


def _source_matches(world, rule, src):
    try:
        ip = ipaddress.ip_address(src)
    except ValueError:
        return False, "unparsable source"
    for r in rule.get("sourceRanges") or []:
        if ip in ipaddress.ip_network(r, strict=False):
            return True, f"sourceRanges {r}"
    tags, sas = set(rule.get("sourceTags") or []), set(rule.get("sourceServiceAccounts") or [])
    if tags or sas:
        for i in world.instances.values():
            if src in (i["internal_ip"], i["external_ip"]):
                if tags & set(i["api"]["tags"]["items"]):
                    return True, f"sourceTags of {i['name']}"
                if i["sa"] in sas:
                    return True, f"sourceServiceAccounts of {i['name']}"
    return False, ""


def ingress_verdict(world, inst, proto, port, src):
    with world.lock:
        if world.instances.get((inst["project"], inst["zone"], inst["name"])) is not inst:
            return "refuse", "instance deleted"
        if inst["status"] != "RUNNING":
            return "refuse", f"instance {inst['status']}"
        net = inst["api"]["networkInterfaces"][0]["network"]
        tags = set(inst["api"]["tags"]["items"])
        hits = []
        for f in world.firewalls.values():
            if f["_project"] != inst["project"] or f["network"] != net or \
                    f.get("direction") != "INGRESS" or f.get("disabled"):
                continue
            if f.get("targetTags") and not tags & set(f["targetTags"]):
                continue
            if f.get("targetServiceAccounts") and inst["sa"] not in f["targetServiceAccounts"]:
                continue
            entries = f.get("allowed") or f.get("denied")
            if not any(str(e.get("IPProtocol")).lower() in (proto, "all")
                       and _covers(e.get("ports"), port) for e in entries):
                continue
            ok, why = _source_matches(world, f, src)
            if ok:
                hits.append((int(f.get("priority", 1000)), 0 if f.get("denied") else 1,
                             f["name"], why))
    if not hits:
        return "drop", "no rule allows it (implied deny ingress, priority 65535)"
    prio, allow, name, why = min(hits)
    return ("allow" if allow else "drop"), f"firewall {name} (priority {prio}, {why})"


def register(app, world):
    ops = world.operations

    def insert(req):
        p = app.require_project(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        f = check(p, req.body, world.vms.addresses)
        name = f["name"]
        with world.lock:
            if (p, name) in world.firewalls:
                raise gerr(409, "alreadyExists", f"The resource 'projects/{p}/global/firewalls/"
                           f"{name}' already exists")
            if sum(1 for (pp, _) in world.firewalls if pp == p) >= \
                    catalog.PROJECT_QUOTAS["FIREWALLS"]:
                raise gerr(403, "quotaExceeded", f"Quota 'FIREWALLS' exceeded.  Limit: "
                           f"{float(catalog.PROJECT_QUOTAS['FIREWALLS'])} globally.")
            f.update({"kind": "compute#firewall", "id": catalog.num_id("fw", p, name, rid or ""),
                      "creationTimestamp": rfc3339(),
                      "selfLink": catalog.link("projects", p, "global", "firewalls", name),
                      "_project": p})
            world.firewalls[(p, name)] = f
            op = ops.create(p, ("global", None), "insert", f["selfLink"], f["id"], _user(req),
                            rid)
        world.event("firewall-insert", name=name, world_open=summary(f)["world_open"])
        world.schedule(world.opts["firewall_delay"], lambda: ops.finish(op))
        return Response(200, ops.public(op))

    def get(req):
        p = app.require_project(req)
        with world.lock:
            f = world.firewalls.get((p, req.p("firewall")))
            if f is None:
                raise not_found(f"projects/{p}/global/firewalls/{req.p('firewall')}")
            return Response(200, _public(f))

    def list_(req):
        p = app.require_project(req)
        with world.lock:
            items = [_public(f) for (pp, _), f in sorted(world.firewalls.items()) if pp == p]
        return Response(200, app.page(req, "compute#firewallList",
                                      catalog.link("projects", p, "global", "firewalls"),
                                      app.filtered(req, items)))

    def delete(req):
        p = app.require_project(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        with world.lock:
            f = world.firewalls.get((p, req.p("firewall")))
            if f is None:
                raise not_found(f"projects/{p}/global/firewalls/{req.p('firewall')}")
            op = ops.create(p, ("global", None), "delete", f["selfLink"], f["id"], _user(req),
                            rid)
            del world.firewalls[(p, f["name"])]
        world.event("firewall-delete", name=f["name"])
        world.schedule(world.opts["firewall_delay"], lambda: ops.finish(op))
        return Response(200, ops.public(op))

    def patch(req):
        p = app.require_project(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        with world.lock:
            f = world.firewalls.get((p, req.p("firewall")))
            if f is None:
                raise not_found(f"projects/{p}/global/firewalls/{req.p('firewall')}")
            merged = {k: v for k, v in f.items() if not k.startswith("_")
                      and k not in ("kind", "id", "creationTimestamp", "selfLink")}
            merged.update(req.body)
            if "allowed" in req.body:
                merged.pop("denied", None)
            if "denied" in req.body:
                merged.pop("allowed", None)
            new = check(p, merged, world.vms.addresses)
            f.update(new)
            op = ops.create(p, ("global", None), "patch", f["selfLink"], f["id"], _user(req),
                            rid)
        world.schedule(world.opts["firewall_delay"], lambda: ops.finish(op))
        return Response(200, ops.public(op))

    for name, fn in (("insert", insert), ("get", get), ("list", list_), ("delete", delete),
                     ("patch", patch)):
        app.handle_op("compute.firewalls." + name, fn)


def _public(f):
    return {k: v for k, v in f.items() if not k.startswith("_")}


def _user(req):
    return (req.ctx.get("principal") or "").split(":", 1)[-1]
