"""Cloud firewall handlers: create, list, get, update, delete, tags, droplets, rules.

Owns DigitalOcean's checks beyond the spec: at least one rule and at most 50; ports "N", "N-M"
or "all" (returned as "0"; icmp rules carry no ports, returned "0"); addresses must parse
("invalid address"); droplet_ids must exist (at most 10 per firewall); tags named in the firewall
or in its rules must already exist (at most 5 per firewall); load balancers and Kubernetes
clusters do not exist here; a duplicate name is a 409 "duplicate name". A created firewall is
`waiting` (with `pending_changes` for the droplets it covers) and becomes `succeeded` — and only
then enforced by the public-address forwarder — after --firewall-delay. Later changes take effect
at once and show `waiting` for the same delay.
"""

import time
import uuid

from simkit import ApiError, Response

from .network import parse_address, parse_ports
from .world import iso

MAX_RULES = 50
MAX_TAGS = 5
MAX_DROPLETS = 10
MAX_TARGETS = 1000


def register(app):
    ops = {
        "firewalls_create": lambda req: create(app, req),
        "firewalls_list": lambda req: list_fws(app, req),
        "firewalls_get": lambda req: Response(200, {"firewall": fw_view(get(app, req))}),
        "firewalls_update": lambda req: update(app, req),
        "firewalls_delete": lambda req: delete(app, req),
        "firewalls_add_tags": lambda req: change(app, req, "tags", True),
        "firewalls_delete_tags": lambda req: change(app, req, "tags", False),
        "firewalls_assign_droplets": lambda req: change(app, req, "droplet_ids", True),
        "firewalls_delete_droplets": lambda req: change(app, req, "droplet_ids", False),
        "firewalls_add_rules": lambda req: rules(app, req, True),
        "firewalls_delete_rules": lambda req: rules(app, req, False),
    }
    for op, fn in ops.items():
        app.handle_op(op, fn)


def fw_view(fw):
    waiting = time.time() < fw["_settle"]
    affected = sorted(set(fw["droplet_ids"]) | set(fw.get("_tagged", [])))
    return {"id": fw["id"], "name": fw["name"], "status": "waiting" if waiting else "succeeded",
            "inbound_rules": [dict(r) for r in fw["inbound_rules"]],
            "outbound_rules": [dict(r) for r in fw["outbound_rules"]],
            "created_at": fw["created_at"], "droplet_ids": list(fw["droplet_ids"]),
            "tags": list(fw["tags"]),
            "pending_changes": [{"droplet_id": i, "removing": False, "status": "waiting"}
                                for i in affected] if waiting else []}


def get(app, req):
    with app.world.lock:
        fw = app.world.firewalls.get(req.p("firewall_id"))
    if fw is None:
        raise app.not_found()
    return fw


def _tags(app, names, where):
    out, missing = [], []
    for t in names or []:
        c = app.world.tag_canonical(t)
        if c is None:
            missing.append(t)
        elif c not in out:
            out.append(c)
    if missing:
        raise app.unprocessable(f"{where}: tag(s) {', '.join(missing)} do not exist; firewalls "
                                "may only name existing tags")
    return out


def _droplets(app, ids, where):
    missing = [i for i in ids or [] if i not in app.world.droplets]
    if missing:
        raise app.unprocessable(f"{where}: droplet(s) {', '.join(map(str, missing))} not found")
    return list(dict.fromkeys(ids or []))


def _rule(app, rule, key, where):
    proto = rule["protocol"]
    if proto == "icmp":
        ports = "0"
    else:
        rng = parse_ports(rule.get("ports"))
        if rng is None:
            raise app.unprocessable(f"{where}: invalid ports {rule.get('ports')!r}")
        ports = "0" if str(rule["ports"]).strip() in ("all", "0") else str(rule["ports"]).strip()
    target = rule.get(key) or {}
    out = {}
    total = 0
    for field in ("addresses", "droplet_ids", "load_balancer_uids", "kubernetes_ids", "tags"):
        values = target.get(field)
        if values is None:
            continue
        total += len(values)
        if len(values) > MAX_TARGETS:
            raise app.unprocessable(f"{where}.{key}.{field}: at most {MAX_TARGETS} entries")
        if field == "addresses":
            for a in values:
                if parse_address(a) is None:
                    raise app.unprocessable(f"{where}: invalid address {a!r}")
            out[field] = list(values)
        elif field == "droplet_ids":
            out[field] = _droplets(app, values, f"{where}.{key}")
        elif field == "tags":
            out[field] = _tags(app, values, f"{where}.{key}")
        elif values:
            raise app.unprocessable(f"{where}.{key}.{field}: {values[0]} not found")
        else:
            out[field] = []
    if total == 0:
        raise app.unprocessable(f"{where}: a rule needs at least one of {key}'s addresses, "
                                "droplet_ids, load_balancer_uids, kubernetes_ids or tags")
    return {"protocol": proto, "ports": ports, key: out}


