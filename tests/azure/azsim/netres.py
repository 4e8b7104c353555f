"""Microsoft.Network resources: virtual networks and subnets, NSGs and their rules, public
IPs, network interfaces (2024-03-01).

Owns the handlers and the views. Every PUT answers 201 (new) or 200 with
`provisioningState: Updating` and `Azure-AsyncOperation` (+`Retry-After`); the resource becomes
`Succeeded` after `--network-delay`. Every DELETE answers 202 with `Location` and
`Azure-AsyncOperation`, the resource shows `Deleting` and goes after the delay; deleting what
does not exist is 204. ARM's dependency rules are enforced: a NIC needs an existing subnet (same
location), NSG and public IP (not held by another NIC); a NIC's dynamic private IP is allocated
at creation and returned in the PUT answer; an NSG in use (`InUseNetworkSecurityGroupCannotBe
Deleted`), a public IP held by a NIC (`PublicIPAddressCannotBeDeleted`), a NIC attached to a VM
(`NicInUse`) and a subnet holding NICs (`InUseSubnetCannotBeDeleted`, also when a VNet re-PUT
drops it: inline subnets are replaced by a re-PUT) cannot be deleted. Public IPs must be
Standard and Static (`StandardSkuPublicIPAddressesMustBeStatic`; Basic is retired); a public IP
attached to a NIC is forwarded (simkit.tcpfwd) to the NIC's private IP on `--public-ports`,
through the NSGs' inbound rules (network.py).
"""

import ipaddress
import time
import uuid

from simkit import ApiError, NO_BODY, Response

from . import catalog, lro
from .network import DEFAULT_RULES, AddressError, inbound_verdict

NET = "Microsoft.Network"
T_VNET, T_NSG = f"{NET}/virtualNetworks", f"{NET}/networkSecurityGroups"
T_PIP, T_NIC = f"{NET}/publicIPAddresses", f"{NET}/networkInterfaces"
PATH_NAME = {T_VNET: "virtualNetworkName", T_NSG: "networkSecurityGroupName",
             T_PIP: "publicIpAddressName", T_NIC: "networkInterfaceName"}


def _etag():
    return f'W/"{uuid.uuid4()}"'


def _state(r):
    if r.get("_deleting"):
        return "Deleting"
    return "Updating" if time.time() < r.get("_ready_at", 0) else "Succeeded"


def _ref(rid):
    return {"id": rid}


def subnet_of(world, subnet_id):
    """(subnet dict, vnet resource) for a subnet id, or (None, None). Lock held."""
    head, _, name = str(subnet_id).rstrip("/").rpartition("/subnets/")
    vnet = world.get(head, T_VNET)
    if vnet is None:
        return None, None
    for s in vnet["props"].get("subnets") or []:
        if s["name"].lower() == name.lower():
            return s, vnet
    return None, vnet


def _base_view(r):
    out = {"id": r["id"], "name": r["name"], "type": r["type"], "location": r["location"],
           "etag": r["_etag"]}
    if r["tags"]:
        out["tags"] = dict(r["tags"])
    return out


def subnet_view(world, vnet, s):
    sid = f"{vnet['id']}/subnets/{s['name']}"
    p = {k: v for k, v in s["properties"].items()}
    p["provisioningState"] = _state(vnet)
    p.setdefault("privateEndpointNetworkPolicies", "Disabled")
    p.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
    confs = [c for c in world.res.values() if c["type"] == T_NIC
             for ic in c["props"]["ipConfigurations"]
             if ic["properties"]["subnet"]["id"].lower() == sid.lower()
             for c in [dict(c, _ic=ic)]]
    if confs:
        p["ipConfigurations"] = [_ref(f"{c['id']}/ipConfigurations/{c['_ic']['name']}")
                                 for c in confs]
    return {"id": sid, "name": s["name"], "etag": vnet["_etag"],
            "type": f"{T_VNET}/subnets", "properties": p}


