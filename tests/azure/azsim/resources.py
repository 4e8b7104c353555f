"""Subscription-level reads, resource groups, generic resource listings, the Compute catalog.

Owns:
- outside the bundled specs (answers checked against schemas written from ARM's docs):
  `GET /subscriptions?api-version=2022-12-01`, `GET /subscriptions/{s}`,
  `GET /subscriptions/{s}/locations`, `GET /subscriptions/{s}/providers/Microsoft.Compute/skus
  ?api-version=2021-07-01[&$filter=location eq 'eastus']` (sizes with `Location` restrictions
  `NotAvailableForSubscription` where not offered), and the Marketplace image reads
  `GET .../providers/Microsoft.Compute/locations/{loc}/publishers/{p}/artifacttypes/vmimage/
  offers/{o}/skus/{s}/versions[/{v}]?api-version=2024-07-01` (404 for unknown images);
- in the specs: resource groups PUT (201/200, synchronous)/GET/HEAD (204/404)/PATCH (tags)/
  DELETE (202 + `Location`; the group is `Deleting` and refuses writes with 409
  `ResourceGroupBeingDeleted` until the cascade ran after `--rg-delete-delay`)/list
  (`$filter=tagName eq 'k' and tagValue eq 'v'`, `startswith(tagName,'p')`, `$top`);
  `Resources_List` and `Resources_ListByResourceGroup` (the same filters plus `resourceType eq`;
  tag-filtered results omit `tags`, as ARM does; `$top` with a `nextLink` carrying
  `$skiptoken`); Compute usages per location (`cores`, `lowPriorityCores`, `virtualMachines`,
  one entry per size family).
"""

import re
import time

from simkit import ApiError, NO_BODY, Response

from . import catalog, lro

SUB_VERSIONS = {"2016-06-01", "2019-06-01", "2020-01-01", "2021-01-01", "2022-12-01"}
SKU_VERSIONS = {"2019-04-01", "2021-03-01", "2021-07-01"}
_STR = {"type": "string"}
SUBSCRIPTION_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "subscriptionId", "tenantId", "displayName", "state"],
    "properties": {"id": _STR, "subscriptionId": _STR, "tenantId": _STR, "displayName": _STR,
                   "state": {"enum": ["Enabled", "Warned", "PastDue", "Disabled", "Deleted"]},
                   "authorizationSource": _STR, "managedByTenants": {"type": "array"},
                   "tags": {"type": "object"},
                   "subscriptionPolicies": {"type": "object", "additionalProperties": False,
                                            "properties": {"locationPlacementId": _STR,
                                                           "quotaId": _STR,
                                                           "spendingLimit": _STR}}}}
LOCATION_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["id", "name", "displayName"],
    "properties": {"id": _STR, "name": _STR, "displayName": _STR, "regionalDisplayName": _STR,
                   "type": {"enum": ["Region", "EdgeZone"]}, "metadata": {"type": "object"},
                   "availabilityZoneMappings": {"type": "array"}}}
SKU_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["resourceType", "name", "locations", "locationInfo", "capabilities",
                 "restrictions"],
    "properties": {"resourceType": _STR, "name": _STR, "tier": _STR, "size": _STR,
                   "family": _STR, "locations": {"type": "array", "items": _STR},
                   "locationInfo": {"type": "array"}, "capabilities": {"type": "array"},
                   "restrictions": {"type": "array", "items": {
                       "type": "object", "additionalProperties": False,
                       "required": ["type", "values", "reasonCode"],
                       "properties": {"type": {"enum": ["Location", "Zone"]},
                                      "values": {"type": "array"},
                                      "restrictionInfo": {"type": "object"},
                                      "reasonCode": {"enum": ["QuotaId",
                                                              "NotAvailableForSubscription"]}}}}}}
IMAGE_REF_SCHEMA = {"type": "object", "additionalProperties": False,
                    "required": ["name", "location", "id"],
                    "properties": {"name": _STR, "location": _STR, "id": _STR,
                                   "properties": {"type": "object"}}}


