"""Secret Manager v1: secrets create, get, list (label filter), delete, addVersion,
versions.access / versions.get, and getIamPolicy / setIamPolicy on a secret.

Owns the handlers and who may read a secret: the project's owners (the test credentials), or
a principal bound to `roles/secretmanager.secretAccessor` (or owner/admin roles) on the secret
— effective `--iam-propagation` seconds after setIamPolicy, as grants propagate. Names in
answers carry the project **number** (`projects/123…/secrets/S`), as Secret Manager answers.
A new version is strongly consistent when accessed by its number; `latest` resolves only to
versions older than `--secret-latest-lag` seconds (eventual consistency; 404 before). Members
naming a service account that has not propagated (or does not exist) are refused with 400.
Policy `etag` is checked (409 ABORTED on a stale one). The payload never reaches a log.
"""

import base64
import re
import secrets as pysecrets
import time

from simkit import Response

from .errors import esf
from .world import rfc3339z

SECRET_RX = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
READERS = {"roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"}


def register(app, world):
    def proj(req, perm):
        return app.require_project(req, permission=perm)

    def number_name(p, sid, *rest):
        return "/".join(["projects", world.number(p), "secrets", sid] + list(rest))

    def find(p, sid):
        with world.lock:
            s = world.secrets.get((p, sid))
        if s is None:
            raise esf(404, f"Secret [{number_name(p, sid)}] not found or has no versions.")
        return s

    def public(s):
        return {k: v for k, v in s.items() if not k.startswith("_") and k not in
                ("versions", "policy")}

    def create(req):
        p = proj(req, "secretmanager.secrets.create")
        sid = req.q("secretId") or ""
        if not SECRET_RX.match(sid):
            raise esf(400, "The provided secret ID is not valid. It must be 1-255 characters "
                      "of [A-Za-z0-9_-].")
        body = req.body
        if not body.get("replication"):
            raise esf(400, "Replication policy is required.")
        with world.lock:
            if (p, sid) in world.secrets:
                raise esf(409, f"Secret [{number_name(p, sid)}] already exists.",
                          status="ALREADY_EXISTS")
            s = {"name": number_name(p, sid), "replication": body["replication"],
                 "createTime": rfc3339z(), "labels": dict(body.get("labels") or {}),
                 "etag": '"' + pysecrets.token_hex(7) + '"', "versions": [],
                 "policy": {"version": 1, "bindings": [], "etag": "ACAB"},
                 "_granted_at": {}, "_accessed_by": set()}
            world.secrets[(p, sid)] = s
        world.event("secret-created", project=p, secret=sid)
        return Response(200, public(s))

    def get(req):
        p = proj(req, "secretmanager.secrets.get")
        return Response(200, public(find(p, req.match.path_params["secretsId"])))

    def list_(req):
        p = proj(req, "secretmanager.secrets.list")
        flt = req.q("filter") or ""
        wanted = dict(re.findall(r"labels\.([a-z0-9_-]+)\s*[=:]\s*\"?([a-z0-9_-]*)\"?", flt))
        with world.lock:
            items = [public(s) for (pp, _), s in sorted(world.secrets.items()) if pp == p
                     and all(s["labels"].get(k) == v for k, v in wanted.items())]
        out = {"totalSize": len(items)}
        if items:
            out["secrets"] = items
        return Response(200, out)

    def delete(req):
        p = proj(req, "secretmanager.secrets.delete")
        sid = req.match.path_params["secretsId"]
        find(p, sid)
        with world.lock:
            world.secrets.pop((p, sid), None)
        world.event("secret-deleted", project=p, secret=sid)
        return Response(200, {})

    def add_version(req):
        p = proj(req, "secretmanager.versions.add")
        sid = req.match.path_params["secretsId"]
        s = find(p, sid)
        payload = (req.body.get("payload") or {})
        try:
            data = base64.b64decode(payload.get("data") or "", validate=True)
        except ValueError:
            raise esf(400, "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding "
                      "failed.")
        if len(data) > 64 * 1024:
            raise esf(400, "Secret Payload cannot be larger than 64KiB.")
        crc = payload.get("dataCrc32c")
        if crc is not None and int(crc) != _crc32c(data):
            raise esf(400, "Checksum mismatch: the provided dataCrc32c does not match the "
                      "payload.", status="INVALID_ARGUMENT")
        with world.lock:
            n = len(s["versions"]) + 1
            v = {"name": number_name(p, sid, "versions", str(n)), "createTime": rfc3339z(),
                 "state": "ENABLED", "replicationStatus": {"automatic": {}},
                 "etag": '"' + pysecrets.token_hex(7) + '"', "clientSpecifiedPayloadChecksum":
                 crc is not None, "_data": data, "_at": time.time()}
            s["versions"].append(v)
        world.event("secret-version-added", project=p, secret=sid, version=n, bytes=len(data))
        return Response(200, {k: x for k, x in v.items() if not k.startswith("_")})

    def may_read(req, p, s):
        who = req.ctx.get("principal")
        if app.auth.is_owner(who):
            return True
        now = time.time()
        for b in s["policy"]["bindings"]:
            if b["role"] in READERS and who in b["members"]:
                if s["_granted_at"].get((b["role"], who), 0) + \
                        world.opts["iam_propagation"] <= now:
                    return True
        return False

    def version(req, p, sid, s):
        vid = req.match.path_params["versionsId"]
        denied = esf(403, f"Permission 'secretmanager.versions.access' denied for resource "
                     f"'{number_name(p, sid, 'versions', vid)}' (or it may not exist).")
        if not may_read(req, p, s):
            raise denied
        with world.lock:
            vs = list(s["versions"])
        if vid == "latest":
            ready = [v for v in vs if v["_at"] + world.opts["secret_latest_lag"] <= time.time()
                     and v["state"] == "ENABLED"]
            if not ready:
                raise esf(404, f"Secret Version [{number_name(p, sid, 'versions', 'latest')}] "
                          "not found.")
            return ready[-1]
        if not vid.isdigit() or not 1 <= int(vid) <= len(vs):
            raise esf(404, f"Secret Version [{number_name(p, sid, 'versions', vid)}] not "
                      "found.")
        return vs[int(vid) - 1]

    def access(req):
        p = req.match.path_params["projectsId"]
        if world.number(p) is None:
            raise esf(404, f"Project [{p}] not found.")
        sid = req.match.path_params["secretsId"]
        with world.lock:
            s = world.secrets.get((p, sid))
        if s is None:
            raise esf(403, f"Permission 'secretmanager.versions.access' denied for resource "
                      f"'{number_name(p, sid, 'versions', req.match.path_params['versionsId'])}'"
                      " (or it may not exist).")
        v = version(req, p, sid, s)
        with world.lock:
            s["_accessed_by"].add(req.ctx.get("principal"))
        world.event("secret-accessed", secret=sid, by=req.ctx.get("principal"))
        return Response(200, {"name": v["name"], "payload": {
            "data": base64.b64encode(v["_data"]).decode(),
            "dataCrc32c": str(_crc32c(v["_data"]))}})

    def version_get(req):
        p = proj(req, "secretmanager.versions.get")
        sid = req.match.path_params["secretsId"]
        v = version(req, p, sid, find(p, sid))
        return Response(200, {k: x for k, x in v.items() if not k.startswith("_")})

    def get_policy(req):
        p = proj(req, "secretmanager.secrets.getIamPolicy")
        s = find(p, req.match.path_params["secretsId"])
        with world.lock:
            pol = {"version": 1, "etag": s["policy"]["etag"]}
            if s["policy"]["bindings"]:
                pol["bindings"] = [dict(b, members=list(b["members"]))
                                   for b in s["policy"]["bindings"]]
        return Response(200, pol)

    def set_policy(req):
        p = proj(req, "secretmanager.secrets.setIamPolicy")
        sid = req.match.path_params["secretsId"]
        s = find(p, sid)
        pol = req.body.get("policy") or {}
        bindings = pol.get("bindings") or []
        now = time.time()
        for b in bindings:
            if not str(b.get("role", "")).startswith("roles/"):
                raise esf(400, f"Role {b.get('role')} is not supported for this resource.")
            for m in b.get("members") or []:
                kind, _, ident = m.partition(":")
                if kind == "serviceAccount":
                    with world.lock:
                        sa = world.service_accounts.get(ident)
                    if ident.endswith("-compute@developer.gserviceaccount.com"):
                        continue
                    if sa is None or sa["_ready"] > now:
                        raise esf(400, f"Service account {ident} does not exist.")
                elif kind not in ("user", "group", "domain", "principal", "principalSet") and \
                        m not in ("allUsers", "allAuthenticatedUsers"):
                    raise esf(400, f"Invalid member: {m}")
        with world.lock:
            if pol.get("etag") and pol["etag"] != s["policy"]["etag"]:
                raise esf(409, "There were concurrent policy changes. Please retry the whole "
                          "read-modify-write with exponential backoff.", status="ABORTED")
            old = {(b["role"], m) for b in s["policy"]["bindings"] for m in b["members"]}
            s["policy"] = {"version": 1, "etag": base64.b64encode(
                pysecrets.token_bytes(6)).decode(),
                "bindings": [{"role": b["role"], "members": list(b.get("members") or [])}
                             for b in bindings]}
            for b in bindings:
                for m in b.get("members") or []:
                    if (b["role"], m) not in old:
                        s["_granted_at"][(b["role"], m)] = now
            out = dict(s["policy"])
            if not out["bindings"]:
                out.pop("bindings")
        world.event("secret-policy-set", secret=sid,
                    bindings=[[b["role"], b.get("members")] for b in bindings])
        return Response(200, out)

    for op, fn in (("create", create), ("get", get), ("list", list_), ("delete", delete),
                   ("addVersion", add_version), ("getIamPolicy", get_policy),
                   ("setIamPolicy", set_policy), ("versions.access", access),
                   ("versions.get", version_get)):
        app.handle_op("secretmanager.projects.secrets." + op, fn)


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

