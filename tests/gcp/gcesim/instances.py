"""Compute instances: insert, bulkInsert, get, list, aggregatedList, delete, setLabels,
getSerialPortOutput, and the instance model.

Owns the handlers and each instance's record: created PROVISIONING by the call (which answers
200 with a zonal Operation), then at `--op-delay` the operation decides — stockout rules
(`ZONE_RESOURCE_POOL_EXHAUSTED`), regional quota (`QUOTA_EXCEEDED` naming metric, limit and
region), bulkInsert's INTERNAL_ERROR for a machine-type URL — and either removes the instances
(the operation ends DONE with `error.errors[]`) or makes them RUNNING and hands them to vms.py
(boot through vmboot, external IP forwarders, the `maxRunDuration` timer). bulkInsert numbers
`namePattern` names after the highest existing match, keeps min(count, what fits) if that is at
least `minCount`, else nothing, and reports `perLocationStatus`. `requestId` returns the
operation it made before. Delete: STOPPING at once (processes stopped), gone at the end of its
operation; a missing instance is 404.
"""

import hashlib
import re
import secrets
import time

from simkit import Response

from . import catalog, plan as planner
from .errors import gerr, not_found
from .network import IpTaken
from .operations import check_request_id
from .world import rfc3339

PATTERN_RX = re.compile(r"^([^#]*)(#+)([^#]*)$")


def fingerprint(obj):
    import base64
    import json
    return base64.b64encode(hashlib.sha256(json.dumps(obj, sort_keys=True).encode())
                            .digest()[:8]).decode()


def instance_link(p, z, name):
    return catalog.link("projects", p, "zones", z, "instances", name)


def new_instance(world, project, zone, name, pl, user):
    iid = str(10 ** 18 + secrets.randbelow(9 * 10 ** 18))
    region = catalog.ZONES[zone]
    internal = world.vms.addresses.internal(project, region, pl["network_ip"],
                                            pl["subnetwork"].rsplit("/", 1)[-1])
    external = world.vms.addresses.external() if pl["access_config"] is not None else None
    nic = {"kind": "compute#networkInterface", "network": pl["network"],
           "subnetwork": pl["subnetwork"], "networkIP": internal, "name": "nic0",
           "fingerprint": fingerprint([name, internal]), "stackType": "IPV4_ONLY"}
    if external:
        ac = pl["access_config"]
        nic["accessConfigs"] = [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                 "name": ac.get("name", "External NAT"), "natIP": external,
                                 "networkTier": ac.get("networkTier", "PREMIUM")}]
    d = pl["disk"]
    api = {
        "kind": "compute#instance", "id": iid, "creationTimestamp": rfc3339(), "name": name,
        "tags": {"items": pl["tags"], "fingerprint": fingerprint(pl["tags"])},
        "machineType": catalog.link("projects", project, "zones", zone, "machineTypes",
                                    pl["machine_type"]),
        "status": "PROVISIONING", "zone": catalog.zone_link(project, zone),
        "canIpForward": False, "networkInterfaces": [nic],
        "disks": [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                   "source": catalog.link("projects", project, "zones", zone, "disks", name),
                   "deviceName": d["deviceName"] or "persistent-disk-0", "index": 0,
                   "boot": True, "autoDelete": d["autoDelete"], "interface": "SCSI",
                   "diskSizeGb": str(d["size"]), "architecture": "X86_64",
                   "licenses": [catalog.link("projects", d["image_project"], "global",
                                             "licenses", d["family"])]}],
        "metadata": {"kind": "compute#metadata", "fingerprint": fingerprint(pl["metadata"]),
                     "items": [{"key": k, "value": v} for k, v in pl["metadata"].items()]},
        "selfLink": instance_link(project, zone, name), "scheduling": pl["scheduling"],
        "cpuPlatform": "Unknown CPU Platform", "labels": pl["labels"],
        "labelFingerprint": fingerprint(pl["labels"]), "startRestricted": False,
        "deletionProtection": False, "fingerprint": fingerprint([iid]),
    }
    if pl["service_account"]:
        api["serviceAccounts"] = [{"email": pl["service_account"], "scopes": pl["scopes"]}]
    if pl["accelerators"]:
        api["guestAccelerators"] = [{"acceleratorType": catalog.link(
            "projects", project, "zones", zone, "acceleratorTypes", a), "acceleratorCount": n}
            for a, n in pl["accelerators"]]
    if pl["description"]:
        api["description"] = pl["description"]
    if pl["hostname"]:
        api["hostname"] = pl["hostname"]
    return {"api": api, "project": project, "zone": zone, "name": name, "id": iid,
            "status": "PROVISIONING", "_demand": dict(pl["demand"]), "internal_ip": internal,
            "external_ip": external, "sa": pl["service_account"], "scopes": pl["scopes"],
            "metadata": pl["metadata"], "created": time.time(), "running_at": None,
            "expires_at": None, "booted": None, "max_run": pl["max_run"],
            "created_by": user, "node": f"{name}-{iid[-6:]}"}


