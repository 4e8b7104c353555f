"""Read-only Compute resources: projects, zones, regions (with quotas), machine types, images.

Owns the handlers `compute.projects.get`, `compute.zones.get/list`, `compute.regions.get/list`,
`compute.machineTypes.get/list/aggregatedList` (a type not offered in a zone is 404 there),
`compute.acceleratorTypes.get/list` (the GPU types of the catalog, only in their zones) and
`compute.images.get/getFromFamily` for the public image projects `cos-cloud` and
`ubuntu-os-cloud` (readable by any authenticated principal, like Google's public images).
"""

from simkit import Response

from . import catalog
from .errors import not_found


def zone_resource(project, zone):
    region = catalog.ZONES[zone]
    return {"kind": "compute#zone", "id": catalog.num_id("zone", zone),
            "creationTimestamp": catalog.CREATED, "name": zone, "description": zone,
            "status": "UP", "region": catalog.region_link(project, region),
            "selfLink": catalog.zone_link(project, zone),
            "availableCpuPlatforms": ["Intel Sapphire Rapids", "Intel Ice Lake",
                                      "AMD Milan", "AMD Genoa"],
            "supportsPzs": False}


def region_resource(world, project, region):
    use = world.usage(project, region)
    quotas = [{"metric": m, "limit": float(world.quota_limit(project, region, m)),
               "usage": float(use.get(m, 0.0))} for m in catalog.REGION_QUOTAS]
    return {"kind": "compute#region", "id": catalog.num_id("region", region),
            "creationTimestamp": catalog.CREATED, "name": region, "description": region,
            "status": "UP", "zones": [catalog.zone_link(project, z)
                                      for z in catalog.REGIONS[region]["zones"]],
            "quotas": quotas, "selfLink": catalog.region_link(project, region),
            "supportsPzs": False}


def project_resource(world, project):
    num = world.number(project)
    with world.lock:
        firewalls = sum(1 for (p, _) in world.firewalls if p == project)
    return {"kind": "compute#project", "id": num, "creationTimestamp": catalog.CREATED,
            "name": project, "commonInstanceMetadata": {"kind": "compute#metadata",
                                                        "fingerprint": "sim-Aw9vJHs=",
                                                        "items": []},
            "quotas": [{"metric": m, "limit": float(v),
                        "usage": float(firewalls if m == "FIREWALLS" else
                                       1 if m == "NETWORKS" else
                                       len(catalog.REGIONS) if m == "SUBNETWORKS" else 0)}
                       for m, v in catalog.PROJECT_QUOTAS.items()],
            "selfLink": catalog.link("projects", project),
            "defaultServiceAccount": f"{num}-compute@developer.gserviceaccount.com",
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
            "defaultNetworkTier": "PREMIUM", "vmDnsSetting": "ZONAL_ONLY"}


def register(app, world):
    def project_get(req):
        p = app.require_project(req)
        return Response(200, project_resource(world, p))

    def zone_get(req):
        p, z = app.require_project(req), app.require_zone(req)
        return Response(200, zone_resource(p, z))

    def zone_list(req):
        p = app.require_project(req)
        items = app.filtered(req, [zone_resource(p, z) for z in catalog.ZONES])
        return Response(200, app.page(req, "compute#zoneList",
                                      catalog.link("projects", p, "zones"), items))

    def region_get(req):
        p, r = app.require_project(req), app.require_region(req)
        return Response(200, region_resource(world, p, r))

    def region_list(req):
        p = app.require_project(req)
        items = app.filtered(req, [region_resource(world, p, r) for r in catalog.REGIONS])
        return Response(200, app.page(req, "compute#regionList",
                                      catalog.link("projects", p, "regions"), items))

    def mt_get(req):
        p, z = app.require_project(req), app.require_zone(req)
        name = req.p("machineType")
        if catalog.machine_type(name, z) is None:
            raise not_found(f"projects/{p}/zones/{z}/machineTypes/{name}")
        return Response(200, catalog.machine_type_resource(p, z, name))

    def mt_items(p, z):
        return [catalog.machine_type_resource(p, z, n) for n in catalog.MACHINE_TYPES
                if catalog.machine_type(n, z) is not None]

    def mt_list(req):
        p, z = app.require_project(req), app.require_zone(req)
        items = app.filtered(req, mt_items(p, z))
        return Response(200, app.page(req, "compute#machineTypeList",
                                      catalog.link("projects", p, "zones", z, "machineTypes"),
                                      items))

    def mt_aggregated(req):
        p = app.require_project(req)
        per_zone = {f"zones/{z}": app.filtered(req, mt_items(p, z)) for z in catalog.ZONES}
        return Response(200, app.aggregated(req, "compute#machineTypeAggregatedList",
                                            "machineTypes",
                                            catalog.link("projects", p, "aggregated",
                                                         "machineTypes"), per_zone))

    def acc_resource(p, z, name):
        description, _metric = catalog.ACCELERATORS[name]
        return {"kind": "compute#acceleratorType", "name": name,
                "id": catalog.num_id("acc", z, name), "creationTimestamp": catalog.CREATED,
                "description": description, "zone": catalog.zone_link(p, z),
                "selfLink": catalog.link("projects", p, "zones", z, "acceleratorTypes", name),
                "maximumCardsPerInstance": 8}

    def acc_get(req):
        p, z = app.require_project(req), app.require_zone(req)
        name = req.p("acceleratorType")
        if name not in catalog.ACCELERATORS or z not in catalog.ACCELERATOR_ZONES[name]:
            raise not_found(f"projects/{p}/zones/{z}/acceleratorTypes/{name}")
        return Response(200, acc_resource(p, z, name))

    def acc_list(req):
        p, z = app.require_project(req), app.require_zone(req)
        items = app.filtered(req, [acc_resource(p, z, n) for n in catalog.ACCELERATORS
                                   if z in catalog.ACCELERATOR_ZONES[n]])
        return Response(200, app.page(req, "compute#acceleratorTypeList",
                                      catalog.link("projects", p, "zones", z,
                                                   "acceleratorTypes"), items))

    def image_from_family(req):
        app.require_auth_only(req)
        proj, family = req.p("project"), req.p("family")
        name = catalog.IMAGES.get(proj, {}).get(family)
        if name is None:
            raise not_found(f"projects/{proj}/global/images/family/{family}")
        return Response(200, catalog.image_resource(proj, name, family))

    def image_get(req):
        app.require_auth_only(req)
        proj, name = req.p("project"), req.p("image")
        found = catalog.find_image(proj, name)
        if found is None:
            raise not_found(f"projects/{proj}/global/images/{name}")
        return Response(200, catalog.image_resource(proj, *found))

    for op, fn in (("projects.get", project_get), ("zones.get", zone_get),
                   ("zones.list", zone_list), ("regions.get", region_get),
                   ("regions.list", region_list), ("machineTypes.get", mt_get),
                   ("machineTypes.list", mt_list), ("machineTypes.aggregatedList", mt_aggregated),
                   ("images.getFromFamily", image_from_family), ("images.get", image_get),
                   ("acceleratorTypes.get", acc_get), ("acceleratorTypes.list", acc_list)):
        app.handle_op("compute." + op, fn)
