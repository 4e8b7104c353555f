"""NSGs (and their securityRules), public IPs and NICs: building them from PUT bodies, the
dependency checks of their DELETEs, the public-address forwarding, and the registration of
every Microsoft.Network handler (netres.py holds the views, VNets/subnets and the common
PUT/DELETE/GET/list machinery).
"""

import random
import time

from simkit import ApiError, NO_BODY, Response

from . import lro
from .netres import (T_NIC, T_NSG, T_PIP, T_VNET, _check_rules, _delete, _etag,
                     _get, _list, _missing_ref, _put, _subnet_not_in_use, rule_view,
                     subnet_handlers, subnet_of, vnet_build)
from .network import inbound_verdict


def nsg_build(app):
    def build(r, props, old, body):
        rules = _check_rules([{"name": x.get("name"), "properties": dict(x.get("properties")
                                                                         or {})}
                              for x in props.get("securityRules") or []])
        r["props"] = dict(props, securityRules=rules)
    return build


def nsg_blockers(app):
    def check(r):
        w = app.world
        users = [n["id"] for n in w.res.values() if n["type"] == T_NIC and
                 (n["props"].get("networkSecurityGroup") or {}).get("id", "").lower()
                 == r["id"].lower()]
        users += [f"{v['id']}/subnets/{s['name']}" for v in w.res.values() if v["type"] == T_VNET
                  for s in v["props"].get("subnets") or []
                  if (s["properties"].get("networkSecurityGroup") or {}).get("id", "").lower()
                  == r["id"].lower()]
        if users:
            raise ApiError(400, "InUseNetworkSecurityGroupCannotBeDeleted",
                           f"Network security group {r['id']} cannot be deleted because it is "
                           f"in use by the following resources: {', '.join(users)}. In order to "
                           "delete the Network security group, remove the association with the "
                           "resource(s). To learn how to do this, see aka.ms/deletensg.")
    return check


def pip_build(app):
    def build(r, props, old, body):
        sku = body.get("sku") or {}
        if str(sku.get("name", "Basic")).lower() != "standard":
            raise ApiError(400, "BasicSkuPublicIpCreationNotAllowed",
                           "Basic SKU public IP addresses were retired on 30 September 2025; "
                           "create a Standard SKU public IP address (sku.name: Standard).")
        method = props.get("publicIPAllocationMethod", "Dynamic")
        if str(method).lower() != "static":
            raise ApiError(400, "StandardSkuPublicIPAddressesMustBeStatic",
                           f"Standard sku publicIp {r['id']} must have AllocationMethod set to "
                           "Static.")
        if str(props.get("publicIPAddressVersion", "IPv4")).lower() != "ipv4":
            raise ApiError(400, "InvalidRequestFormat", "the simulator models IPv4 public IPs "
                           "only")
        ip = old["props"]["ipAddress"] if old else app.addresses.public(r["id"])
        r["props"] = dict(props, publicIPAllocationMethod="Static",
                          publicIPAddressVersion="IPv4", ipAddress=ip,
                          idleTimeoutInMinutes=props.get("idleTimeoutInMinutes", 4),
                          ipTags=props.get("ipTags") or [])
        r["_zones"] = body.get("zones")
    return build


def pip_blockers(app):
    def check(r):
        if r.get("_attached"):
            raise ApiError(400, "PublicIPAddressCannotBeDeleted",
                           f"Public IP address {r['id']} can not be deleted since it is still "
                           f"allocated to resource {r['_attached']}. In order to delete the "
                           "public IP, disassociate/detach the Public IP address from the "
                           "resource.  To learn how to do this, see aka.ms/deletepublicip.")
    return check


