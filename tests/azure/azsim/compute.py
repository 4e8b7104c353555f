"""Microsoft.Compute virtual machines (2024-07-01): create, read, list, delete, power, boot
diagnostics, and their life (capacity, quota, boot through tests/vmboot, billing).

Owns the checks ARM makes beyond the spec on `PUT .../virtualMachines/{vm}`, in this order:
group exists and is not being deleted; location; size known (400 `InvalidParameter`) and offered
there, and for Spot with Spot capacity (409 `SkuNotAvailable`, synchronous, nothing created);
image (`latest` resolved; unknown 404 `PlatformImageNotFound`); admin user name (reserved names
400 `InvalidParameter`); Linux authentication (no SSH key and no password: 400 "Authentication
using either SSH or by user name and password must be enabled in Linux profile."); customData
base64 ≤ 87,380 characters; NICs exist, same location, not attached elsewhere (`NicInUse`);
Spot `maxPrice` -1 or ≥ the price (`SpotPriceGreaterThanProvidedMaxPrice`); vCPU quota per
family, Low-priority and Total Regional (409 `OperationNotAllowed`, the quota named only in the
message). Then 201 with `provisioningState: Creating` and `Azure-AsyncOperation`; after
`--vm-create-delay` the operation is `Succeeded` (the VM running, its base64 customData decoded
and booted by vmboot on the primary NIC's private IP) — or `Failed` with `AllocationFailed` /
`ZonalAllocationFailed` / `OverconstrainedAllocationRequest` when the size has no capacity
(`--no-capacity`, `--spot-no-capacity`, `--overconstrained`, or `POST /_sim/capacity`), the VM
left in `provisioningState: Failed` until deleted. customData is never returned (GET, list,
IMDS); userData only with `$expand=userData`. A guest power-off (Dask exits, or the TTL's
`shutdown -P`) makes the VM `PowerState/stopped`: still allocated and billed. DELETE (202,
`Azure-AsyncOperation` + `Location`) stops the processes after `--vm-delete-delay` and honours
the deleteOption of NICs (and their public IPs) and of the OS disk (default Detach: the disk
stays, and bills).
"""

import base64
import binascii
import re
import time
import uuid

from simkit import ApiError, NO_BODY, Response

from . import catalog, lro
from .world import iso

T_VM, T_DISK = "Microsoft.Compute/virtualMachines", "Microsoft.Compute/disks"
T_NIC, T_PIP = "Microsoft.Network/networkInterfaces", "Microsoft.Network/publicIPAddresses"
CUSTOM_DATA_MAX = 87380
QUOTA_URL = "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView"


def vm_by_private_ip(world, ip):
    for r in world.res.values():
        if r["type"] == T_VM and r.get("_ip") == ip and not r.get("_deleting"):
            return r
    return None


def usage(world, loc):
    out = {"total": 0, "spot": 0, "vms": 0, "families": {}}
    for r in world.res.values():
        if r["type"] != T_VM or r["location"] != loc or r["props"].get(
                "provisioningState") == "Failed" or r.get("_power") == "deallocated":
            continue
        rec = catalog.size(r["props"]["hardwareProfile"]["vmSize"])
        if rec is None:
            continue
        fam, vcpus = rec[1][0], rec[1][1]
        out["vms"] += 1
        if str(r["props"].get("priority", "")).lower() == "spot":
            out["spot"] += vcpus
        else:
            out["total"] += vcpus
            out["families"][fam] = out["families"].get(fam, 0) + vcpus
    return out


def view(app, r, expand=None):
    p = {k: v for k, v in r["props"].items()}
    p["osProfile"] = {k: v for k, v in p["osProfile"].items()
                      if k not in ("customData", "adminPassword")}
    p.pop("userData", None)
    if expand == "userData" and r.get("_user_data") is not None:
        p["userData"] = r["_user_data"]
    p["vmId"], p["timeCreated"] = r["_vm_id"], iso(r["created"])
    if expand == "instanceView":
        p["instanceView"] = instance_view(r)
    out = {"id": r["id"], "name": r["name"], "type": T_VM, "location": r["location"],
           "properties": p, "etag": f"\"{r['_generation']}\""}
    if r["tags"]:
        out["tags"] = dict(r["tags"])
    if r.get("_zones"):
        out["zones"] = list(r["_zones"])
    if r.get("_identity"):
        out["identity"] = {"type": "SystemAssigned", "principalId": r["_identity"]["principalId"],
                           "tenantId": app.opts["tenant"]}
    return out