def view(world, r):
    out = _base_view(r)
    p = {k: v for k, v in r["props"].items() if not k.startswith("_")}
    p["provisioningState"] = _state(r)
    p["resourceGuid"] = r["_guid"]
    t = r["type"]
    if t == T_VNET:
        p["subnets"] = [subnet_view(world, r, s) for s in r["props"].get("subnets") or []]
        p.setdefault("virtualNetworkPeerings", [])
        p.setdefault("enableDdosProtection", False)
    elif t == T_NSG:
        p["securityRules"] = [rule_view(r, x) for x in r["props"].get("securityRules") or []]
        p["defaultSecurityRules"] = [{
            "id": f"{r['id']}/defaultSecurityRules/{n}", "name": n, "etag": r["_etag"],
            "type": f"{T_NSG}/defaultSecurityRules",
            "properties": {"description": desc, "protocol": "*", "sourcePortRange": "*",
                           "destinationPortRange": "*", "sourceAddressPrefix": src,
                           "destinationAddressPrefix": dst, "access": a, "priority": prio,
                           "direction": d, "provisioningState": "Succeeded",
                           "sourcePortRanges": [], "destinationPortRanges": [],
                           "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}}
            for n, prio, d, a, src, dst, desc in DEFAULT_RULES]
        nics = [_ref(x["id"]) for x in world.res.values() if x["type"] == T_NIC and
                (x["props"].get("networkSecurityGroup") or {}).get("id", "").lower() ==
                r["id"].lower()]
        subs = [_ref(f"{v['id']}/subnets/{s['name']}") for v in world.res.values()
                if v["type"] == T_VNET for s in v["props"].get("subnets") or []
                if (s["properties"].get("networkSecurityGroup") or {}).get("id", "").lower()
                == r["id"].lower()]
        if nics:
            p["networkInterfaces"] = nics
        if subs:
            p["subnets"] = subs
    elif t == T_PIP:
        out["sku"] = {"name": "Standard", "tier": "Regional"}
        if r.get("_zones"):
            out["zones"] = list(r["_zones"])
        if r.get("_attached"):
            p["ipConfiguration"] = _ref(r["_attached"])
    elif t == T_NIC:
        p["ipConfigurations"] = [{
            "id": f"{r['id']}/ipConfigurations/{ic['name']}", "name": ic["name"],
            "etag": r["_etag"], "type": f"{T_NIC}/ipConfigurations",
            "properties": dict(ic["properties"], provisioningState=_state(r))}
            for ic in r["props"]["ipConfigurations"]]
        if r.get("_vm"):
            p["virtualMachine"] = _ref(r["_vm"])
            p["primary"] = True
            p["macAddress"] = r["_mac"]
        p.setdefault("enableAcceleratedNetworking", False)
        p.setdefault("enableIPForwarding", False)
        p["dnsSettings"] = dict(p.get("dnsSettings") or {}, dnsServers=(
            p.get("dnsSettings") or {}).get("dnsServers", []), appliedDnsServers=[],
            internalDomainNameSuffix=f"{r['_guid'][:8]}.bx.internal.cloudapp.net")
        p.update(hostedWorkloads=[], tapConfigurations=[], nicType="Standard",
                 vnetEncryptionSupported=False, disableTcpStateTracking=False,
                 auxiliaryMode="None", auxiliarySku="None")
    out["properties"] = p
    return out


def rule_view(nsg, rule):
    return {"id": f"{nsg['id']}/securityRules/{rule['name']}", "name": rule["name"],
            "etag": nsg["_etag"], "type": f"{T_NSG}/securityRules",
            "properties": dict(rule["properties"], provisioningState=_state(nsg))}


# ----- validation helpers -----

def _check_rules(rules):
    seen = {}
    for r in rules:
        p = r.get("properties") or {}
        prio, d = p.get("priority"), p.get("direction")
        if not isinstance(prio, int) or not 100 <= prio <= 4096:
            raise ApiError(400, "SecurityRuleInvalidPriority",
                           f"Security rule {r.get('name')} has invalid Priority. Value provided: "
                           f"{prio} Allowed range 100-4096.")
        if (prio, str(d).lower()) in seen:
            raise ApiError(400, "SecurityRuleConflict", f"Security rule {r.get('name')} conflicts "
                           f"with rule {seen[(prio, str(d).lower())]}. Rules cannot have the "
                           "same Priority and Direction.")
        seen[(prio, str(d).lower())] = r.get("name")
        for single, plural in (("sourceAddressPrefix", "sourceAddressPrefixes"),
                               ("destinationAddressPrefix", "destinationAddressPrefixes"),
                               ("destinationPortRange", "destinationPortRanges")):
            if p.get(single) and p.get(plural):
                raise ApiError(400, "InvalidRequestFormat", f"Security rule {r.get('name')}: "
                               f"{single} and {plural} cannot both be given.")
            if not p.get(single) and not p.get(plural):
                raise ApiError(400, "SecurityRuleInvalidAddressPrefix" if "Address" in single
                               else "SecurityRuleInvalidPortRange",
                               f"Security rule {r.get('name')} has no {single}.")
        for key in ("protocol", "access", "direction"):
            canon = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "esp": "Esp", "ah": "Ah",
                     "*": "*", "allow": "Allow", "deny": "Deny", "inbound": "Inbound",
                     "outbound": "Outbound"}
            if isinstance(p.get(key), str):
                p[key] = canon.get(p[key].lower(), p[key])
        if p.get("sourcePortRange") is None and not p.get("sourcePortRanges"):
            p["sourcePortRange"] = "*"
        for k in ("sourcePortRanges", "destinationPortRanges", "sourceAddressPrefixes",
                  "destinationAddressPrefixes"):
            p.setdefault(k, [])
    return rules


def _loc(app, given, what):
    loc = catalog.location(given)
    if loc is None:
        raise ApiError(400, "LocationNotAvailableForResourceType",
                       f"The provided location '{given}' is not available for resource type "
                       f"'{what}'. List of available regions for the resource type is "
                       f"'{','.join(catalog.LOCATIONS)}'.")
    return loc


def _put(app, req, rtype, build):
    """The common PUT: group checks, create or update, the LRO headers."""
    w = app.world
    g = app.rg_or_404(req, writing=True)
    name = req.p(PATH_NAME[rtype])
    b = req.body
    if "location" not in b:
        raise ApiError(400, "LocationRequired", "The location property is required for this "
                       "definition.")
    loc = _loc(app, b["location"], rtype)
    from .resources import _tags_ok
    _tags_ok(b.get("tags"))
    with w.lock:
        old = w.get(w.rid(g["name"], rtype, name), rtype)
        if old is not None and old.get("_deleting"):
            raise ApiError(409, "Conflict",
                           f"Resource {old['id']} is being deleted.")
        if old is not None and old["location"] != loc:
            raise ApiError(400, "InvalidResourceLocation",
                           f"Resource {old['id']} already exists in location {old['location']}.")
        props = dict(b.get("properties") or {})
        r = old or w.add(g["name"], rtype, name, loc, b.get("tags"), {}, _guid=str(uuid.uuid4()))
        try:
            build(r, props, old, b)
        except (ApiError, AddressError) as exc:
            if old is None:
                w.res.pop(w.key(r["id"]), None)
            if isinstance(exc, AddressError):
                raise ApiError(400, exc.code, exc.message)
            raise
        r["tags"], r["_etag"], r["changed"] = dict(b.get("tags") or {}), _etag(), time.time()
        r["_ready_at"] = time.time() + app.opts["network_delay"]
        op = lro.start(app, NET, loc, f"put {rtype}", r["id"])
        w.schedule(app.opts["network_delay"], lambda: lro.finish(w, op["id"], "Succeeded"))
        w.event("network-put", id=r["id"], created=old is None)
        body = view(w, r)
    return Response(200 if old else 201, body, headers=lro.headers(app, op))


def _delete(app, req, rtype, blockers):
    w = app.world
    g = app.rg_or_404(req, writing=True)
    with w.lock:
        r = w.get(w.rid(g["name"], rtype, req.p(PATH_NAME[rtype])), rtype)
        if r is None:
            return Response(204)
        blockers(r)
        r["_deleting"] = True
        op = lro.start(app, NET, r["location"], f"delete {rtype}", r["id"])

    def gone():
        w.remove(r["id"], "DELETE")
        lro.finish(w, op["id"], "Succeeded")
    w.schedule(app.opts["network_delay"], gone)
    return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True))