def set_status(inst, status):
    inst["status"] = inst["api"]["status"] = status


def summary(i, now):
    a = i["api"]
    return {"project": i["project"], "zone": i["zone"], "name": i["name"], "id": i["id"],
            "status": i["status"], "machine_type": a["machineType"].rsplit("/", 1)[-1],
            "labels": dict(a.get("labels") or {}), "tags": list(a["tags"]["items"]),
            "metadata_keys": sorted(i["metadata"]), "metadata": dict(i["metadata"]),
            "internal_ip": i["internal_ip"], "external_ip": i["external_ip"],
            "network": a["networkInterfaces"][0]["network"].rsplit("/", 1)[-1],
            "subnetwork": a["networkInterfaces"][0]["subnetwork"].rsplit("/", 1)[-1],
            "service_account": i["sa"], "scopes": list(i["scopes"]),
            "scheduling": dict(a["scheduling"]), "booted": i["booted"],
            "guest_accelerators": list(a.get("guestAccelerators") or []),
            "created_at": rfc3339(i["created"]), "age_seconds": round(now - i["created"], 1),
            "running_at": rfc3339(i["running_at"]) if i["running_at"] else None,
            "expires_at": rfc3339(i["expires_at"]) if i["expires_at"] else None,
            "node": i["node"], "created_by": i["created_by"]}


def _quota_error(world, project, region, keep_demands):
    use = world.usage(project, region)
    for metric in ("CPUS", "PREEMPTIBLE_CPUS", "INSTANCES", "IN_USE_ADDRESSES",
                   "DISKS_TOTAL_GB", "SSD_TOTAL_GB", "NVIDIA_L4_GPUS", "NVIDIA_A100_GPUS",
                   "NVIDIA_T4_GPUS"):
        limit = world.quota_limit(project, region, metric)
        if use.get(metric, 0.0) > limit and any(d.get(metric) for d in keep_demands):
            return {"code": "QUOTA_EXCEEDED",
                    "message": f"Quota '{metric}' exceeded.  Limit: {float(limit)} in region "
                               f"{region}.",
                    "errorDetails": [{"quotaInfo": {
                        "metricName": f"compute.googleapis.com/{metric.lower()}",
                        "limitName": f"{metric}-per-project-region",
                        "dimensions": {"region": region}, "limit": float(limit)}}]}
    return None


def _stockout_error(project, zone):
    return {"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
            "message": f"The zone 'projects/{project}/zones/{zone}' does not have enough "
                       "resources available to fulfill the request.  Try a different zone, or "
                       "try again later."}


