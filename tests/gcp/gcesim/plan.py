"""What an Instance (instances.insert) or InstanceProperties (bulkInsert) body asks for, checked
the way Compute checks it beyond the discovery document.

Owns `plan(world, project, zone, body, bulk, user)`: machine type (insert: a zonal URL,
`zones/Z/machineTypes/T` or longer; bulkInsert: the **bare name** — a URL there is accepted but
its operation fails with INTERNAL_ERROR, as reported), boot disk and image (family or image
URL of `cos-cloud` / `ubuntu-os-cloud`; size ≥ the image's 10 GB), network interface (the
`default` network or a custom one with one of its subnets; optional `networkIP`; at most one ONE_TO_ONE_NAT access config), tags and
labels syntax, metadata keys and sizes, at most one service account (which must exist and have
propagated), scheduling (SPOT needs TERMINATE and no automatic restart; a termination action on
STANDARD needs a time limit; `maxRunDuration` 30 s … 120 days; GPUs need TERMINATE), guest
accelerators offered in the zone, and the quota demand. Raises the API's 400s.
"""

import re
import time

from . import catalog, network
from .errors import gerr, invalid, not_found

NAME_RX = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
META_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
DISK_TYPES = {"pd-standard": "DISKS_TOTAL_GB", "pd-balanced": "SSD_TOTAL_GB",
              "pd-ssd": "SSD_TOTAL_GB", "hyperdisk-balanced": "SSD_TOTAL_GB"}
MAX_RUN = 120 * 24 * 3600