def _get(app, req, rtype):
    w = app.world
    g = app.rg_or_404(req)
    with w.lock:
        r = w.get(w.rid(g["name"], rtype, req.p(PATH_NAME[rtype])), rtype)
        if r is None:
            raise app.not_found(rtype, req.p(PATH_NAME[rtype]), g["name"])
        return Response(200, view(w, r))


def _list(app, req, rtype, rg=True):
    w = app.world
    name = app.rg_or_404(req)["name"].lower() if rg else None
    with w.lock:
        items = [view(w, r) for r in sorted(w.res.values(), key=lambda r: r["id"].lower())
                 if r["type"] == rtype and (name is None or r["rg"] == name)]
    return Response(200, {"value": items})


# ----- VNets and subnets -----

def _subnets(app, vnet, given, old_subnets):
    w = app.world
    space = [ipaddress.ip_network(p, strict=False) for p in
             vnet["props"]["addressSpace"]["addressPrefixes"]]
    out = []
    for s in given:
        p = dict(s.get("properties") or {})
        prefix = p.get("addressPrefix") or (p.get("addressPrefixes") or [None])[0]
        if not prefix:
            raise ApiError(400, "InvalidRequestFormat",
                           f"Subnet {s.get('name')} is missing an address prefix.")
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise ApiError(400, "InvalidAddressPrefixFormat", f"Address prefix {prefix} of "
                           f"resource {vnet['id']}/subnets/{s.get('name')} is not formatted "
                           "correctly.")
        if not any(net.subnet_of(sp) for sp in space if sp.version == net.version):
            raise ApiError(400, "NetcfgSubnetRangeOutsideVnet",
                           f"Subnet '{s.get('name')}' is not valid because its IP address range "
                           "is outside the IP address range of virtual network.")
        nsg = (p.get("networkSecurityGroup") or {}).get("id")
        if nsg and w.get(nsg, T_NSG) is None:
            raise _missing_ref(nsg, f"{vnet['id']}/subnets/{s.get('name')}")
        if nsg:
            p["networkSecurityGroup"] = {"id": w.get(nsg, T_NSG)["id"]}
        out.append({"name": s.get("name"), "properties": p})
    kept = {s["name"].lower() for s in out}
    for s in old_subnets or []:
        if s["name"].lower() not in kept:
            _subnet_not_in_use(w, f"{vnet['id']}/subnets/{s['name']}")
    return out