def _settle(world, op, insts, min_count, pl, bulk):
    """At the end of the operation: keep what may run, drop the rest; finish the op."""
    ops, project, zone = world.operations, insts[0]["project"], insts[0]["zone"]
    region = catalog.ZONES[zone]
    errors, http = [], None
    with world.lock:
        alive = [i for i in insts if world.instances.get((project, zone, i["name"])) is i]
    gone = len(insts) - len(alive)
    if pl["errors_later"]:
        code, msg = pl["errors_later"][0]
        errors, http, keep = [{"code": code, "message": msg}], 500, []
    elif world.stockout(zone, pl["machine_type"], pl["scheduling"]["provisioningModel"]):
        errors, http, keep = [_stockout_error(project, zone)], 503, []
    else:
        keep = list(alive)
        while keep:
            err = _quota_error(world, project, region, [i["_demand"] for i in keep])
            if err is None:
                break
            if len(keep) <= min_count:
                errors, http = [err], 403
                break
            victim = keep.pop()
            world.vms.forget(victim)
        if errors:
            keep = []
    if gone and not bulk:
        errors, http = [{"code": "RESOURCE_NOT_READY",
                         "message": f"The resource 'projects/{project}/zones/{zone}/instances/"
                                    f"{insts[0]['name']}' was deleted while it was being "
                                    "created."}], 409
    for i in alive:
        if i not in keep:
            world.vms.forget(i)
    if bulk:
        op["instancesBulkInsertOperationMetadata"] = {"perLocationStatus": {
            f"zones/{zone}": {"status": "DONE", "targetVmCount": len(insts),
                              "createdVmCount": len(keep),
                              "failedToCreateVmCount": len(insts) - len(keep),
                              "deletedVmCount": 0}}}
    for i in keep:
        world.vms.started(i)
    ops.finish(op, errors or None, http)
    world.event("insert-settled", operation=op["name"], kept=[i["name"] for i in keep],
                errors=[e["code"] for e in errors])


def _failed(world, project, zone, op_type, target, user, rid, error, http):
    """An insert Compute accepted but fails in its operation, creating nothing."""
    op = world.operations.create(project, ("zone", zone), op_type, target, None, user, rid)
    world.event("insert-refused", project=project, zone=zone, operation=op["name"],
                errors=[error["code"]])
    world.schedule(world.opts["op_delay"],
                   lambda: world.operations.finish(op, [error], http))
    return Response(200, world.operations.public(op))