def nic_build(app):
    w = app.world

    def build(r, props, old, body):
        confs = props.get("ipConfigurations") or []
        if not confs:
            raise ApiError(400, "InvalidRequestFormat",
                           f"Network interface {r['id']} must have one or more IP "
                           "configurations.")
        nsg = (props.get("networkSecurityGroup") or {}).get("id")
        if nsg:
            n = w.get(nsg, T_NSG)
            if n is None or n["location"] != r["location"]:
                raise _missing_ref(nsg, r["id"])
            props["networkSecurityGroup"] = {"id": n["id"]}
        old_confs = {ic["name"].lower(): ic for ic in (old["props"]["ipConfigurations"]
                                                      if old else [])}
        out, attach = [], []
        for i, c in enumerate(confs):
            p = dict(c.get("properties") or {})
            name = c.get("name") or f"ipconfig{i + 1}"
            sid = (p.get("subnet") or {}).get("id")
            subnet, vnet = subnet_of(w, sid) if sid else (None, None)
            if subnet is None or vnet["location"] != r["location"]:
                raise _missing_ref(sid, f"{r['id']}/ipConfigurations/{name}")
            sid = f"{vnet['id']}/subnets/{subnet['name']}"
            prefix = subnet["properties"].get("addressPrefix") or \
                subnet["properties"]["addressPrefixes"][0]
            prev = old_confs.get(name.lower())
            method = p.get("privateIPAllocationMethod", "Dynamic")
            owner = f"{r['id']}/ipConfigurations/{name}"
            if prev and prev["properties"]["subnet"]["id"].lower() == sid.lower() and (
                    method.lower() == "dynamic" or p.get("privateIPAddress") ==
                    prev["properties"]["privateIPAddress"]):
                ip = prev["properties"]["privateIPAddress"]
            else:
                if prev:
                    app.addresses.release(prev["properties"]["privateIPAddress"])
                ip = app.addresses.private(prefix, owner, p.get("privateIPAddress")
                                           if method.lower() == "static" else None)
            pip_ref = (p.get("publicIPAddress") or {}).get("id")
            if pip_ref:
                pip = w.get(pip_ref, T_PIP)
                if pip is None or pip["location"] != r["location"]:
                    raise _missing_ref(pip_ref, owner)
                if pip.get("_attached") and pip["_attached"].lower() != owner.lower():
                    raise ApiError(400, "PublicIPAddressInUse",
                                   f"Resource {pip['id']} is in use by {pip['_attached']}.")
                opt = ((p.get("publicIPAddress") or {}).get("properties") or {}).get(
                    "deleteOption")
                attach.append((pip, owner, opt, ip))
                p["publicIPAddress"] = {"id": pip["id"]}
            p.update(subnet={"id": sid}, privateIPAddress=ip, privateIPAllocationMethod=(
                "Static" if method.lower() == "static" else "Dynamic"),
                privateIPAddressVersion="IPv4", primary=(i == 0))
            out.append({"name": name, "properties": p})
        kept = {o["name"].lower() for o in out}
        for name, prev in old_confs.items():
            if name not in kept:
                app.addresses.release(prev["properties"]["privateIPAddress"])
        for prev in old_confs.values():
            ref = (prev["properties"].get("publicIPAddress") or {}).get("id")
            if ref and ref.lower() not in {a[0]["id"].lower() for a in attach}:
                detach(app, ref)
        r["props"] = dict(props, ipConfigurations=out)
        r.setdefault("_mac", "00-0D-3A-%02X-%02X-%02X" % tuple(random.randrange(256)
                                                                for _ in range(3)))
        for pip, owner, opt, ip in attach:
            attach_pip(app, r, pip, owner, opt, ip)
    return build


def attach_pip(app, nic, pip, owner, delete_option, private_ip):
    w = app.world
    pip["_attached"] = owner
    if delete_option:
        pip["props"]["deleteOption"] = delete_option
    pub, key = pip["props"]["ipAddress"], pip["id"].lower()
    nic_id, conf_name = nic["id"], owner.rsplit("/", 1)[-1]

    def policy(src, sport, port):
        with w.lock:
            n = w.get(nic_id, T_NIC)
            if n is None:
                return "refuse", "NIC deleted"
            ic = next((c for c in n["props"]["ipConfigurations"] if c["name"] == conf_name), None)
            if ic is None:
                return "refuse", "IP configuration gone"
            return inbound_verdict(w, n, ic, port, src)
    for port in app.opts["public_ports"]:
        try:
            app.fwd.open((key, port), (pub, port), (private_ip, port),
                         lambda src, sport, port=port: policy(src, sport, port))
        except OSError as exc:
            app.errors.record("forward-bind-failed", {
                "public_ip": pip["id"], "listen": f"{pub}:{port}", "error": str(exc),
                "hint": "public addresses need the sandbox namespace (10.0.0.0/8 on lo)"})


def detach(app, pip_id):
    pip = app.world.get(pip_id, T_PIP)
    if pip is not None:
        pip["_attached"] = None
    app.fwd.close_matching(lambda k: isinstance(k, tuple) and k[0] == str(pip_id).lower())


def nic_blockers(app):
    def check(r):
        if r.get("_vm"):
            raise ApiError(400, "NicInUse",
                           f"Network Interface {r['id']} is used by existing resource "
                           f"{r['_vm']}. In order to delete the network interface, it must be "
                           "dissociated from the resource. To learn more, see "
                           "aka.ms/deletenic.")
    return check


