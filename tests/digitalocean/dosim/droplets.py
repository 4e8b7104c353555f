"""Droplet handlers: create, list, get, delete (by id and by tag), actions, the droplet model.

Owns the validation DigitalOcean does on `POST /v2/droplets` beyond the spec (≤10 names; region
known/available — a prefix like `nyc` or no region picks one offering the size; "Size is not
available in this region."; image id or slug; ssh_keys by id or fingerprint must exist; tag
names; user_data ≤ 64 KiB; public_networking=false needs ipv6=false; no volumes; the account's
droplet limit "creating this/these droplet(s) will exceed your droplet limit"), the droplet
model (never with user_data: the API has no such field), listings (a droplet younger than
--list-lag is left out of `GET /v2/droplets` but `GET /v2/droplets/{id}` shows it; GPU droplets
only with type=gpus; tag_name exact-case and not combinable with name or type), and droplet
actions power_off, shutdown, power_on, reboot, power_cycle.
"""

import re
import time

from simkit import ApiError, Response

from . import catalog
from .resources import action_view, actions_list
from .world import iso

TAG_RE = re.compile(r"^[a-zA-Z0-9_\-:]+$")
USER_DATA_LIMIT = 64 * 1024
MAX_NAMES = 10
POWER_ACTIONS = ("power_off", "shutdown", "power_on", "reboot", "power_cycle")


def register(app):
    ops = {
        "droplets_create": lambda req: create(app, req),
        "droplets_list": lambda req: list_droplets(app, req),
        "droplets_get": lambda req: Response(200, {"droplet": view(app, get(app, req))}),
        "droplets_destroy": lambda req: destroy(app, req),
        "droplets_destroy_byTag": lambda req: destroy_by_tag(app, req),
        "dropletActions_post": lambda req: post_action(app, req),
        "dropletActions_post_byTag": lambda req: post_action_by_tag(app, req),
        "dropletActions_list": lambda req: actions_list(app, req, get(app, req).id),
        "dropletActions_get": lambda req: droplet_action(app, req),
        "droplets_list_firewalls": lambda req: droplet_firewalls(app, req),
    }
    for op, fn in ops.items():
        app.handle_op(op, fn)


def is_gpu(d):
    return d.size in catalog.GPU_INFO


def view(app, d):
    """The droplet as the API shows it (call with or without the world lock)."""
    size = catalog.size(d.size)
    v4 = []
    if d.private_visible:
        v4.append({"ip_address": d.private_ip, "netmask": d.private_mask, "gateway": "nil",
                   "type": "private"})
    if d.public_visible:
        v4.append({"ip_address": d.public_ip, "netmask": d.public_mask, "gateway": d.public_gw,
                   "type": "public"})
    v6 = []
    if d.v6 and d.public_visible:
        v6.append({"ip_address": d.v6[0], "netmask": d.v6[1], "gateway": d.v6[2],
                   "type": "public"})
    features = ["private_networking"]
    if d.with_droplet_agent is not False:
        features.insert(0, "droplet_agent")
    for flag, name in ((d.monitoring, "monitoring"), (d.ipv6, "ipv6"), (d.backups, "backups")):
        if flag:
            features.append(name)
    out = {"id": d.id, "name": d.name, "memory": size["memory"], "vcpus": size["vcpus"],
           "disk": size["disk"], "disk_info": size["disk_info"], "locked": False,
           "status": d.status, "kernel": None, "created_at": iso(d.created),
           "features": features, "backup_ids": [], "next_backup_window": None,
           "snapshot_ids": [], "image": dict(d.image), "volume_ids": [], "size": size,
           "size_slug": d.size, "networks": {"v4": v4, "v6": v6},
           "region": catalog.region(d.region), "tags": list(d.tags), "vpc_uuid": d.vpc_uuid}
    if is_gpu(d):
        out["gpu_info"] = catalog.GPU_INFO[d.size]
    return out