def register(app, world):
    ops = world.operations

    def scope(req):
        return app.require_project(req), app.require_zone(req)

    def insert(req):
        p, z = scope(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        body = req.body
        pl = planner.plan(world, p, z, body, False, _user(req))
        name = body.get("name")
        with world.lock:
            if (p, z, name) in world.instances:
                raise gerr(409, "alreadyExists", f"The resource 'projects/{p}/zones/{z}/"
                           f"instances/{name}' already exists")
            try:
                inst = new_instance(world, p, z, name, pl, _user(req))
            except IpTaken as taken:
                return _failed(world, p, z, "insert", instance_link(p, z, name), _user(req),
                               rid, taken.error(), 400)
            world.instances[(p, z, name)] = inst
            op = ops.create(p, ("zone", z), "insert", inst["api"]["selfLink"], inst["id"],
                            _user(req), rid)
        world.event("insert", project=p, zone=z, name=name, operation=op["name"])
        world.schedule(world.opts["op_delay"], lambda: _settle(world, op, [inst], 1, pl, False))
        return Response(200, ops.public(op))

    def bulk_insert(req):
        p, z = scope(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        body = req.body
        if body.get("sourceInstanceTemplate") or body.get("locationPolicy") or \
                body.get("instanceFlexibilityPolicy"):
            raise gerr(400, "invalid", "simulator: sourceInstanceTemplate, locationPolicy and "
                       "instanceFlexibilityPolicy are not simulated")
        if "count" not in body:
            raise gerr(400, "required", "Required field 'resource.count' not specified")
        count = int(body["count"])
        min_count = int(body.get("minCount") or count)
        if count < 1 or count > 5000 or not 1 <= min_count <= count:
            raise gerr(400, "invalid", f"Invalid value for field 'resource.minCount': "
                       f"'{min_count}'. minCount must be between 1 and count ({count}).")
        if "instanceProperties" not in body:
            raise gerr(400, "required", "Required field 'resource.instanceProperties' not "
                       "specified")
        pl = planner.plan(world, p, z, body["instanceProperties"], True, _user(req))
        if pl["network_ip"] and count > 1:
            raise gerr(400, "invalid", "networkIP cannot be set when creating more than one "
                       "instance.")
        per = body.get("perInstanceProperties") or {}
        pattern = body.get("namePattern")
        with world.lock:
            existing = {n for (pp, zz, n) in world.instances if pp == p and zz == z}
            names = _names(pattern, per, count, existing)
            clash = [n for n in names if n in existing]
            if clash:
                raise gerr(409, "alreadyExists", f"The resource 'projects/{p}/zones/{z}/"
                           f"instances/{clash[0]}' already exists")
            insts = []
            for n in names:
                try:
                    i = new_instance(world, p, z, n, pl, _user(req))
                except IpTaken as taken:
                    return _failed(world, p, z, "bulkInsert",
                                   catalog.link("projects", p, "zones", z, "instances"),
                                   _user(req), rid, taken.error(), 400)
                world.instances[(p, z, n)] = i
                insts.append(i)
            op = ops.create(p, ("zone", z), "bulkInsert",
                            catalog.link("projects", p, "zones", z, "instances"), None,
                            _user(req), rid)
        world.event("bulk-insert", project=p, zone=z, names=names, min_count=min_count,
                    operation=op["name"])
        world.schedule(world.opts["op_delay"],
                       lambda: _settle(world, op, insts, min_count, pl, True))
        return Response(200, ops.public(op))

    def get(req):
        p, z = scope(req)
        inst = _find(world, p, z, req.p("instance"))
        with world.lock:
            return Response(200, dict(inst["api"]))

    def listed(p, zones, pred):
        with world.lock:
            return {z: [dict(i["api"]) for (pp, zz, _), i in sorted(world.instances.items())
                        if pp == p and zz == z and pred(i["api"])] for z in zones}

    def list_(req):
        p, z = scope(req)
        from .filters import compile_filter
        items = listed(p, [z], compile_filter(req.q("filter")))[z]
        return Response(200, app.page(req, "compute#instanceList",
                                      catalog.link("projects", p, "zones", z, "instances"),
                                      items))

    def aggregated(req):
        p = app.require_project(req)
        from .filters import compile_filter
        per = listed(p, list(catalog.ZONES), compile_filter(req.q("filter")))
        return Response(200, app.aggregated(
            req, "compute#instanceAggregatedList", "instances",
            catalog.link("projects", p, "aggregated", "instances"),
            {f"zones/{z}": v for z, v in per.items()}))

    def delete(req):
        p, z = scope(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        inst = _find(world, p, z, req.p("instance"))
        op = world.vms.delete(inst, _user(req), rid, "API delete")
        return Response(200, ops.public(op))

    def set_labels(req):
        p, z = scope(req)
        rid = check_request_id(req.q("requestId"))
        done = ops.by_request(p, rid)
        if done is not None:
            return Response(200, ops.public(done))
        inst = _find(world, p, z, req.p("instance"))
        labels = dict(req.body.get("labels") or {})
        planner.plan  # syntax as for insert
        for k, v in labels.items():
            if not planner.LABEL_KEY.match(k) or not planner.LABEL_VALUE.match(str(v)):
                raise gerr(400, "invalid", f"Invalid value for field 'labels': '{k}={v}'.")
        with world.lock:
            if req.body.get("labelFingerprint") != inst["api"]["labelFingerprint"]:
                raise gerr(412, "conditionNotMet", "Labels fingerprint either invalid or "
                           "resource labels have changed")
            inst["api"]["labels"] = labels
            inst["api"]["labelFingerprint"] = fingerprint(labels)
            op = ops.create(p, ("zone", z), "setLabels", inst["api"]["selfLink"], inst["id"],
                            _user(req), rid)
        world.schedule(world.opts["op_pending"] * 2, lambda: ops.finish(op))
        return Response(200, ops.public(op))

    def serial(req):
        p, z = scope(req)
        inst = _find(world, p, z, req.p("instance"))
        port = req.q("port") or 1
        if not 1 <= int(port) <= 4:
            raise gerr(400, "invalid", f"Invalid value for field 'port': '{port}'. Must be "
                       "between 1 and 4.")
        text = world.vms.console((p, z, inst["name"])) if int(port) == 1 else ""
        data = text.encode()
        total = len(data)
        keep_from = max(0, total - 1024 * 1024)
        start = int(req.q("start") or 0)
        if start < 0:
            start = max(keep_from, total + start)
        start = min(max(start, keep_from), total)
        contents = data[start:].decode("utf-8", "replace")
        return Response(200, {"kind": "compute#serialPortOutput", "contents": contents,
                              "start": str(start), "next": str(total),
                              "selfLink": inst["api"]["selfLink"] + f"/serialPort?port={port}"})

    for name, fn in (("insert", insert), ("bulkInsert", bulk_insert), ("get", get),
                     ("list", list_), ("aggregatedList", aggregated), ("delete", delete),
                     ("setLabels", set_labels), ("getSerialPortOutput", serial)):
        app.handle_op("compute.instances." + name, fn)


def _user(req):
    principal = req.ctx.get("principal") or ""
    return principal.split(":", 1)[-1]


def _find(world, p, z, name):
    with world.lock:
        inst = world.instances.get((p, z, name))
        if inst is None:
            for (pp, zz, _), i in world.instances.items():
                if pp == p and zz == z and i["id"] == name:
                    inst = i
    if inst is None:
        raise not_found(f"projects/{p}/zones/{z}/instances/{name}")
    return inst


def _names(pattern, per, count, existing):
    if per:
        names = list(per)
        if pattern or len(names) != count:
            if len(names) != count:
                raise gerr(400, "invalid", f"perInstanceProperties names {len(names)} "
                           f"instances, count is {count}.")
        for n in names:
            if not planner.NAME_RX.match(n):
                raise gerr(400, "invalid", f"Invalid value for field 'resource."
                           f"perInstanceProperties': '{n}'. Must be a match of regex "
                           "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'")
        return names
    if not pattern:
        raise gerr(400, "invalid", "Either namePattern or perInstanceProperties must be set.")
    m = PATTERN_RX.match(pattern)
    if not m or len(m.group(2)) > 18:
        raise gerr(400, "invalid", f"Invalid value for field 'resource.namePattern': "
                   f"'{pattern}'. The name pattern must contain one sequence of 1 to 18 '#' "
                   "characters.")
    pre, hashes, post = m.groups()
    width = len(hashes)
    rx = re.compile("^" + re.escape(pre) + r"(\d{" + str(width) + "})" + re.escape(post) + "$")
    high = max([int(rx.match(n).group(1)) for n in existing if rx.match(n)] or [0])
    names = [f"{pre}{k:0{width}d}{post}" for k in range(high + 1, high + 1 + count)]
    if len(str(high + count)) > width:
        raise gerr(400, "invalid", f"Invalid value for field 'resource.namePattern': "
                   f"'{pattern}'. Not enough free names for {count} instances.")
    for n in names:
        if not planner.NAME_RX.match(n):
            raise gerr(400, "invalid", f"Invalid value for field 'resource.namePattern': "
                       f"'{pattern}'. Generated name '{n}' must be a match of regex "
                       "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'")
    return names