def strip_url(value, project):
    """A partial form of a compute URL: drops https://…/compute/v1/ and projects/P/."""
    v = value.strip()
    for prefix in ("https://www.googleapis.com/compute/v1/", "https://compute.googleapis.com/"
                   "compute/v1/", "compute/v1/"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    if v.startswith(f"projects/{project}/"):
        v = v[len(f"projects/{project}/"):]
    return v


def zonal_name(value, project, zone, collection, field, bulk):
    """The name in a zonal reference (machineTypes, diskTypes, acceleratorTypes)."""
    if bulk:
        if "/" in value:
            return None           # bulkInsert wants the bare name; see instances.bulk_insert
        return value
    v = strip_url(value, project)
    m = re.match(rf"^zones/([^/]+)/{collection}/([^/]+)$", v)
    if not m:
        raise invalid(field, value, f"Must be a URL of the form zones/ZONE/{collection}/NAME.")
    if m.group(1) != zone:
        raise invalid(field, value, f"The {collection} must be in zone '{zone}'.")
    return m.group(2)


def image_of(source, project):
    v = strip_url(source, project)
    m = re.match(r"^projects/([^/]+)/global/images/(family/)?([^/]+)$", v)
    if not m:
        if re.match(r"^global/images/", v):
            raise not_found(f"projects/{project}/{v}")
        raise invalid("resource.disks[0].initializeParams.sourceImage", source,
                      "Must be a URL of the form projects/PROJECT/global/images/family/FAMILY.")
    proj, fam, name = m.groups()
    if fam:
        image = catalog.IMAGES.get(proj, {}).get(name)
        if image is None:
            raise not_found(f"projects/{proj}/global/images/family/{name}")
        return proj, image, name
    found = catalog.find_image(proj, name)
    if found is None:
        raise not_found(f"projects/{proj}/global/images/{name}")
    return proj, found[0], found[1]


def plan(world, project, zone, body, bulk, user):
    pre = "instanceProperties" if bulk else "resource"
    region = catalog.ZONES[zone]
    out = {"errors_later": [], "demand": {"INSTANCES": 1.0}}

    mt_raw = body.get("machineType")
    if not mt_raw:
        raise gerr(400, "required", f"Required field '{pre}.machineType' not specified")
    mt_name = zonal_name(mt_raw, project, zone, "machineTypes", f"{pre}.machineType", bulk)
    if mt_name is None:
        out["errors_later"].append(("INTERNAL_ERROR", "Internal error. Please try again or "
                                    "contact Google Support. (Code: '-5284937466029217281')"))
        mt_name = mt_raw.rstrip("/").rsplit("/", 1)[-1]
    mt = catalog.machine_type(mt_name, zone)
    if mt is None:
        raise invalid(f"{pre}.machineType", mt_raw, f"Machine type with name '{mt_name}' does "
                      f"not exist in zone '{zone}'.")
    out["machine_type"] = mt_name
    cpus, _, mt_accs, _ = mt

    disks = body.get("disks") or []
    boots = [d for d in disks if d.get("boot")]
    if len(boots) != 1 or len(disks) != 1:
        raise gerr(400, "invalid", f"Invalid value for field '{pre}.disks': "
                   f"{len(disks)} disk(s), {len(boots)} boot disk(s). The simulator supports "
                   "exactly one disk, the boot disk (boot: true).")
    d = boots[0]
    ip = d.get("initializeParams") or {}
    if d.get("source") or not ip.get("sourceImage"):
        raise gerr(400, "required", f"Required field '{pre}.disks[0].initializeParams."
                   "sourceImage' not specified")
    img_project, image, family = image_of(ip["sourceImage"], project)
    size = int(ip.get("diskSizeGb") or catalog.IMAGE_DISK_GB)
    if size < catalog.IMAGE_DISK_GB:
        raise gerr(400, "invalid", f"Invalid value for field '{pre}.disks[0].initializeParams."
                   f"diskSizeGb': '{size}'. Requested disk size cannot be smaller than the "
                   f"image size ({catalog.IMAGE_DISK_GB} GB)")
    dtype = "pd-standard"
    if ip.get("diskType"):
        dtype = zonal_name(ip["diskType"], project, zone, "diskTypes",
                           f"{pre}.disks[0].initializeParams.diskType", bulk) or \
            ip["diskType"].rsplit("/", 1)[-1]
        if dtype not in DISK_TYPES:
            raise invalid(f"{pre}.disks[0].initializeParams.diskType", ip["diskType"],
                          f"Disk type '{dtype}' does not exist in zone '{zone}'.")
    out["disk"] = {"image_project": img_project, "image": image, "family": family,
                   "size": size, "type": dtype, "autoDelete": d.get("autoDelete", True),
                   "deviceName": d.get("deviceName")}
    out["demand"][DISK_TYPES[dtype]] = float(size)

    nics = body.get("networkInterfaces") or []
    if len(nics) != 1:
        raise gerr(400, "invalid", f"Invalid value for field '{pre}.networkInterfaces': "
                   f"{len(nics)} interfaces. The simulator supports exactly one (nic0).")
    nic = nics[0]
    nets = world.vms.addresses if world.vms is not None else None
    out["network"] = network.resolve_network(project, nic.get("network"),
                                             f"{pre}.networkInterfaces[0].network", nets)
    out["subnetwork"] = network.resolve_subnet(project, region, nic.get("subnetwork"),
                                               f"{pre}.networkInterfaces[0].subnetwork",
                                               out["network"], nets)
    out["network_ip"] = nic.get("networkIP")
    acs = nic.get("accessConfigs") or []
    if len(acs) > 1:
        raise invalid(f"{pre}.networkInterfaces[0].accessConfigs", len(acs),
                      "At most one access config currently supported.")
    for ac in acs:
        if ac.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
            raise invalid(f"{pre}.networkInterfaces[0].accessConfigs[0].type", ac["type"],
                          "Only ONE_TO_ONE_NAT is supported for IPv4.")
        if ac.get("natIP"):
            raise gerr(400, "invalid", "simulator: a static natIP is not simulated")
    out["access_config"] = dict(acs[0]) if acs else None
    if acs:
        out["demand"]["IN_USE_ADDRESSES"] = 1.0

    tags = list((body.get("tags") or {}).get("items") or [])
    for i, t in enumerate(tags):
        if not NAME_RX.match(t):
            raise invalid(f"{pre}.tags.items[{i}]", t, "Must be a match of regex "
                          "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    if len(tags) > 64:
        raise gerr(400, "invalid", f"Invalid value for field '{pre}.tags.items': more than 64")
    out["tags"] = sorted(set(tags), key=tags.index)

    labels = dict(body.get("labels") or {})
    if len(labels) > 64:
        raise gerr(400, "invalid", f"Invalid value for field '{pre}.labels': more than 64 labels")
    for k, v in labels.items():
        if not LABEL_KEY.match(k):
            raise invalid(f"{pre}.labels", k, "Label keys must start with a lowercase letter "
                          "and contain only lowercase letters, digits, '_' and '-' (1-63).")
        if not isinstance(v, str) or not LABEL_VALUE.match(v):
            raise invalid(f"{pre}.labels.{k}", v, "Label values may contain only lowercase "
                          "letters, digits, '_' and '-' (0-63).")
    out["labels"] = labels

    items = list((body.get("metadata") or {}).get("items") or [])
    meta, total = {}, 0
    for i, it in enumerate(items):
        k, v = it.get("key"), it.get("value")
        if not k or not META_KEY.match(k):
            raise invalid(f"{pre}.metadata.items[{i}].key", k, "Must be a match of regex "
                          "'[a-zA-Z0-9-_]{1,128}'")
        if k in meta:
            raise gerr(400, "invalid", f"Invalid value for field '{pre}.metadata': Duplicate "
                       f"metadata key \"{k}\".")
        v = "" if v is None else v
        if len(v.encode()) > 256 * 1024:
            raise gerr(400, "invalid", f"Value for metadata key '{k}' is larger than 256 KB.")
        total += len(k) + len(v.encode())
        meta[k] = v
    if total > 512 * 1024:
        raise gerr(400, "invalid", "Metadata has a total size larger than 512 KB.")
    out["metadata"] = meta

    sas = body.get("serviceAccounts") or []
    if len(sas) > 1:
        raise invalid(f"{pre}.serviceAccounts", len(sas), "At most one service account per VM.")
    out["service_account"], out["scopes"] = None, []
    if sas:
        email = sas[0].get("email") or "default"
        if email == "default":
            email = f"{world.number(project)}-compute@developer.gserviceaccount.com"
        else:
            with world.lock:
                sa = world.service_accounts.get(email)
            if sa is None or sa["_project"] != project or sa["_ready"] > time.time():
                raise gerr(400, "invalid", f"Invalid value for field '{pre}.serviceAccounts[0]."
                           f"email': '{email}'. The user does not have access to service "
                           f"account '{email}'.  User: '{user}'.  Ask a project owner to grant"
                           " you the iam.serviceAccountUser role on the service account")
        out["service_account"] = email
        out["scopes"] = list(sas[0].get("scopes") or [])

    accs = []
    for i, g in enumerate(body.get("guestAccelerators") or []):
        name = zonal_name(g.get("acceleratorType") or "", project, zone, "acceleratorTypes",
                          f"{pre}.guestAccelerators[{i}].acceleratorType", bulk) or \
            str(g.get("acceleratorType")).rsplit("/", 1)[-1]
        if name not in catalog.ACCELERATORS or zone not in catalog.ACCELERATOR_ZONES[name]:
            raise invalid(f"{pre}.guestAccelerators[{i}].acceleratorType",
                          g.get("acceleratorType"), f"Accelerator type '{name}' does not exist "
                          f"in zone '{zone}'.")
        accs.append((name, int(g.get("acceleratorCount") or 0)))
    for name, n in list(accs) + list(mt_accs):
        metric = catalog.ACCELERATORS[name][1]
        out["demand"][metric] = out["demand"].get(metric, 0.0) + n
    out["accelerators"] = accs

    s = dict(body.get("scheduling") or {})
    model = s.get("provisioningModel") or ("SPOT" if s.get("preemptible") else "STANDARD")
    spot = model == "SPOT" or s.get("preemptible")
    gpu = bool(accs or mt_accs)
    ohm = s.get("onHostMaintenance") or ("TERMINATE" if spot or gpu else "MIGRATE")
    if spot and ohm != "TERMINATE":
        raise gerr(400, "invalid", "Invalid value for field 'resource.scheduling."
                   "onHostMaintenance': 'MIGRATE'. Scheduling must have preemptible be false "
                   "when OnHostMaintenance isn't TERMINATE.")
    if gpu and ohm != "TERMINATE":
        raise gerr(400, "invalid", "Instances with guest accelerators do not support live "
                   "migration.")
    restart = s.get("automaticRestart", not spot)
    if spot and restart:
        raise gerr(400, "invalid", "Invalid value for field 'resource.scheduling."
                   "automaticRestart': 'true'. Preemptible instances cannot be automatically "
                   "restarted.")
    mrd = s.get("maxRunDuration")
    action = s.get("instanceTerminationAction")
    if mrd is not None:
        secs = int(mrd.get("seconds") or 0)
        if mrd.get("nanos"):
            raise gerr(400, "invalid", "maxRunDuration must be a whole number of seconds.")
        if not 30 <= secs <= MAX_RUN:
            raise invalid(f"{pre}.scheduling.maxRunDuration.seconds", secs,
                          "Must be between 30 seconds and 120 days.")
        if s.get("preemptible"):
            raise gerr(400, "invalid", "maxRunDuration is not supported for preemptible VMs; "
                       "use provisioningModel SPOT.")
        out["max_run"] = secs
    else:
        out["max_run"] = None
    if s.get("terminationTime"):
        raise gerr(400, "invalid", "simulator: scheduling.terminationTime is not simulated; "
                   "use maxRunDuration")
    if action and model == "STANDARD" and mrd is None:
        raise gerr(400, "invalid", "You cannot specify a termination action for a VM instance "
                   "that has the standard provisioning model.")
    if mrd is not None and not action:
        action = "STOP"
    cpu_metric = "CPUS"
    if spot and world.quota_limit(project, region, "PREEMPTIBLE_CPUS") > 0:
        cpu_metric = "PREEMPTIBLE_CPUS"
    out["demand"][cpu_metric] = float(cpus)
    sched = {"onHostMaintenance": ohm, "automaticRestart": bool(restart),
             "preemptible": bool(s.get("preemptible", False)), "provisioningModel": model}
    if action:
        sched["instanceTerminationAction"] = action
    if mrd is not None:
        sched["maxRunDuration"] = {"seconds": str(out["max_run"])}
    out["scheduling"] = sched
    out["description"] = body.get("description")
    out["hostname"] = body.get("hostname")
    if body.get("sourceInstanceTemplate") or body.get("sourceMachineImage"):
        raise gerr(400, "invalid", "simulator: instance templates and machine images are not "
                   "simulated")
    return out