def _missing_ref(ref, by):
    return ApiError(400, "InvalidResourceReference",
                    f"Resource {ref} referenced by resource {by} was not found. Please make sure "
                    "that the referenced resource exists, and that both resources are in the "
                    "same region.")


def _subnet_not_in_use(w, sid):
    users = [f"{n['id']}/ipConfigurations/{ic['name']}" for n in w.res.values()
             if n["type"] == T_NIC for ic in n["props"]["ipConfigurations"]
             if ic["properties"]["subnet"]["id"].lower() == sid.lower()]
    if users:
        raise ApiError(400, "InUseSubnetCannotBeDeleted",
                       f"Subnet {sid.rsplit('/', 1)[-1]} is in use by {users[0]} and cannot be "
                       "deleted. In order to delete the subnet, delete all the resources within "
                       "the subnet. See aka.ms/deletesubnet.")


def vnet_build(app):
    def build(r, props, old, body):
        space = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        if not space:
            raise ApiError(400, "InvalidRequestFormat",
                           "The virtual network must have an address space.")
        for p in space:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ApiError(400, "InvalidAddressPrefixFormat", f"Address prefix {p} is not "
                               "formatted correctly.")
        r["props"] = dict(props, addressSpace={"addressPrefixes": list(space)})
        r["props"]["subnets"] = _subnets(app, r, props.get("subnets") or [],
                                         old["props"].get("subnets") if old else None)
    return build


def subnet_handlers(app):
    w = app.world

    def vnet(req, writing=False):
        g = app.rg_or_404(req, writing=writing)
        v = w.get(w.rid(g["name"], T_VNET, req.p("virtualNetworkName")), T_VNET)
        if v is None:
            raise app.not_found(T_VNET, req.p("virtualNetworkName"), g["name"])
        return v

    def get(req):
        with w.lock:
            v = vnet(req)
            for s in v["props"]["subnets"]:
                if s["name"].lower() == req.p("subnetName").lower():
                    return Response(200, subnet_view(w, v, s))
            raise app.not_found(f"{T_VNET}/subnets", req.p("subnetName"), v["rg"])

    def put(req):
        with w.lock:
            v = vnet(req, writing=True)
            others = [s for s in v["props"]["subnets"]
                      if s["name"].lower() != req.p("subnetName").lower()]
            new = _subnets(app, v, [{"name": req.p("subnetName"),
                                     "properties": req.body.get("properties") or {}}], None)
            existed = len(others) != len(v["props"]["subnets"])
            v["props"]["subnets"] = others + new
            v["_etag"], v["_ready_at"] = _etag(), time.time() + app.opts["network_delay"]
            op = lro.start(app, NET, v["location"], "put subnet", v["id"])
            w.schedule(app.opts["network_delay"], lambda: lro.finish(w, op["id"], "Succeeded"))
            return Response(200 if existed else 201, subnet_view(w, v, new[0]),
                            headers=lro.headers(app, op))

    def delete(req):
        with w.lock:
            v = vnet(req, writing=True)
            sid = f"{v['id']}/subnets/{req.p('subnetName')}"
            _subnet_not_in_use(w, sid)
            before = len(v["props"]["subnets"])
            v["props"]["subnets"] = [s for s in v["props"]["subnets"]
                                     if s["name"].lower() != req.p("subnetName").lower()]
            if before == len(v["props"]["subnets"]):
                return Response(204)
            op = lro.start(app, NET, v["location"], "delete subnet", sid)
            lro.finish(w, op["id"], "Succeeded")
        return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True))

    def lst(req):
        with w.lock:
            v = vnet(req)
            return Response(200, {"value": [subnet_view(w, v, s) for s in v["props"]["subnets"]]})
    return {"Subnets_Get": get, "Subnets_CreateOrUpdate": put, "Subnets_Delete": delete,
            "Subnets_List": lst}