def get(app, req):
    with app.world.lock:
        d = app.world.droplets.get(req.p("droplet_id"))
    if d is None:
        raise app.not_found()
    return d


def _region(app, wanted, size):
    slugs = [r["slug"] for r in catalog.regions()]
    if wanted:
        if wanted in slugs:
            if wanted not in catalog.AVAILABLE_REGIONS:
                raise app.unprocessable("Region is not available")
            if wanted not in size["regions"]:
                raise app.unprocessable("Size is not available in this region.")
            return wanted
        candidates = [s for s in catalog.AVAILABLE_REGIONS if s.startswith(wanted)]
        if not candidates:
            raise app.unprocessable("You specified an invalid region for Droplet creation.")
    else:
        candidates = list(catalog.AVAILABLE_REGIONS)
    for s in candidates:
        if s in size["regions"]:
            return s
    raise app.unprocessable("Size is not available in this region.")


def _ssh_keys(app, given):
    ids, missing = [], []
    with app.world.lock:
        keys = list(app.world.keys.values())
    for ident in given or []:
        hit = None
        for k in keys:
            if (isinstance(ident, int) and k["id"] == ident) or \
               (isinstance(ident, str) and (k["fingerprint"] == ident or str(k["id"]) == ident)):
                hit = k
        if hit is None:
            missing.append(str(ident))
        elif hit["id"] not in ids:
            ids.append(hit["id"])
    if missing:
        raise app.unprocessable(f"{', '.join(missing)} are invalid key identifiers for Droplet "
                                "creation.")
    return ids


def create(app, req):
    b = req.body
    names = [b["name"]] if "name" in b else list(b["names"])
    if not names:
        raise app.unprocessable("You must specify at least one name.")
    if len(names) > MAX_NAMES:
        raise app.unprocessable(f"You can only create up to {MAX_NAMES} Droplets at once.")
    size = catalog.size(b["size"])
    if size is None:
        raise app.unprocessable("You specified an invalid size for Droplet creation.")
    region = _region(app, b.get("region"), size)
    image = catalog.image(b["image"])
    if image is None or region not in image["regions"]:
        raise app.unprocessable("You specified an invalid image for Droplet creation.")
    keys = _ssh_keys(app, b.get("ssh_keys"))
    tags = []
    for t in b.get("tags") or []:
        if not TAG_RE.match(t) or len(t) > 255:
            raise app.unprocessable(f'Error validating resource tag: "tag-name \\"{t}\\" '
                                    'contains invalid characters"')
        if t.lower() not in [x.lower() for x in tags]:
            tags.append(t)
    user_data = b.get("user_data")
    if user_data is not None and len(user_data.encode()) > USER_DATA_LIMIT:
        raise app.unprocessable("user_data must be 64 KiB or less.")
    if b.get("public_networking") is False and b.get("ipv6"):
        raise app.unprocessable("ipv6 must be false when public_networking is false.")
    if b.get("volumes"):
        raise app.unprocessable(f"volume {b['volumes'][0]} could not be found.")
    vpc = b.get("vpc_uuid") or catalog.vpc_id(region)
    if not any(v["id"] == vpc and v["region"] == region for v in app.world.vpcs):
        raise app.unprocessable("The VPC does not exist or is not in the Droplet's region.")
    with app.world.lock:
        if len(app.world.droplets) + len(names) > app.opts["droplet_limit"]:
            raise app.unprocessable("creating this/these droplet(s) will exceed your droplet "
                                    "limit")
        tags = [app.world.ensure_tag(t) for t in tags]
        fields = {"region": region, "size": size["slug"], "image": image, "vpc_uuid": vpc,
                  "tags": tags, "ssh_keys": keys, "user_data": user_data,
                  "monitoring": b.get("monitoring"), "backups": b.get("backups"),
                  "ipv6": b.get("ipv6"), "public_networking": b.get("public_networking", True),
                  "with_droplet_agent": b.get("with_droplet_agent")}
        made = app.world.create_droplets(names, fields)
        views = [view(app, d) for d in made]
    links = {"actions": [{"id": d.action_id, "rel": "create",
                          "href": f"{app.base_url}/v2/actions/{d.action_id}"} for d in made]}
    if "name" in b:
        return Response(202, {"droplet": views[0], "links": links})
    return Response(202, {"droplets": views, "links": links})