def instance_view(r):
    state = r["props"]["provisioningState"]
    statuses = [{"code": f"ProvisioningState/{state.lower()}", "level":
                 "Error" if state == "Failed" else "Info", "displayStatus":
                 f"Provisioning {state.lower()}"}]
    if r.get("_failure"):
        statuses[0]["code"] = f"ProvisioningState/failed/{r['_failure']['code']}"
        statuses[0]["message"] = r["_failure"]["message"]
    if state in ("Succeeded", "Deleting") or r.get("_power"):
        power = r.get("_power") or "starting"
        statuses.append({"code": f"PowerState/{power}", "level": "Info",
                         "displayStatus": f"VM {power}"})
    return {"computerName": r["props"]["osProfile"].get("computerName", r["name"]),
            "osName": "ubuntu", "osVersion": r.get("_os_version", "24.04"),
            "hyperVGeneration": r.get("_hyperv", "V2"), "statuses": statuses}


def imds_instance(world, r):
    nic = world.get(r["props"]["networkProfile"]["networkInterfaces"][0]["id"], T_NIC)
    ipv4 = []
    if nic is not None:
        for ic in nic["props"]["ipConfigurations"]:
            pub = world.get((ic["properties"].get("publicIPAddress") or {}).get("id", "-"), T_PIP)
            ipv4.append({"privateIpAddress": ic["properties"]["privateIPAddress"],
                         "publicIpAddress": pub["props"]["ipAddress"] if pub else ""})
    return {"compute": {"name": r["name"], "resourceGroupName": world.groups.get(
        r["rg"], {}).get("name", r["rg"]), "subscriptionId": world.sub, "location": r["location"],
        "vmId": r["_vm_id"], "vmSize": r["props"]["hardwareProfile"]["vmSize"],
        "osType": "Linux", "resourceId": r["id"], "zone": (r.get("_zones") or [""])[0],
        "tags": ";".join(f"{k}:{v}" for k, v in r["tags"].items()),
        "tagsList": [{"name": k, "value": v} for k, v in r["tags"].items()],
        "priority": r["props"].get("priority", "Regular")},
        "network": {"interface": [{"ipv4": {"ipAddress": ipv4}, "macAddress":
                                   (nic or {}).get("_mac", "").replace("-", "")}]}}


def _bad(msg, target=None, status=400, code="InvalidParameter"):
    err = {"code": code, "message": msg}
    if target:
        err["target"] = target
    return ApiError(status, code, msg, body={"error": err})


def _image(app, props, loc):
    ref = (props.get("storageProfile") or {}).get("imageReference") or {}
    want = f"{ref.get('publisher')}:{ref.get('offer')}:{ref.get('sku')}:{ref.get('version')}"
    hit = catalog.image(ref.get("publisher"), ref.get("offer"), ref.get("sku"))
    if hit is None or not ref.get("version"):
        raise _bad(f"The platform image '{want}' is not available. Verify that all fields in the "
                   "storage profile are correct. For more details about storage profile "
                   "information, please refer to https://aka.ms/storageprofile",
                   "imageReference", 404, "PlatformImageNotFound")
    (pub, offer, sku), (versions, gen, arch) = hit
    ver = versions[-1] if ref["version"].lower() == "latest" else ref["version"]
    if ver not in versions:
        raise _bad(f"The platform image '{want}' is not available. Verify that all fields in the "
                   "storage profile are correct.", "imageReference", 404,
                   "PlatformImageNotFound")
    return {"publisher": pub, "offer": offer, "sku": sku, "version": ref["version"],
            "exactVersion": ver}, gen


