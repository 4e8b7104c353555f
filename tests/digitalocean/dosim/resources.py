"""Account, catalog, SSH keys, tags and actions handlers.

Owns: `GET /v2/account` (not in the spec subset: shape from the notes, checked against
api.ACCOUNT_SCHEMA instead), `GET /v2/regions`, `GET /v2/sizes`, `GET /v2/images` (type
distribution|application, private, tag_name) and `GET /v2/images/{id|slug}`, `GET /v2/vpcs` and
`/v2/vpcs/{id}`, SSH keys (`/v2/account/keys`: list — 10 per 60 s, see ratelimit.py — create with
the colon-hex MD5 fingerprint of the key blob and the duplicate-key 422, get/update/delete by id
or fingerprint), tags (create returns an existing tag of any capitalization; URLs are exact-case;
delete untags droplets and firewalls; tag/untag resources) and actions (`/v2/actions`).
"""

import base64
import hashlib
import struct

from simkit import ApiError, Response

from . import catalog
from .world import iso

KEY_TYPES = ("ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "ssh-ed25519", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")


def register(app):
    app.add_route("GET", r"/v2/account", lambda req: account(app, req), "GET /v2/account")
    ops = {
        "regions_list": lambda req: app.paginate(req, catalog.regions(), "regions", "/v2/regions"),
        "sizes_list": lambda req: app.paginate(req, catalog.sizes_list(), "sizes", "/v2/sizes"),
        "images_list": lambda req: images_list(app, req),
        "images_get": lambda req: images_get(app, req),
        "vpcs_list": lambda req: app.paginate(req, list(app.world.vpcs), "vpcs", "/v2/vpcs"),
        "vpcs_get": lambda req: vpcs_get(app, req),
        "sshKeys_list": lambda req: keys_list(app, req),
        "sshKeys_create": lambda req: keys_create(app, req),
        "sshKeys_get": lambda req: Response(200, {"ssh_key": find_key(app, req)}),
        "sshKeys_update": lambda req: keys_update(app, req),
        "sshKeys_delete": lambda req: keys_delete(app, req),
        "tags_list": lambda req: tags_list(app, req),
        "tags_create": lambda req: tags_create(app, req),
        "tags_get": lambda req: Response(200, {"tag": tag_view(app, tag_exact(app, req))}),
        "tags_delete": lambda req: tags_delete(app, req),
        "tags_assign_resources": lambda req: tag_resources(app, req, True),
        "tags_unassign_resources": lambda req: tag_resources(app, req, False),
        "actions_list": lambda req: actions_list(app, req),
        "actions_get": lambda req: Response(200, {"action": action_view(app, req.p("action_id"))}),
    }
    for op, fn in ops.items():
        app.handle_op(op, fn)


def account(app, req):
    return Response(200, {"account": catalog.account(app.opts["droplet_limit"])})


# ----- images and VPCs -----

def images_list(app, req):
    kind, private, tag = req.q("type"), req.q("private"), req.q("tag_name")
    out = []
    for img, k in catalog.images():
        if kind and k != kind:
            continue
        if private is True or tag:       # no user images or tagged images in this account
            continue
        out.append(img)
    return app.paginate(req, out, "images", "/v2/images")


def images_get(app, req):
    img = catalog.image(req.p("image_id"))
    if img is None:
        raise app.not_found()
    return Response(200, {"image": img})


def vpcs_get(app, req):
    vid = req.p("vpc_id")
    vpc = next((v for v in app.world.vpcs if v["id"] == vid), None)
    if vpc is None:
        raise app.not_found()
    return Response(200, {"vpc": vpc})


# ----- SSH keys -----

def parse_public_key(text):
    """(type, blob) of an OpenSSH public key line, or ApiError(422)."""
    parts = (text or "").strip().split()
    if len(parts) < 2:
        raise ApiError(422, "unprocessable_entity",
                       "Key invalid, key should be of the form `type key [comment]`")
    ktype, b64 = parts[0], parts[1]
    if ktype not in KEY_TYPES:
        raise ApiError(422, "unprocessable_entity",
                       "Key invalid type, we support 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256', "
                       "'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', or 'ssh-ed25519'")
    try:
        blob = base64.b64decode(b64, validate=True)
        n = struct.unpack(">I", blob[:4])[0]
        inner = blob[4:4 + n].decode("ascii")
    except (ValueError, struct.error, UnicodeDecodeError):
        inner = None
    if inner != ktype:
        raise ApiError(422, "unprocessable_entity",
                       "Key invalid, key should be of the form `type key [comment]`")
    return ktype, blob


def fingerprint(blob):
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())


def keys_list(app, req):
    with app.world.lock:
        keys = sorted(app.world.keys.values(), key=lambda k: k["id"])
    return app.paginate(req, keys, "ssh_keys", "/v2/account/keys")