def on_nic_removed(app):
    def hook(r, why):
        for ic in r["props"]["ipConfigurations"]:
            app.addresses.release(ic["properties"]["privateIPAddress"])
            ref = (ic["properties"].get("publicIPAddress") or {}).get("id")
            if ref:
                detach(app, ref)
    return hook


def on_pip_removed(app):
    def hook(r, why):
        app.fwd.close_matching(lambda k: isinstance(k, tuple) and k[0] == r["id"].lower())
        app.addresses.release(r["props"].get("ipAddress"))
    return hook


def rules_handlers(app):
    w = app.world

    def nsg(req, writing=False):
        g = app.rg_or_404(req, writing=writing)
        n = w.get(w.rid(g["name"], T_NSG, req.p("networkSecurityGroupName")), T_NSG)
        if n is None:
            raise app.not_found(T_NSG, req.p("networkSecurityGroupName"), g["name"])
        return n

    def find(n, name):
        return next((x for x in n["props"]["securityRules"] if x["name"].lower() ==
                     name.lower()), None)

    def get(req):
        with w.lock:
            n = nsg(req)
            x = find(n, req.p("securityRuleName"))
            if x is None:
                raise app.not_found(f"{T_NSG}/securityRules", req.p("securityRuleName"), n["rg"])
            return Response(200, rule_view(n, x))

    def put(req):
        with w.lock:
            n = nsg(req, writing=True)
            name = req.p("securityRuleName")
            new = {"name": name, "properties": dict(req.body.get("properties") or {})}
            others = [x for x in n["props"]["securityRules"] if x["name"].lower() != name.lower()]
            _check_rules(others + [new])
            existed = len(others) != len(n["props"]["securityRules"])
            n["props"]["securityRules"] = others + [new]
            n["_etag"], n["_ready_at"] = _etag(), time.time() + app.opts["network_delay"]
            op = lro.start(app, "Microsoft.Network", n["location"], "put rule", n["id"])
            w.schedule(app.opts["network_delay"], lambda: lro.finish(w, op["id"], "Succeeded"))
            return Response(200 if existed else 201, rule_view(n, new),
                            headers=lro.headers(app, op))

    def delete(req):
        with w.lock:
            n = nsg(req, writing=True)
            x = find(n, req.p("securityRuleName"))
            if x is None:
                return Response(204)
            n["props"]["securityRules"].remove(x)
            op = lro.start(app, "Microsoft.Network", n["location"], "delete rule", n["id"])
            lro.finish(w, op["id"], "Succeeded")
        return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True))

    def lst(req):
        with w.lock:
            n = nsg(req)
            return Response(200, {"value": [rule_view(n, x) for x in n["props"]["securityRules"]]})
    return {"SecurityRules_Get": get, "SecurityRules_CreateOrUpdate": put,
            "SecurityRules_Delete": delete, "SecurityRules_List": lst}


def register(app):
    w = app.world

    def put(rtype, build):
        return lambda req: _put(app, req, rtype, build)
    builds = {T_VNET: vnet_build(app), T_NSG: nsg_build(app), T_PIP: pip_build(app),
              T_NIC: nic_build(app)}
    blockers = {T_VNET: lambda r: [_subnet_not_in_use(w, f"{r['id']}/subnets/{s['name']}")
                                   for s in r["props"].get("subnets") or []],
                T_NSG: nsg_blockers(app), T_PIP: pip_blockers(app), T_NIC: nic_blockers(app)}
    names = {T_VNET: "VirtualNetworks", T_NSG: "NetworkSecurityGroups",
             T_PIP: "PublicIPAddresses", T_NIC: "NetworkInterfaces"}
    for rtype, prefix in names.items():
        app.handle_op(f"{prefix}_CreateOrUpdate", put(rtype, builds[rtype]))
        app.handle_op(f"{prefix}_Get", lambda req, t=rtype: _get(app, req, t))
        app.handle_op(f"{prefix}_Delete", lambda req, t=rtype: _delete(app, req, t, blockers[t]))
        app.handle_op(f"{prefix}_List", lambda req, t=rtype: _list(app, req, t))
        app.handle_op(f"{prefix}_ListAll", lambda req, t=rtype: _list(app, req, t, rg=False))
    for op, fn in list(subnet_handlers(app).items()) + list(rules_handlers(app).items()):
        app.handle_op(op, fn)
    w.hooks[T_NIC.lower()] = on_nic_removed(app)
    w.hooks[T_PIP.lower()] = on_pip_removed(app)