def list_droplets(app, req):
    tag, name, typ = req.q("tag_name"), req.q("name"), req.q("type")
    if tag is not None and (name is not None or typ is not None):
        raise ApiError(400, "bad_request", "tag_name cannot be combined with name or type")
    now, lag = time.time(), app.opts["list_lag"]
    with app.world.lock:
        items = sorted(app.world.droplets.values(), key=lambda d: d.id)
        items = [d for d in items if now - d.created >= lag]
        if tag is not None:
            items = [d for d in items if tag in d.tags]
        if name is not None:
            items = [d for d in items if d.name.lower() == name.lower()]
        items = [d for d in items if is_gpu(d) == (typ == "gpus")]
        views = [view(app, d) for d in items]
    return app.paginate(req, views, "droplets", "/v2/droplets")


def destroy(app, req):
    d = get(app, req)
    app.world.delete_droplet(d.id)
    return Response(204)


def destroy_by_tag(app, req):
    tag = req.q("tag_name")
    with app.world.lock:
        if app.world.tag_canonical(tag, exact=True) is None:
            raise app.not_found()
        ids = [d.id for d in app.world.droplets.values() if tag in d.tags]
    for did in ids:
        app.world.delete_droplet(did, why=f"DELETE ?tag_name={tag}")
    return Response(204)


def _check_power(app, d, kind, req):
    if kind not in POWER_ACTIONS:
        app.errors.record("not-simulated", {"request_id": req.id, "operation": req.op_id,
                                            "action": kind})
        raise ApiError(501, "not_implemented", f"droplet action {kind!r} is not simulated "
                       f"(only {', '.join(POWER_ACTIONS)})")
    with app.world.lock:
        status = d.status
    if status == "new":
        raise app.unprocessable("Droplet is currently being created; try again when it is active.")
    if kind == "power_on" and status == "active":
        raise app.unprocessable("Droplet is already powered on.")
    if kind in ("power_off", "shutdown") and status == "off":
        raise app.unprocessable("Droplet is already powered off.")


def post_action(app, req):
    d = get(app, req)
    kind = req.body.get("type")
    _check_power(app, d, kind, req)
    aid = app.world.power(d, kind)
    return Response(201, {"action": action_view(app, aid)})


def post_action_by_tag(app, req):
    tag, kind = req.q("tag_name"), req.body.get("type")
    with app.world.lock:
        if tag is None or app.world.tag_canonical(tag, exact=True) is None:
            raise app.not_found()
        targets = [d for d in app.world.droplets.values() if tag in d.tags]
    for d in targets:
        _check_power(app, d, kind, req)
    ids = [app.world.power(d, kind) for d in targets]
    return Response(201, {"actions": [action_view(app, aid) for aid in ids]})


def droplet_action(app, req):
    d = get(app, req)
    a = action_view(app, req.p("action_id"))
    if a["resource_id"] != d.id:
        raise app.not_found()
    return Response(200, {"action": a})


def droplet_firewalls(app, req):
    from .firewalls import fw_view
    d = get(app, req)
    with app.world.lock:
        tags = {t.lower() for t in d.tags}
        fws = [fw_view(fw) for fw in app.world.firewalls.values()
               if d.id in fw["droplet_ids"] or tags & {t.lower() for t in fw["tags"]}]
    return app.paginate(req, fws, "firewalls", f"/v2/droplets/{d.id}/firewalls")