def keys_create(app, req):
    body = req.body
    _, blob = parse_public_key(body.get("public_key"))
    fp = fingerprint(blob)
    with app.world.lock:
        if any(k["fingerprint"] == fp for k in app.world.keys.values()):
            raise app.unprocessable("SSH Key is already in use on your account")
        kid = app.world.next_id("key")
        key = {"id": kid, "fingerprint": fp, "public_key": body["public_key"].strip(),
               "name": body.get("name", "")}
        app.world.keys[kid] = key
    app.world.event("ssh-key-created", key_id=kid, fingerprint=fp)
    return Response(201, {"ssh_key": dict(key)})


def find_key(app, req):
    ident = req.p("ssh_key_identifier")
    with app.world.lock:
        for k in app.world.keys.values():
            if (isinstance(ident, int) and k["id"] == ident) or \
               (isinstance(ident, str) and (k["fingerprint"] == ident or str(k["id"]) == ident)):
                return dict(k)
    raise app.not_found()


def keys_update(app, req):
    key = find_key(app, req)
    with app.world.lock:
        if isinstance(req.body, dict) and "name" in req.body:
            app.world.keys[key["id"]]["name"] = req.body["name"]
        return Response(200, {"ssh_key": dict(app.world.keys[key["id"]])})


def keys_delete(app, req):
    key = find_key(app, req)
    with app.world.lock:
        app.world.keys.pop(key["id"], None)
    app.world.event("ssh-key-deleted", key_id=key["id"])
    return Response(204)


# ----- tags -----

def tag_view(app, name):
    with app.world.lock:
        tagged = [d for d in app.world.droplets.values() if name in d.tags]
    tagged.sort(key=lambda d: d.created)
    drops = {"count": len(tagged)}
    res = {"count": len(tagged)}
    if tagged:
        uri = f"{app.base_url}/v2/droplets/{tagged[-1].id}"
        drops["last_tagged_uri"] = res["last_tagged_uri"] = uri
    res.update({"droplets": drops, "images": {"count": 0}, "volumes": {"count": 0},
                "volume_snapshots": {"count": 0}, "databases": {"count": 0}})
    return {"name": name, "resources": res}


def tag_exact(app, req):
    name = app.world.tag_canonical(req.p("tag_id"), exact=True)
    if name is None:
        raise app.not_found()
    return name


def tags_list(app, req):
    with app.world.lock:
        names = [t["name"] for t in sorted(app.world.tags.values(), key=lambda t: t["created"])]
    return app.paginate(req, [tag_view(app, n) for n in names], "tags", "/v2/tags")


def tags_create(app, req):
    name = app.world.ensure_tag(req.body["name"])
    return Response(201, {"tag": tag_view(app, name)})


def tags_delete(app, req):
    name = tag_exact(app, req)
    with app.world.lock:
        app.world.tags.pop(name.lower(), None)
        for d in app.world.droplets.values():
            if name in d.tags:
                d.tags.remove(name)
        for fw in app.world.firewalls.values():
            fw["tags"] = [t for t in fw["tags"] if t != name]
            for rule in fw["inbound_rules"] + fw["outbound_rules"]:
                target = rule.get("sources") or rule.get("destinations") or {}
                if name in (target.get("tags") or []):
                    target["tags"] = [t for t in target["tags"] if t != name]
    app.world.event("tag-deleted", tag=name)
    return Response(204)


def tag_resources(app, req, assign):
    name = tag_exact(app, req)
    items = req.body.get("resources") or []
    with app.world.lock:
        targets = []
        for r in items:
            if r.get("resource_type") != "droplet":
                raise app.unprocessable(f"resource type {r.get('resource_type')!r} is not "
                                        "simulated (droplets only)")
            rid = str(r.get("resource_id", ""))
            d = app.world.droplets.get(int(rid)) if rid.isdigit() else None
            if d is None:
                raise app.not_found()
            targets.append(d)
        for d in targets:
            if assign and name not in d.tags:
                d.tags.append(name)
            elif not assign and name in d.tags:
                d.tags.remove(name)
    return Response(204)


# ----- actions -----

def action_view(app, aid):
    with app.world.lock:
        a = app.world.actions.get(aid)
        if a is None:
            raise app.not_found()
        a = dict(a)
    return {"id": a["id"], "status": a["status"], "type": a["type"],
            "started_at": iso(a["started"]),
            "completed_at": iso(a["completed"]) if a["completed"] else None,
            "resource_id": a["resource_id"], "resource_type": a["resource_type"],
            "region": catalog.region(a["region_slug"]), "region_slug": a["region_slug"]}


def actions_list(app, req, droplet_id=None):
    with app.world.lock:
        ids = sorted((a["id"] for a in app.world.actions.values()
                      if droplet_id is None or a["resource_id"] == droplet_id), reverse=True)
    path = "/v2/actions" if droplet_id is None else f"/v2/droplets/{droplet_id}/actions"
    return app.paginate(req, [action_view(app, i) for i in ids], "actions", path)

