"""`GET /_sim/inventory`: the whole simulated subscription, for test assertions.

Owns `build_inventory(app)`: `resource_groups` (name, location, tags, state), `resources`
(every resource: id, type, name, group, location, tags, provisioningState), `vms` (size,
priority, power state, private IP, public IPs, identity principal, `custom_data_present` and the
decoded `custom_data` — which ARM never returns —, `user_data` (returned by `$expand=userData`),
`admin_password_used`, ssh key count, `booted`, `alive`), `nsgs` (rules and `world_open`:
inbound Allow rules from `*`/`Internet`/`0.0.0.0/0`), `public_ips` (address, attached to,
which VM), `nics`, `disks` (and which are left over, unattached), `role_assignments`,
`principals`, `operations` (counts by status), `billing` (per VM: allocated, billed seconds,
cost; disks and public IPs; deleted ones; total), `events`, `runtime_nodes`, `forwarders`,
`capacity`.
"""

import time

from . import network
from .compute import T_DISK, T_NIC, T_PIP, T_VM


def build_inventory(app):
    w = app.world
    now = time.time()
    with w.lock:
        groups = [{"name": g["name"], "location": g["location"], "tags": dict(g["tags"]),
                   "state": g["state"]} for g in w.groups.values()]
        resources = [{"id": r["id"], "type": r["type"], "name": r["name"],
                      "resource_group": w.groups.get(r["rg"], {}).get("name", r["rg"]),
                      "location": r["location"], "tags": dict(r["tags"]),
                      "provisioningState": r["props"].get("provisioningState") or (
                          "Deleting" if r.get("_deleting") else "Succeeded")}
                     for r in sorted(w.res.values(), key=lambda r: r["id"].lower())]
        pip_by_conf = {}
        pips = []
        for r in w.res.values():
            if r["type"] == T_PIP:
                attached = r.get("_attached")
                nic = w.get(attached.split("/ipConfigurations/")[0], T_NIC) if attached else None
                pips.append({"id": r["id"], "address": r["props"]["ipAddress"],
                             "attached_to": attached, "vm": (nic or {}).get("_vm"),
                             "delete_option": r["props"].get("deleteOption"),
                             "tags": dict(r["tags"])})
                if attached:
                    pip_by_conf[attached.lower()] = r["props"]["ipAddress"]
        nics = []
        for r in w.res.values():
            if r["type"] == T_NIC:
                confs = r["props"]["ipConfigurations"]
                nics.append({"id": r["id"], "vm": r.get("_vm"),
                             "private_ips": [c["properties"]["privateIPAddress"] for c in confs],
                             "public_ips": [pip_by_conf[f"{r['id']}/ipConfigurations/"
                                                        f"{c['name']}".lower()]
                                            for c in confs if f"{r['id']}/ipConfigurations/"
                                            f"{c['name']}".lower() in pip_by_conf],
                             "nsg": (r["props"].get("networkSecurityGroup") or {}).get("id"),
                             "tags": dict(r["tags"])})
        vms = []
        for r in w.res.values():
            if r["type"] != T_VM:
                continue
            osp = r["props"]["osProfile"]
            mine = [n for n in nics if n["vm"] and n["vm"].lower() == r["id"].lower()]
            cd = r.get("_custom_data")
            vms.append({
                "id": r["id"], "name": r["name"], "location": r["location"],
                "size": r["props"]["hardwareProfile"]["vmSize"],
                "priority": r["props"].get("priority", "Regular"),
                "evictionPolicy": r["props"].get("evictionPolicy"),
                "provisioningState": r["props"]["provisioningState"],
                "failure": r.get("_failure"), "power": r.get("_power"),
                "private_ip": r.get("_ip"),
                "public_ips": [ip for n in mine for ip in n["public_ips"]],
                "identity_principal": (r.get("_identity") or {}).get("principalId"),
                "tags": dict(r["tags"]), "zones": r.get("_zones") or [],
                "image": r["props"]["storageProfile"]["imageReference"],
                "os_disk_delete_option": r["props"]["storageProfile"]["osDisk"]["deleteOption"],
                "nic_delete_options": [n.get("properties", {}).get("deleteOption") for n in
                                       r["props"]["networkProfile"]["networkInterfaces"]],
                "custom_data_present": r.get("_has_custom_data", False),
                "custom_data": cd.decode("utf-8", "replace") if cd is not None else None,
                "user_data": r.get("_user_data"),
                "admin_password_used": r.get("_password", False),
                "ssh_keys": len(((osp.get("linuxConfiguration") or {}).get("ssh") or {}).get(
                    "publicKeys") or []),
                "admin_username": osp.get("adminUsername"),
                "boot_diagnostics": bool(((r["props"].get("diagnosticsProfile") or {}).get(
                    "bootDiagnostics") or {}).get("enabled")),
                "booted": r.get("_booted"), "node": r["_vm_id"]})
        nsgs = [{"id": r["id"], "tags": dict(r["tags"]),
                 "rules": [dict(x["properties"], name=x["name"])
                           for x in r["props"].get("securityRules") or []],
                 "world_open": network.world_open(r)}
                for r in w.res.values() if r["type"] == "Microsoft.Network/networkSecurityGroups"]
        disks = [{"id": r["id"], "managed_by": r.get("_managed_by"), "tags": dict(r["tags"]),
                  "sku": r.get("_sku"), "size_gb": r.get("_size_gb")}
                 for r in w.res.values() if r["type"] == T_DISK]
        billing_live = [b for b in (w.billing_of(r, now) for r in w.res.values()) if b]
        ops = {}
        for op in w.ops.values():
            ops[op["status"]] = ops.get(op["status"], 0) + 1
        out = {
            "subscription": w.sub, "resource_groups": groups, "resources": resources,
            "vms": vms, "nics": nics, "public_ips": pips, "nsgs": nsgs, "disks": disks,
            "leftover_disks": [d for d in disks if not d["managed_by"]],
            "role_assignments": [{k: v for k, v in a.items()} for a in w.assignments.values()],
            "principals": {k: dict(v) for k, v in w.principals.items()},
            "operations": ops, "events": list(w.events),
            "billing": {"live": billing_live, "deleted": list(w.deleted),
                        "total_usd": round(sum(b["cost_usd"] for b in
                                               billing_live + w.deleted), 6)},
            "capacity": {k: sorted(v) for k, v in w.capacity.items()},
        }
    for v in vms:
        try:
            v["alive"] = bool(app.rt.alive(v["node"]))
        except Exception as exc:
            v["alive"] = f"error: {exc!r}"
    try:
        out["runtime_nodes"] = [{"id": n, "alive": bool(app.rt.alive(n))} for n in app.rt.nodes()]
    except Exception as exc:
        out["runtime_nodes"] = f"error: {exc!r}"
    out["forwarders"] = app.fwd.snapshot()
    out["imds"] = app.opts.get("imds")
    return out