def value_of(item_schema):
    return {"type": "object", "additionalProperties": False, "required": ["value"],
            "properties": {"value": {"type": "array", "items": item_schema},
                           "nextLink": _STR, "count": {"type": "object"}}}


def _version(req, allowed):
    v = req.q("api-version")
    if v is None:
        raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter "
                       "(?api-version=) is required for all requests.")
    if v not in allowed:
        raise ApiError(400, "InvalidApiVersionParameter", f"The api-version '{v}' is invalid. "
                       f"The supported versions are '{', '.join(sorted(allowed))}'.")


def subscription_view(app):
    o = app.opts
    return {"id": f"/subscriptions/{app.world.sub}", "subscriptionId": app.world.sub,
            "tenantId": o["tenant"], "displayName": "clusterctl simulated subscription",
            "state": "Enabled", "authorizationSource": "RoleBased", "managedByTenants": [],
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01",
                                     "spendingLimit": "Off"}}


def locations(app, req):
    _version(req, SUB_VERSIONS)
    out = []
    for name, (display, geo, zones, paired) in catalog.LOCATIONS.items():
        out.append({"id": f"/subscriptions/{app.world.sub}/locations/{name}", "name": name,
                    "displayName": display, "regionalDisplayName": f"({geo}) {display}",
                    "type": "Region",
                    "metadata": {"regionType": "Physical", "regionCategory": "Recommended",
                                 "geography": geo, "pairedRegion": [{
                                     "name": paired, "id": f"/subscriptions/{app.world.sub}/"
                                                           f"locations/{paired}"}]},
                    "availabilityZoneMappings": [{"logicalZone": z, "physicalZone":
                                                  f"{name}-az{z}"} for z in zones]})
    return Response(200, {"value": out})


def skus(app, req):
    _version(req, SKU_VERSIONS)
    flt = req.q("$filter") or ""
    m = re.search(r"location\s+eq\s+'([^']+)'", flt, re.I)
    if flt and not m:
        raise ApiError(400, "InvalidFilter", f"The filter '{flt}' is not supported. Only "
                       "\"location eq '<location>'\" is supported.")
    where = [catalog.location(m.group(1)) or m.group(1).lower()] if m else \
        list(catalog.LOCATIONS)
    out = []
    for name, (family, vcpus, mem, price, missing, spot) in catalog.SIZES.items():
        for loc in where:
            if loc not in catalog.LOCATIONS:
                continue
            zones = catalog.LOCATIONS[loc][2]
            entry = {"resourceType": "virtualMachines", "name": name, "tier": "Standard",
                     "size": name.split("_", 1)[1], "family": family, "locations": [loc],
                     "locationInfo": [{"location": loc, "zones": list(zones),
                                       "zoneDetails": []}],
                     "capabilities": [{"name": "vCPUs", "value": str(vcpus)},
                                      {"name": "MemoryGB", "value": str(mem)},
                                      {"name": "LowPriorityCapable", "value": str(spot)},
                                      {"name": "HyperVGenerations", "value": "V1,V2"},
                                      {"name": "CpuArchitectureType", "value": "x64"}],
                     "restrictions": []}
            if loc in missing:
                entry["restrictions"].append({
                    "type": "Location", "values": [loc],
                    "restrictionInfo": {"locations": [loc]},
                    "reasonCode": "NotAvailableForSubscription"})
            out.append(entry)
    return Response(200, {"value": out})