def _rules(app, body):
    inbound = [_rule(app, r, "sources", f"inbound_rules[{i}]")
               for i, r in enumerate(body.get("inbound_rules") or [])]
    outbound = [_rule(app, r, "destinations", f"outbound_rules[{i}]")
                for i, r in enumerate(body.get("outbound_rules") or [])]
    return inbound, outbound


def _check(app, fw, exclude_id=None):
    n = len(fw["inbound_rules"]) + len(fw["outbound_rules"])
    if n == 0:
        raise app.unprocessable("A firewall must have at least one inbound or outbound rule.")
    if n > MAX_RULES:
        raise app.unprocessable(f"A firewall can have at most {MAX_RULES} rules ({n} given).")
    if len(fw["tags"]) > MAX_TAGS:
        raise app.unprocessable(f"A firewall can have at most {MAX_TAGS} tags.")
    if len(fw["droplet_ids"]) > MAX_DROPLETS:
        raise app.unprocessable(f"A firewall can have at most {MAX_DROPLETS} droplets; "
                                "use tags for more.")
    for other in app.world.firewalls.values():
        if other["id"] != exclude_id and other["name"] == fw["name"]:
            raise ApiError(409, "conflict", "duplicate name")


def _settle(app, fw):
    fw["_settle"] = time.time() + app.opts["firewall_delay"]
    tags = {t.lower() for t in fw["tags"]}
    fw["_tagged"] = [d.id for d in app.world.droplets.values() if tags & {t.lower() for t in d.tags}]


def create(app, req):
    b = req.body
    with app.world.lock:
        inbound, outbound = _rules(app, b)
        fw = {"id": str(uuid.uuid4()), "name": b["name"], "inbound_rules": inbound,
              "outbound_rules": outbound, "created_at": iso(time.time()),
              "droplet_ids": _droplets(app, b.get("droplet_ids"), "droplet_ids"),
              "tags": _tags(app, b.get("tags"), "tags"), "_effective": False}
        _check(app, fw)
        _settle(app, fw)
        app.world.firewalls[fw["id"]] = fw
        out = fw_view(fw)
    app.world.event("firewall-created", firewall=fw["id"], name=fw["name"])

    def effective():
        with app.world.lock:
            if fw["id"] in app.world.firewalls:
                fw["_effective"] = True
        app.world.event("firewall-effective", firewall=fw["id"])
    app.world.schedule(app.opts["firewall_delay"], effective)
    return Response(202, {"firewall": out})


def list_fws(app, req):
    with app.world.lock:
        items = [fw_view(fw) for fw in sorted(app.world.firewalls.values(),
                                              key=lambda f: f["created_at"])]
    return app.paginate(req, items, "firewalls", "/v2/firewalls")


def update(app, req):
    fw = get(app, req)
    b = req.body
    with app.world.lock:
        inbound, outbound = _rules(app, b)
        new = dict(fw, name=b["name"], inbound_rules=inbound, outbound_rules=outbound,
                   droplet_ids=_droplets(app, b.get("droplet_ids"), "droplet_ids"),
                   tags=_tags(app, b.get("tags"), "tags"))
        _check(app, new, exclude_id=fw["id"])
        _settle(app, new)
        fw.update(new)
        return Response(200, {"firewall": fw_view(fw)})


def delete(app, req):
    fw = get(app, req)
    with app.world.lock:
        app.world.firewalls.pop(fw["id"], None)
    app.world.event("firewall-deleted", firewall=fw["id"])
    return Response(204)


def change(app, req, field, add):
    fw = get(app, req)
    values = req.body.get(field) or []
    with app.world.lock:
        given = (_tags(app, values, field) if field == "tags"
                 else _droplets(app, values, field) if add else list(values))
        new = dict(fw)
        if add:
            new[field] = list(dict.fromkeys(fw[field] + given))
        else:
            new[field] = [v for v in fw[field] if v not in given]
        _check(app, new, exclude_id=fw["id"])
        _settle(app, new)
        fw.update(new)
    return Response(204)


def rules(app, req, add):
    fw = get(app, req)
    with app.world.lock:
        inbound, outbound = _rules(app, req.body)
        new = dict(fw)
        if add:
            new["inbound_rules"] = fw["inbound_rules"] + inbound
            new["outbound_rules"] = fw["outbound_rules"] + outbound
        else:
            new["inbound_rules"] = [r for r in fw["inbound_rules"] if r not in inbound]
            new["outbound_rules"] = [r for r in fw["outbound_rules"] if r not in outbound]
        _check(app, new, exclude_id=fw["id"])
        _settle(app, new)
        fw.update(new)
    return Response(204)
