"""IAM v1 service accounts: projects.serviceAccounts create, get, list, delete.

Owns the handlers and the eventual consistency of a new account: for `--sa-propagation`
seconds after create (Google: up to a minute or more) a GET answers 403 PERMISSION_DENIED
("… or it may not exist"), naming it in a secret's IAM policy gives 400 "Service account …
does not exist.", and attaching it to an instance gives the insert's 400 (plan.py). accountId:
6–30 characters `[a-z]([-a-z0-9]*[a-z0-9])`; email ACCOUNT@PROJECT.iam.gserviceaccount.com;
100 per project. Errors have the ESF shape (no `errors[]`).
"""

import re
import secrets
import time

from simkit import Response

from .errors import esf

ACCOUNT_RX = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
LIMIT = 100


def public(sa):
    return {k: v for k, v in sa.items() if not k.startswith("_")}


def existing_account(world, project, account_id, display=None):
    """A service account made before the simulator started (already propagated)."""
    email = f"{account_id}@{project}.iam.gserviceaccount.com"
    uid = str(10 ** 20 + secrets.randbelow(9 * 10 ** 20))
    with world.lock:
        world.service_accounts[email] = {
            "name": f"projects/{project}/serviceAccounts/{email}", "projectId": project,
            "uniqueId": uid, "email": email, "etag": "MDEwMjE5MjA=", "oauth2ClientId": uid,
            "displayName": display or account_id, "_project": project,
            "_created": time.time(), "_ready": time.time()}
    return email


def register(app, world):
    def project_of(req):
        return app.require_project(req, permission="iam.serviceAccounts.list")

    def lookup(p, ident, want_ready, perm):
        with world.lock:
            sa = world.service_accounts.get(ident)
            if sa is None:
                sa = next((s for s in world.service_accounts.values()
                           if s["uniqueId"] == ident), None)
        if sa is None or sa["_project"] != p or (want_ready and sa["_ready"] > time.time()):
            raise esf(403 if want_ready else 404,
                      f"Permission '{perm}' denied on resource (or it may not exist).")
        return sa

    def create(req):
        p = app.require_project(req, permission="iam.serviceAccounts.create")
        body = req.body
        acc = body.get("accountId") or ""
        if not (6 <= len(acc) <= 30 and ACCOUNT_RX.match(acc)):
            raise esf(400, f"Invalid value for field 'account_id': '{acc}'. It must be 6-30 "
                      "characters matching [a-z]([-a-z0-9]*[a-z0-9]).")
        email = f"{acc}@{p}.iam.gserviceaccount.com"
        info = body.get("serviceAccount") or {}
        with world.lock:
            if email in world.service_accounts:
                raise esf(409, f"Service account {acc} already exists within project "
                          f"projects/{p}.", status="ALREADY_EXISTS")
            if sum(1 for s in world.service_accounts.values() if s["_project"] == p) >= LIMIT:
                raise esf(429, "Maximum number of service accounts on project reached.",
                          status="RESOURCE_EXHAUSTED")
            uid = str(10 ** 20 + secrets.randbelow(9 * 10 ** 20))
            sa = {"name": f"projects/{p}/serviceAccounts/{email}", "projectId": p,
                  "uniqueId": uid, "email": email, "etag": "MDEwMjE5MjA=",
                  "oauth2ClientId": uid, "_project": p, "_created": time.time(),
                  "_ready": time.time() + world.opts["sa_propagation"]}
            if info.get("displayName"):
                sa["displayName"] = info["displayName"]
            if info.get("description"):
                sa["description"] = info["description"]
            world.service_accounts[email] = sa
        world.event("service-account-created", email=email)
        return Response(200, public(sa))

    def get(req):
        p = project_of(req)
        return Response(200, public(lookup(p, req.p("serviceAccountsId"), True,
                                           "iam.serviceAccounts.get")))

    def list_(req):
        p = project_of(req)
        with world.lock:
            items = [public(s) for s in world.service_accounts.values() if s["_project"] == p
                     and s["_ready"] <= time.time()]
        return Response(200, {"accounts": items} if items else {})

    def delete(req):
        p = app.require_project(req, permission="iam.serviceAccounts.delete")
        sa = lookup(p, req.p("serviceAccountsId"), False, "iam.serviceAccounts.delete")
        with world.lock:
            world.service_accounts.pop(sa["email"], None)
            world.deleted_service_accounts.append(sa["email"])
            for s in world.secrets.values():
                for b in s["policy"]["bindings"]:
                    if f"serviceAccount:{sa['email']}" in b["members"]:
                        b["members"] = [m if m != f"serviceAccount:{sa['email']}" else
                                        f"deleted:serviceAccount:{sa['email']}?uid="
                                        f"{sa['uniqueId']}" for m in b["members"]]
        world.event("service-account-deleted", email=sa["email"])
        return Response(200, {})

    app.handle_op("iam.projects.serviceAccounts.create", create)
    app.handle_op("iam.projects.serviceAccounts.get", get)
    app.handle_op("iam.projects.serviceAccounts.list", list_)
    app.handle_op("iam.projects.serviceAccounts.delete", delete)
