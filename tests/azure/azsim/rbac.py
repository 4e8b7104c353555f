"""Role assignments (Microsoft.Authorization 2022-04-01) and what a principal may do.

Owns `Rbac.authorize(req)`: the service principal of `--client-id` holds the roles of
`--sp-roles` (default Owner: everything is allowed; e.g. `Contributor` cannot write role
assignments) at the subscription, the host's managed identity (`--identity-header`, App
Service style) those of `--host-identity-roles`; a VM's managed identity's token acts as the VM's principal and
may do only what one of its role assignments at a covering scope (the scope itself or a parent:
subscription ⊃ resource group ⊃ resource) allows once the assignment is effective
(`--rbac-delay` after its creation: assignments take time to apply); anything else is 403
`AuthorizationFailed` in ARM's words. Actions are derived from the path and method
(`Microsoft.Resources/subscriptions/resourceGroups/delete`,
`Microsoft.Compute/virtualMachines/read`, `.../retrieveBootDiagnosticsData/action`); reading an
operation's status is allowed to any authenticated caller.
The handlers: `PUT/GET/DELETE /{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
(name a GUID; PUT 201, also for a re-PUT of the same content; another
principal or role under the same name 409 `RoleAssignmentUpdateNotPermitted`, the same
principal+role+scope under another name 409 `RoleAssignmentExists`; a role definition that does
not exist 400 `RoleDefinitionDoesNotExist`; the scope must exist (404
`ResourceGroupNotFound`); a principal not yet replicated (`--principal-lag` after its creation)
or unknown, without `principalType`, 400 `PrincipalNotFound`; with `principalType` accepted),
and the list operations for a scope, a resource group and the subscription (`$filter=
atScope()` / `principalId eq '…'`). Assignments under a deleted resource group disappear with
it (world.delete_group_contents).

Also `GET /subscriptions/{s}/resourcegroups/{rg}/providers/Microsoft.Authorization/permissions`
(`Permissions_ListForResourceGroup` of authorization-RoleDefinitionsCalls.json 2022-04-01,
which shared/specs does not hold: a route outside the specs whose answer is checked against
`PERMISSIONS_SCHEMA`, the upstream `PermissionGetResult`): the caller's effective permissions
at the group, one entry per role assignment covering it (`actions`, `notActions`,
`dataActions`, `notDataActions`); a group that does not exist is 404 `ResourceGroupNotFound`.
The same extension resource at the subscription (`/subscriptions/{s}/providers/
Microsoft.Authorization/permissions`, not in the published spec) answers the same way.
"""

import re
import time

from simkit import ApiError, Response

from . import catalog
from .world import iso

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_RTYPE = re.compile(r"/providers/([^/]+)/([^/]+)(?:/[^/]+)?((?:/[^/]+/[^/]+)*)$", re.I)


def action_for(method, path):
    """(scope, action) of an ARM request."""
    p = path.rstrip("/")
    verb = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write",
            "DELETE": "delete"}.get(method.upper())
    last = None
    if verb is None:               # POST .../{action}
        p, last = p.rsplit("/", 1)
    segs = [s for s in p.split("/") if s]
    low = [s.lower() for s in segs]
    if "providers" in low:
        i = len(low) - 1 - low[::-1].index("providers")
        ns = segs[i + 1] if i + 1 < len(segs) else ""
        types = segs[i + 2::2]
        rtype = "/".join([ns] + types)
    elif len(segs) >= 3 and low[2] == "resourcegroups":
        rtype = "Microsoft.Resources/subscriptions/resourceGroups"
        if len(segs) > 4:
            rtype += "/" + segs[4]
    elif len(segs) >= 2:
        rtype = "Microsoft.Resources/subscriptions" + ("/" + segs[2] if len(segs) > 2 else "")
    else:
        rtype = "Microsoft.Resources/tenants"
    action = f"{rtype}/{last}/action" if last else f"{rtype}/{verb}"
    return "/" + "/".join(segs), action


def _matches(pattern, action):
    rx = "^" + re.escape(pattern).replace(r"\*", ".*") + "$"
    return re.match(rx, action, re.I) is not None


def role_allows(role_guid, action):
    role = catalog.ROLES.get(role_guid)
    if role is None:
        return False
    _, actions, not_actions = role
    return any(_matches(a, action) for a in actions) and \
        not any(_matches(n, action) for n in not_actions)


def covers(scope, target):
    s, t = scope.rstrip("/").lower(), target.rstrip("/").lower()
    return t == s or t.startswith(s + "/")


PERMISSION_SCHEMA = {"type": "object", "additionalProperties": False,
                     "properties": {k: {"type": "array", "items": {"type": "string"}}
                                    for k in ("actions", "notActions", "dataActions",
                                              "notDataActions")}}