def images(app, req, g):
    _version(req, {"2024-07-01", "2024-03-01", "2023-09-01", "2023-07-01", "2022-11-01"})
    loc = catalog.location(g["loc"])
    hit = catalog.image(g["pub"], g["offer"], g["sku"])
    base = (f"/Subscriptions/{app.world.sub}/Providers/Microsoft.Compute/Locations/{loc}/"
            f"Publishers/{hit[0][0] if hit else g['pub']}/ArtifactTypes/VMImage/Offers/"
            f"{hit[0][1] if hit else g['offer']}/Skus/{hit[0][2] if hit else g['sku']}/Versions")
    if loc is None or hit is None:
        raise ApiError(404, "NotFound" if loc else "LocationNotFound",
                       f"Artifact: VMImage was not found. (publisher {g['pub']}, offer "
                       f"{g['offer']}, sku {g['sku']}, location {g['loc']})")
    versions, gen, arch = hit[1]
    if g.get("ver") is None:
        return Response(200, [{"name": v, "location": loc, "id": f"{base}/{v}"}
                              for v in versions])
    if g["ver"] not in versions:
        raise ApiError(404, "NotFound", f"Artifact: VMImage was not found. (version {g['ver']})")
    return Response(200, {"name": g["ver"], "location": loc, "id": f"{base}/{g['ver']}",
                          "properties": {"osDiskImage": {"operatingSystem": "Linux"},
                                         "hyperVGeneration": gen, "architecture": arch,
                                         "dataDiskImages": []}})


# ----- resource groups -----

def rg_view(app, g):
    out = {"id": app.world.group_id(g["name"]), "name": g["name"],
           "type": "Microsoft.Resources/resourceGroups", "location": g["location"],
           "properties": {"provisioningState": g["state"]}}
    if g["tags"]:
        out["tags"] = dict(g["tags"])
    return out


def rg_put(app, req):
    name, b = req.p("resourceGroupName"), req.body
    if name.endswith("."):
        raise ApiError(400, "InvalidResourceGroup", f"The provided resource group name '{name}'"
                       " cannot end with '.'.")
    loc = catalog.location(b["location"])
    if loc is None:
        raise ApiError(400, "LocationNotAvailableForResourceGroup",
                       f"The provided location '{b['location']}' is not available for resource "
                       f"group. List of available regions is '{','.join(catalog.LOCATIONS)}'.")
    _tags_ok(b.get("tags"))
    w = app.world
    with w.lock:
        g = w.groups.get(name.lower())
        if g is not None:
            if g["state"] == "Deleting":
                raise ApiError(409, "ResourceGroupBeingDeleted", f"The resource group "
                               f"'{g['name']}' is in deprovisioning state and cannot perform "
                               "this operation.")
            if g["location"] != loc:
                raise ApiError(409, "InvalidResourceGroupLocation",
                               f"Invalid resource group location '{loc}'. The Resource group "
                               f"already exists in location '{g['location']}'.")
            g["tags"] = dict(b.get("tags") or {})
            return Response(200, rg_view(app, g))
        g = w.groups[name.lower()] = {"name": name, "location": loc, "tags": dict(
            b.get("tags") or {}), "state": "Succeeded", "created": time.time(),
            "principal": req.ctx.get("principal")}
        w.event("group-created", name=name, location=loc)
        return Response(201, rg_view(app, g))


def _tags_ok(tags):
    for k, v in (tags or {}).items():
        if len(k) > 512 or re.search(r"[<>%&\\?/]", k) or (isinstance(v, str) and len(v) > 256):
            raise ApiError(400, "InvalidTagNameCharacters" if len(k) <= 512 else
                           "InvalidTagNameLength", f"The tag names '{k}' have reserved "
                           "characters '<,>,%,&,\\,?,/' or control characters, or are too long.")
    if len(tags or {}) > 50:
        raise ApiError(400, "InvalidTemplate", "A resource may have at most 50 tags.")


def rg_delete(app, req):
    w = app.world
    with w.lock:
        g = w.groups.get(req.p("resourceGroupName").lower())
        if g is None:
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group "
                           f"'{req.p('resourceGroupName')}' could not be found.")
        op = g.get("_delete_op")
        if op is None:
            op = lro.start(app, "Microsoft.Resources", g["location"], "rg-delete", g["name"])
            g["state"], g["_delete_op"] = "Deleting", op
            op["principal"] = req.ctx.get("principal")
            w.event("group-deleting", name=g["name"], by=req.ctx.get("principal"),
                    principal_kind=req.ctx.get("principal_kind"))
            w.schedule(app.opts["rg_delete_delay"], lambda: _rg_gone(app, g, op))
    return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True,
                                                      async_too=False))