def _os_profile(props, name):
    osp = dict(props.get("osProfile") or {})
    if not osp:
        raise _bad("Required parameter 'osProfile' is missing (null).", "osProfile")
    user = osp.get("adminUsername")
    if not user:
        raise _bad("Required parameter 'adminUsername' is missing (null).", "adminUsername")
    if user.lower() in catalog.RESERVED_ADMIN_NAMES or len(user) > 64:
        raise _bad("The Admin Username specified is not allowed.", "adminUsername")
    lin = osp.get("linuxConfiguration") or {}
    keys = (lin.get("ssh") or {}).get("publicKeys") or []
    password = osp.get("adminPassword")
    if lin.get("disablePasswordAuthentication") and not keys:
        raise _bad("Authentication using either SSH or by user name and password must be "
                   "enabled in Linux profile.", "linuxConfiguration")
    if not keys and not password:
        raise _bad("Authentication using either SSH or by user name and password must be "
                   "enabled in Linux profile.", "linuxConfiguration")
    for k in keys:
        if not re.match(r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+", str(
                k.get("keyData", ""))):
            raise _bad("The value of parameter linuxConfiguration.ssh.publicKeys.keyData is "
                       "invalid.", "linuxConfiguration.ssh.publicKeys.keyData")
        if k.get("path") != f"/home/{user}/.ssh/authorized_keys":
            raise _bad("The value of parameter linuxConfiguration.ssh.publicKeys.path is "
                       "invalid.", "linuxConfiguration.ssh.publicKeys.path")
    cd = osp.get("customData")
    decoded = None
    if cd is not None:
        try:
            decoded = base64.b64decode(cd, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is None or len(cd) > CUSTOM_DATA_MAX:
            raise _bad("Custom data in OSProfile must be in Base64 encoding and with a maximum "
                       f"length of {CUSTOM_DATA_MAX} characters.", "customData")
    osp.setdefault("computerName", name)
    osp.setdefault("secrets", [])
    osp.setdefault("allowExtensionOperations", True)
    osp.setdefault("requireGuestProvisionSignal", True)
    if lin:
        osp["linuxConfiguration"] = dict(lin, provisionVMAgent=lin.get("provisionVMAgent", True),
                                         disablePasswordAuthentication=bool(
                                             lin.get("disablePasswordAuthentication")))
    return osp, decoded, password


def _quota(app, loc, size_name, rec, spot):
    o = app.opts
    fam, vcpus = rec[0], rec[1]
    used = usage(app.world, loc)
    checks = [("LowPriority", used["spot"], o["spot_quota"])] if spot else [
        (fam, used["families"].get(fam, 0), o["family_quota"]),
        ("Total Regional", used["total"], o["vcpu_quota"])]
    for name, cur, limit in checks:
        if cur + vcpus > limit:
            msg = (f"Operation could not be completed as it results in exceeding approved {name} "
                   f"Cores quota. Additional details - Deployment Model: Resource Manager, "
                   f"Location: {loc}, Current Limit: {limit}, Current Usage: {cur}, Additional "
                   f"Required: {vcpus}, (Minimum) New Limit Required: {cur + vcpus}. Submit a "
                   f"request for Quota increase at {QUOTA_URL} by specifying parameters listed "
                   "in the ‘Details’ section for deployment to succeed. Please read more about "
                   "quota limits at https://docs.microsoft.com/en-us/azure/azure-supportability/"
                   "per-vm-quota-requests")
            raise _bad(msg, None, 409, "OperationNotAllowed")


def create(app, req):
    w, b = app.world, req.body
    g = app.rg_or_404(req, writing=True)
    name = req.p("vmName")
    rid = w.rid(g["name"], T_VM, name)
    props = dict(b.get("properties") or {})
    with w.lock:
        old = w.get(rid, T_VM)
        if old is not None:
            return update(app, req, old, b, props)
    loc = catalog.location(b["location"])
    if loc is None:
        raise _bad(f"The provided location '{b['location']}' is not available for resource type "
                   f"'{T_VM}'. List of available regions for the resource type is "
                   f"'{','.join(catalog.LOCATIONS)}'.", None, 400,
                   "LocationNotAvailableForResourceType")
    size_name = (props.get("hardwareProfile") or {}).get("vmSize")
    hit = catalog.size(size_name) if size_name else None
    if hit is None:
        raise _bad(f"The value {size_name} provided for the VM size is not valid. The valid "
                   f"sizes in the current region are: {', '.join(catalog.SIZES)}.",
                   "vmSize")
    size_name, rec = hit
    spot = str(props.get("priority", "Regular")).lower() == "spot"
    zones = b.get("zones") or []
    if loc in rec[4] or (spot and not rec[5]) or any(z not in catalog.LOCATIONS[loc][2]
                                                     for z in zones):
        raise _bad(f"The requested VM size for resource 'Following SKUs have failed for "
                   f"Capacity Restrictions: {size_name}' is currently not available in location "
                   f"'{loc}'{' for Spot' if spot and loc not in rec[4] else ''}. Please try "
                   "another size or deploy to a different location or different zone. See "
                   "https://aka.ms/azureskunotavailable for details.", None, 409,
                   "SkuNotAvailable")
    image, gen = _image(app, props, loc)
    osp, decoded, password = _os_profile(props, name)
    nics = (props.get("networkProfile") or {}).get("networkInterfaces") or []
    if not nics or (props.get("networkProfile") or {}).get("networkInterfaceConfigurations"):
        raise _bad("Required parameter 'networkProfile.networkInterfaces' is missing (null).",
                   "networkProfile")
    if spot:
        price = (props.get("billingProfile") or {}).get("maxPrice", -1)
        if price != -1 and price < rec[3] * catalog.SPOT_DISCOUNT:
            raise _bad(f"Unable to perform operation '{name}' since the provided max price "
                       f"'{price} USD' is lower than the current spot price "
                       f"'{rec[3] * catalog.SPOT_DISCOUNT} USD' for Azure Spot VM size "
                       f"'{size_name}'.", None, 409, "SpotPriceGreaterThanProvidedMaxPrice")
    elif props.get("evictionPolicy") or props.get("billingProfile"):
        raise _bad("Eviction policy and max price can be set only for Azure Spot virtual "
                   "machines.", "evictionPolicy")
    with w.lock:
        nic_recs = []
        for i, ref in enumerate(nics):
            nic = w.get(ref.get("id", ""), T_NIC)
            if nic is None:
                raise _bad(f"Resource {ref.get('id')} not found.", None, 404, "NotFound")
            if nic["location"] != loc:
                raise _bad(f"The network interface {nic['id']} is in location "
                           f"'{nic['location']}', while the virtual machine is in '{loc}'.",
                           "networkProfile.networkInterfaces")
            if nic.get("_vm") and nic["_vm"].lower() != rid.lower():
                raise _bad(f"Network Interface {nic['id']} is used by existing resource "
                           f"{nic['_vm']}.", None, 400, "NicInUse")
            nic_recs.append(nic)
        _quota(app, loc, size_name, rec, spot)
        ip = nic_recs[0]["props"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        osd = dict((props.get("storageProfile") or {}).get("osDisk") or {})
        disk_name = osd.get("name") or f"{name}_OsDisk_1_{uuid.uuid4().hex}"
        disk = w.add(g["name"], T_DISK, disk_name, loc, b.get("tags"),
                     {"provisioningState": "Succeeded"}, _managed_by=rid,
                     _sku=(osd.get("managedDisk") or {}).get("storageAccountType", "Premium_LRS"),
                     _size_gb=osd.get("diskSizeGB", 30))
        osd.update(osType="Linux", name=disk_name, createOption=osd.get("createOption",
                                                                        "FromImage"),
                   caching=osd.get("caching", "ReadWrite"), deleteOption=osd.get(
                       "deleteOption", "Detach"), diskSizeGB=osd.get("diskSizeGB", 30),
                   managedDisk=dict(osd.get("managedDisk") or {}, id=disk["id"],
                                    storageAccountType=disk["_sku"]))
        props.update(storageProfile={"imageReference": image, "osDisk": osd, "dataDisks": [],
                                     "diskControllerType": "SCSI"},
                     osProfile=osp, provisioningState="Creating",
                     networkProfile={"networkInterfaces": [
                         {"id": n["id"], "properties": {
                             "deleteOption": ((nics[i].get("properties") or {}).get(
                                 "deleteOption") or "Detach"),
                             "primary": i == 0}} for i, n in enumerate(nic_recs)]},
                     hardwareProfile=dict(props["hardwareProfile"], vmSize=size_name))
        user_data = props.pop("userData", None)
        if spot:
            props.setdefault("evictionPolicy", "Deallocate")
            props.setdefault("billingProfile", {"maxPrice": -1})
        vm = w.add(g["name"], T_VM, name, loc, b.get("tags"), props, _vm_id=str(uuid.uuid4()),
                   _generation=1, _ip=ip, _zones=zones, _user_data=user_data,
                   _custom_data=decoded, _has_custom_data=decoded is not None,
                   _password=bool(password), _power=None, _alloc_since=None, _billed=0.0,
                   _hyperv=gen, _booted=None, _os_version=image["exactVersion"][:5])
        ident = (b.get("identity") or {}).get("type")
        if ident and ident != "None":
            if ident != "SystemAssigned":
                raise _bad("Only the system-assigned identity is simulated.", "identity")
            pid = w.new_principal("managed_identity", vm=rid)
            vm["_identity"] = {"principalId": pid, "clientId": str(uuid.uuid4())}
        for n in nic_recs:
            n["_vm"] = vm["id"]
        op = lro.start(app, "Microsoft.Compute", loc, "vm-create", vm["id"])
        vm["_op"] = op["id"]
        w.event("vm-created", id=vm["id"], size=size_name, spot=spot, ip=ip,
                custom_data_bytes=len(decoded or b""), password=bool(password))
        body = view(app, vm)
    w.schedule(app.opts["vm_create_delay"], lambda: _provisioned(app, vm["id"], op["id"]))
    return Response(201, body, headers=lro.headers(app, op))


def update(app, req, vm, b, props):
    """A re-PUT of an existing VM: tags and userData may change; customData may not."""
    osp = props.get("osProfile") or {}
    if "customData" in osp:
        new = base64.b64decode(osp["customData"]) if osp["customData"] else None
        if new != vm.get("_custom_data"):
            raise _bad("Changing property 'customData' is not allowed.", "customData", 409,
                       "PropertyChangeNotAllowed")
    w = app.world
    with w.lock:
        if vm.get("_deleting"):
            raise _bad(f"Operation on VM {vm['name']} is not allowed while it is being deleted.",
                       None, 409, "OperationNotAllowed")
        vm["tags"] = dict(b.get("tags") or {})
        if "userData" in props:
            vm["_user_data"] = props["userData"]
        vm["_generation"] += 1
        vm["changed"] = time.time()
        return Response(200, view(app, vm))


def _provisioned(app, vm_key, op_id):
    w = app.world
    with w.lock:
        vm = w.get(vm_key, T_VM)
        if vm is None or vm["props"]["provisioningState"] != "Creating":
            return
        size_name = vm["props"]["hardwareProfile"]["vmSize"]
        spot = str(vm["props"].get("priority", "")).lower() == "spot"
        cap = w.capacity
        failure = None
        if size_name in cap["overconstrained"]:
            failure = ("OverconstrainedAllocationRequest",
                       "Allocation failed. VM(s) with the following constraints cannot be "
                       f"allocated, because the condition is too restrictive. Please remove some "
                       f"constraints and try again. Constraints applied are: VM Size: "
                       f"{size_name}, Location: {vm['location']}"
                       + (f", Zone: {vm['_zones'][0]}" if vm.get("_zones") else "") + ".")
        elif size_name in cap["no_capacity"] or (spot and size_name in cap["spot_no_capacity"]):
            if vm.get("_zones"):
                failure = ("ZonalAllocationFailed",
                           "Allocation failed. We do not have sufficient capacity for the "
                           f"requested VM size {size_name} in this zone. Read more about "
                           "improving likelihood of allocation success at "
                           "http://aka.ms/allocation-guidance")
            else:
                failure = ("AllocationFailed",
                           "Allocation failed. We do not have sufficient capacity for the "
                           f"requested VM size {size_name} in this region. Read more about "
                           "improving likelihood of allocation success at "
                           "http://aka.ms/allocation-guidance")
        if failure:
            vm["props"]["provisioningState"] = "Failed"
            vm["_failure"] = {"code": failure[0], "message": failure[1]}
            w.event("vm-failed", id=vm["id"], code=failure[0])
            lro.finish(w, op_id, "Failed", {"code": failure[0], "message": failure[1]})
            return
        vm["props"]["provisioningState"] = "Succeeded"
        vm["_power"], vm["_alloc_since"] = "running", time.time()
        data, ip = vm.get("_custom_data"), vm["_ip"]
        w.event("vm-running", id=vm["id"])
    lro.finish(w, op_id, "Succeeded")
    if data is not None:
        from .vmlife import _boot
        w.spawn(_boot, app, vm["id"], vm["_vm_id"], data, ip)
    else:
        with w.lock:
            vm["_booted"] = "no customData"