PERMISSIONS_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["value"],
                      "properties": {"value": {"type": "array", "items": PERMISSION_SCHEMA},
                                     "nextLink": {"type": "string"}}}
PERMISSIONS_VERSIONS = {"2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview"}


class Rbac:
    def __init__(self, world, opts):
        self.world, self.opts = world, opts

    def grants(self, principal, kind):
        """[(scope, role guid, effective from)] of a principal."""
        sub = f"/subscriptions/{self.world.sub}"
        if kind == "service_principal":
            return [(sub, catalog.role_by_name(r), 0.0) for r in self.opts["sp_roles"]]
        if kind == "host_identity":
            return [(sub, catalog.role_by_name(r), 0.0)
                    for r in self.opts["host_identity_roles"]]
        with self.world.lock:
            return [(a["scope"], a["role"], a["effective"])
                    for a in self.world.assignments.values() if a["principalId"] == principal]

    def authorize(self, req):
        if "principal" not in req.ctx:
            return
        route = req.ctx.get("route") or ""
        if req.match is None and (req.path.lower().find("/operations/") >= 0 or
                                  "/operationresults/" in req.path.lower()):
            return
        scope, action = action_for(req.method, req.path)
        if scope.count("/") < 2 and req.method in ("GET", "HEAD"):
            return                 # tenant-level reads (the subscriptions list)
        now = time.time()
        mine = self.grants(req.ctx["principal"], req.ctx.get("principal_kind"))
        ok = [g for g in mine if covers(g[0], scope) and role_allows(g[1], action)]
        effective = [g for g in ok if now >= g[2]]
        if effective:
            return
        why = " (a matching role assignment exists but is not effective yet)" if ok else ""
        self.world.event("authorization-failed", principal=req.ctx["principal"],
                         action=action, scope=scope, route=route)
        raise ApiError(403, "AuthorizationFailed",
                       f"The client '{req.ctx['principal']}' with object id "
                       f"'{req.ctx['principal']}' does not have authorization to perform action "
                       f"'{action}' over scope '{scope}' or the scope is invalid. If access was "
                       f"recently granted, please refresh your credentials.{why}")


def view(a):
    """ARM sends condition/conditionVersion/description as null; the spec does not allow null
    (no x-nullable), so they are left out when unset."""
    props = {"scope": a["scope"], "roleDefinitionId": a["roleDefinitionId"],
             "principalId": a["principalId"], "principalType": a["principalType"],
             "createdOn": iso(a["created"]), "updatedOn": iso(a["created"]),
             "createdBy": a["createdBy"], "updatedBy": a["createdBy"]}
    if a.get("description"):
        props["description"] = a["description"]
    return {"id": a["id"], "name": a["name"], "type": "Microsoft.Authorization/roleAssignments",
            "properties": props}


def _scope(app, raw):
    scope = "/" + raw.strip("/")
    m = re.match(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?(/providers/.*)?$",
                 scope, re.I)
    if not m:
        raise ApiError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
    if m.group(2):
        g = app.rg_or_404(None, m.group(2))
        scope = f"/subscriptions/{app.world.sub}/resourceGroups/{g['name']}" + (m.group(3) or "")
        if m.group(3) and app.world.get(scope) is None:
            raise ApiError(404, "ResourceNotFound", f"The resource '{scope}' was not found.")
    else:
        scope = f"/subscriptions/{app.world.sub}"
    return scope


def create(app, req):
    w, o = app.world, app.opts
    scope = _scope(app, req.p("scope"))
    name = req.p("roleAssignmentName")
    if not _UUID.match(name):
        raise ApiError(400, "InvalidRoleAssignmentId",
                       f"The role assignment ID '{name}' is not valid. The role assignment ID "
                       "must be a GUID.")
    props = req.body["properties"]
    guid, role = catalog.role(props["roleDefinitionId"])
    if role is None or not str(props["roleDefinitionId"]).lower().startswith(
            f"/subscriptions/{w.sub}/providers/microsoft.authorization/roledefinitions/".lower()):
        raise ApiError(400, "RoleDefinitionDoesNotExist",
                       f"The specified role definition with ID '{guid}' does not exist.")
    pid = props["principalId"]
    now = time.time()
    with w.lock:
        known = w.principals.get(pid)
        replicated = known is not None and now - known["created"] >= o["principal_lag"]
        if not replicated and not props.get("principalType"):
            raise ApiError(400, "PrincipalNotFound",
                           f"Principal {pid.replace('-', '')} does not exist in the directory "
                           f"{o['tenant']}. Check that you have the correct principal ID. If you "
                           "are creating this principal and then immediately assigning a role, "
                           "this error might be related to a replication delay. In this case, "
                           "set the role assignment principalType property to a value, such as "
                           "ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype")
        rid = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
        old = w.assignments.get(rid.lower())
        if old is not None:
            if old["principalId"] != pid or old["role"] != guid:
                raise ApiError(409, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not "
                               "allowed to be updated.")
            return Response(201, view(old))
        for a in w.assignments.values():
            if a["principalId"] == pid and a["role"] == guid and \
                    a["scope"].lower() == scope.lower():
                raise ApiError(409, "RoleAssignmentExists", "The role assignment already exists.")
        a = {"id": rid, "name": name, "scope": scope, "role": guid, "principalId": pid,
             "roleDefinitionId": f"/subscriptions/{w.sub}/providers/Microsoft.Authorization/"
                                 f"roleDefinitions/{guid}",
             "principalType": props.get("principalType") or "ServicePrincipal",
             "created": now, "effective": now + o["rbac_delay"],
             "createdBy": req.ctx.get("principal"), "description": props.get("description")}
        w.assignments[rid.lower()] = a
        w.event("role-assigned", id=rid, principal=pid, role=role[0], scope=scope)
        return Response(201, view(a))