def _rg_gone(app, g, op):
    w = app.world
    n = w.delete_group_contents(g["name"], why=f"resource group {g['name']} deleted")
    with w.lock:
        w.groups.pop(g["name"].lower(), None)
        w.event("group-deleted", name=g["name"], resources=n)
    lro.finish(w, op["id"], "Succeeded")


def _tag_filter(flt):
    """A predicate on tags for ARM's tag $filter forms, plus (resourceType or None)."""
    if not flt:
        return (lambda tags: True), None
    m = re.fullmatch(r"\s*tagName\s+eq\s+'([^']*)'\s+and\s+tagValue\s+eq\s+'([^']*)'\s*", flt)
    if m:
        k, v = m.group(1).lower(), m.group(2)
        return (lambda tags: any(t.lower() == k and tags[t] == v for t in tags)), None
    m = re.fullmatch(r"\s*tagName\s+eq\s+'([^']*)'\s*", flt)
    if m:
        k = m.group(1).lower()
        return (lambda tags: any(t.lower() == k for t in tags)), None
    m = re.fullmatch(r"\s*startswith\(\s*tagName\s*,\s*'([^']*)'\s*\)\s*", flt)
    if m:
        p = m.group(1).lower()
        return (lambda tags: any(t.lower().startswith(p) for t in tags)), None
    m = re.fullmatch(r"\s*resourceType\s+eq\s+'([^']*)'\s*", flt, re.I)
    if m:
        return (lambda tags: True), m.group(1).lower()
    if "tag" in flt.lower() and "resourcetype" in flt.lower():
        raise ApiError(400, "InvalidFilterInQueryString", "The filter on tags cannot be "
                       "combined with filters on other resource properties.")
    raise ApiError(400, "InvalidFilterInQueryString", f"Invalid $filter '{flt}' specified in "
                   "the query string.")


def _page(app, req, items, path):
    top = req.q("$top")
    skip = int(req.q("$skiptoken") or 0) if str(req.q("$skiptoken") or "0").isdigit() else 0
    body = {"value": items[skip:]}
    if top is not None:
        body["value"] = items[skip:skip + int(top)]
        if skip + int(top) < len(items):
            body["nextLink"] = (f"{app.base_url}{path}?api-version={req.q('api-version')}"
                                f"&$top={top}&$skiptoken={skip + int(top)}" +
                                (f"&$filter={req.q('$filter')}" if req.q("$filter") else ""))
    return Response(200, body)


def rg_list(app, req):
    pred, rtype = _tag_filter(req.q("$filter"))
    with app.world.lock:
        items = [rg_view(app, g) for g in sorted(app.world.groups.values(),
                                                 key=lambda g: g["name"].lower())
                 if pred(g["tags"])]
    return _page(app, req, items, f"/subscriptions/{app.world.sub}/resourcegroups")


def generic_view(r, with_tags, expand):
    out = {"id": r["id"], "name": r["name"], "type": r["type"], "location": r["location"]}
    if with_tags and r["tags"]:
        out["tags"] = dict(r["tags"])
    if r.get("_managed_by"):
        out["managedBy"] = r["_managed_by"]
    if expand:
        from .world import iso
        if "createdtime" in expand.lower():
            out["createdTime"] = iso(r["created"])
        if "changedtime" in expand.lower():
            out["changedTime"] = iso(r["changed"])
        if "provisioningstate" in expand.lower():
            out["provisioningState"] = r["props"].get("provisioningState", "Succeeded")
    return out


def resources_list(app, req, rg=None):
    flt = req.q("$filter") or ""
    pred, rtype = _tag_filter(flt)
    lag = app.opts["list_lag"]
    now = time.time()
    with app.world.lock:
        if rg is not None:
            app.rg_or_404(req)
        items = [generic_view(r, "tag" not in flt.lower(), req.q("$expand"))
                 for r in sorted(app.world.res.values(), key=lambda r: r["id"].lower())
                 if (rg is None or r["rg"] == rg.lower()) and pred(r["tags"])
                 and (rtype is None or r["type"].lower() == rtype)
                 and now - r["created"] >= lag]
    path = f"/subscriptions/{app.world.sub}" + (f"/resourceGroups/{rg}" if rg else "") + \
        "/resources"
    return _page(app, req, items, path)


def usages(app, req):
    from .compute import usage
    loc = catalog.location(req.p("location"))
    if loc is None:
        raise ApiError(404, "LocationNotFound",
                       f"The location '{req.p('location')}' is not valid.")
    o = app.opts
    with app.world.lock:
        used = usage(app.world, loc)
    entries = [("cores", "Total Regional vCPUs", used["total"], o["vcpu_quota"]),
               ("lowPriorityCores", "Total Regional Low-priority vCPUs", used["spot"],
                o["spot_quota"]),
               ("virtualMachines", "Virtual Machines", used["vms"], 25000)]
    for fam, label in catalog.FAMILY_NAMES.items():
        entries.append((fam, label, used["families"].get(fam, 0), o["family_quota"]))
    return Response(200, {"value": [{"unit": "Count", "currentValue": cur, "limit": lim,
                                     "name": {"value": v, "localizedValue": label}}
                                    for v, label, cur, lim in entries]})


def register(app):
    w = app.world
    sub = r"/subscriptions/(?P<sub>[^/]+)"
    app.route("GET", r"/subscriptions", lambda req: (_version(req, SUB_VERSIONS), Response(
        200, {"value": [subscription_view(app)]}))[1], "subscriptions: list",
        schema=value_of(SUBSCRIPTION_SCHEMA))
    app.route("GET", sub, lambda req: (_version(req, SUB_VERSIONS), Response(
        200, subscription_view(app)))[1], "subscriptions: get", schema=SUBSCRIPTION_SCHEMA)
    app.route("GET", sub + r"/locations", lambda req: locations(app, req),
              "subscriptions: locations", schema=value_of(LOCATION_SCHEMA))
    app.route("GET", sub + r"/providers/Microsoft\.Compute/skus", lambda req: skus(app, req),
              "compute: resource skus", schema=value_of(SKU_SCHEMA))
    img = (sub + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/publishers/"
           r"(?P<pub>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)"
           r"/versions")
    app.route("GET", img, lambda req: images(app, req, dict(req.ctx["route_params"],
                                                            ver=None)),
              "compute: image versions", schema={"type": "array", "items": IMAGE_REF_SCHEMA})
    app.route("GET", img + r"/(?P<ver>[^/]+)",
              lambda req: images(app, req, req.ctx["route_params"]), "compute: image",
              schema=IMAGE_REF_SCHEMA)
    app.handle_op("ResourceGroups_CreateOrUpdate", lambda req: rg_put(app, req))
    app.handle_op("ResourceGroups_Get", lambda req: Response(200, rg_view(app, app.rg_or_404(
        req))))
    app.handle_op("ResourceGroups_CheckExistence", lambda req: Response(
        204 if req.p("resourceGroupName").lower() in w.groups else 404))
    app.handle_op("ResourceGroups_Delete", lambda req: rg_delete(app, req))
    app.handle_op("ResourceGroups_List", lambda req: rg_list(app, req))
    app.handle_op("ResourceGroups_Update", lambda req: rg_patch(app, req))
    app.handle_op("Resources_List", lambda req: resources_list(app, req))
    app.handle_op("Resources_ListByResourceGroup", lambda req: resources_list(
        app, req, app.rg_or_404(req)["name"]))
    app.handle_op("Usage_List", lambda req: usages(app, req))


def rg_patch(app, req):
    g = app.rg_or_404(req, writing=True)
    if "tags" in req.body:
        _tags_ok(req.body["tags"])
        with app.world.lock:
            g["tags"] = dict(req.body["tags"] or {})
    return Response(200, rg_view(app, g))