def _get(app, req):
    scope = _scope(app, req.p("scope"))
    rid = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{req.p('roleAssignmentName')}"
    with app.world.lock:
        a = app.world.assignments.get(rid.lower())
    if a is None:
        raise ApiError(404, "RoleAssignmentNotFound", "The role assignment "
                       f"'{req.p('roleAssignmentName')}' is not found.")
    return a


def delete(app, req):
    try:
        a = _get(app, req)
    except ApiError as err:
        if err.code == "RoleAssignmentNotFound":
            return Response(204)
        raise
    with app.world.lock:
        app.world.assignments.pop(a["id"].lower(), None)
    app.world.event("role-unassigned", id=a["id"])
    return Response(200, view(a))


def list_at(app, req, scope, below):
    flt = req.q("$filter") or ""
    m = re.search(r"principalId\s+eq\s+'([^']+)'", flt)
    with app.world.lock:
        items = []
        for a in app.world.assignments.values():
            if "atscope()" in flt.lower().replace(" ", ""):
                if not covers(a["scope"], scope):
                    continue
            elif not (covers(a["scope"], scope) or (below and covers(scope, a["scope"]))):
                continue
            if m and a["principalId"] != m.group(1):
                continue
            items.append(view(a))
    return Response(200, {"value": items})


def permissions(app, req, group):
    """The caller's effective permissions at the group (or the subscription)."""
    v = req.q("api-version")
    if not v:
        raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter "
                       "(?api-version=) is required for all requests.")
    if v not in PERMISSIONS_VERSIONS:
        raise ApiError(400, "InvalidApiVersionParameter", f"The api-version '{v}' is invalid. "
                       f"The supported versions are '{', '.join(sorted(PERMISSIONS_VERSIONS))}'.")
    scope = f"/subscriptions/{app.world.sub}"
    if group is not None:
        scope += f"/resourceGroups/{app.rg_or_404(None, group)['name']}"
    now = time.time()
    value = []
    for g_scope, guid, since in app.rbac.grants(req.ctx["principal"],
                                                req.ctx.get("principal_kind")):
        role = catalog.ROLES.get(guid)
        if role is None or now < since or not covers(g_scope, scope):
            continue
        value.append({"actions": list(role[1]), "notActions": list(role[2]),
                      "dataActions": [], "notDataActions": []})
    app.world.event("permissions-read", principal=req.ctx["principal"], scope=scope)
    return Response(200, {"value": value})


def register(app):
    w = app.world
    sub = r"/subscriptions/(?P<sub>[^/]+)"
    app.route("GET", sub + r"/(?i:resourcegroups)/(?P<rg>[^/]+)/providers/"
              r"(?i:Microsoft\.Authorization/permissions)",
              lambda req: permissions(app, req, req.ctx["route_params"]["rg"]),
              "authorization: permissions of a group", schema=PERMISSIONS_SCHEMA)
    app.route("GET", sub + r"/providers/(?i:Microsoft\.Authorization/permissions)",
              lambda req: permissions(app, req, None),
              "authorization: permissions of the subscription", schema=PERMISSIONS_SCHEMA)
    app.handle_op("RoleAssignments_Create", lambda req: create(app, req))
    app.handle_op("RoleAssignments_Get", lambda req: Response(200, view(_get(app, req))))
    app.handle_op("RoleAssignments_Delete", lambda req: delete(app, req))
    app.handle_op("RoleAssignments_ListForScope",
                  lambda req: list_at(app, req, _scope(app, req.p("scope")), True))
    app.handle_op("RoleAssignments_ListForResourceGroup", lambda req: list_at(
        app, req, f"/subscriptions/{w.sub}/resourceGroups/"
                  f"{app.rg_or_404(req)['name']}", True))
    app.handle_op("RoleAssignments_ListForSubscription",
                  lambda req: list_at(app, req, f"/subscriptions/{w.sub}", True))
