"""The VM after its creation: booting its customData through tests/vmboot, guest power-off,
power actions, deletion (with deleteOptions), boot diagnostics (SAS URLs this server serves),
reads and lists, and the VM handlers' registration, plus `/_sim/` hooks for VMs and capacity.
"""

import hashlib
import hmac
import time
import traceback

from simkit import ApiError, NO_BODY, Response

from . import lro
from .compute import T_DISK, T_NIC, T_PIP, T_VM, _bad, create, view


def _boot(app, vm_key, node, data, ip):
    w = app.world
    text = data.decode("utf-8", "replace")
    if not text.lstrip().startswith("#cloud-config"):
        outcome = "not run: customData (decoded) is not #cloud-config text"
        app.errors.record("custom-data-not-run", {
            "vm": vm_key, "starts_with": text[:16],
            "detail": "Azure base64-decodes customData once and hands the bytes to cloud-init; "
                      "they must be #cloud-config text (was it base64-encoded twice?)"})
    else:
        try:
            app.rt.boot(node, text, ip,
                        on_power_off=lambda node, reason: _powered_off(app, vm_key, reason))
            outcome = "booted"
        except app.Refusal as exc:
            outcome = f"refused: {exc}"
        except Exception as exc:
            outcome = f"error: {exc!r}"
            app.errors.record("boot-error", {"vm": vm_key,
                                             "traceback": traceback.format_exc()[-4000:]})
    with w.lock:
        vm = w.get(vm_key, T_VM)
        if vm is not None:
            vm["_booted"] = outcome
        w.event("boot", id=vm_key, outcome=outcome)
    if vm is None and outcome == "booted":
        app.rt.stop(node)


def _powered_off(app, vm_key, reason):
    w = app.world
    with w.lock:
        vm = w.get(vm_key, T_VM)
        if vm is None:
            return None
        vm["_power"] = "stopped"
        w.event("powered-off", id=vm["id"], reason=reason)
        return {"power_state": "PowerState/stopped", "still_billed": True}


def on_vm_removed(app):
    def hook(vm, why):
        w = app.world
        with w.lock:
            if vm.get("_alloc_since") is not None:
                vm["_billed"] += time.time() - vm["_alloc_since"]
                vm["_alloc_since"] = None
            nics = [w.get(n["id"], T_NIC) for n in vm["props"]["networkProfile"][
                "networkInterfaces"]]
            for n in nics:
                if n is not None:
                    n["_vm"] = None
        if vm.get("_booted") == "booted":
            w.spawn(_stop, app, vm["_vm_id"], why)
    return hook


def _stop(app, node, why):
    try:
        app.rt.stop(node, reason=why)
        app.world.event("processes-stopped", node=node, why=why)
    except Exception as exc:
        app.errors.record("stop-failed", {"node": node, "why": why, "error": repr(exc)})


def _vm(app, req, writing=False):
    w = app.world
    g = app.rg_or_404(req, writing=writing)
    vm = w.get(w.rid(g["name"], T_VM, req.p("vmName")), T_VM)
    if vm is None:
        raise app.not_found(T_VM, req.p("vmName"), g["name"])
    return vm


def delete(app, req):
    w = app.world
    g = app.rg_or_404(req, writing=True)
    with w.lock:
        vm = w.get(w.rid(g["name"], T_VM, req.p("vmName")), T_VM)
        if vm is None:
            return Response(204)
        if not vm.get("_deleting"):
            vm["_deleting"] = True
            vm["props"]["provisioningState"] = "Deleting"
            op = lro.start(app, "Microsoft.Compute", vm["location"], "vm-delete", vm["id"])
            vm["_delete_op"] = op
            w.schedule(0.0 if req.q("forceDeletion") else app.opts["vm_delete_delay"],
                       lambda: _gone(app, vm, op))
        op = vm["_delete_op"]
    return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True))


def _gone(app, vm, op):
    w = app.world
    w.remove(vm["id"], "DELETE")
    with w.lock:
        refs = list(vm["props"]["networkProfile"]["networkInterfaces"])
        osd = vm["props"]["storageProfile"]["osDisk"]
    for ref in refs:
        if (ref.get("properties") or {}).get("deleteOption") == "Delete":
            with w.lock:
                nic = w.get(ref["id"], T_NIC)
                pips = [] if nic is None else [
                    ic["properties"]["publicIPAddress"]["id"]
                    for ic in nic["props"]["ipConfigurations"]
                    if ic["properties"].get("publicIPAddress")]
            w.remove(ref["id"], f"deleteOption of VM {vm['name']}")
            for pid in pips:
                with w.lock:
                    pip = w.get(pid, T_PIP)
                    gone = pip is not None and pip["props"].get("deleteOption") == "Delete"
                if gone:
                    w.remove(pid, f"deleteOption of VM {vm['name']}")
    if osd.get("deleteOption") == "Delete":
        w.remove(osd["managedDisk"]["id"], f"deleteOption of VM {vm['name']}")
    else:
        with w.lock:
            disk = w.get(osd["managedDisk"]["id"], T_DISK)
            if disk is not None:
                disk["_managed_by"] = None
    lro.finish(w, op["id"], "Succeeded")


def power(app, req, kind):
    """powerOff / start / deallocate / restart: 202 and an operation."""
    w = app.world
    with w.lock:
        vm = _vm(app, req, writing=True)
        if vm["props"]["provisioningState"] != "Succeeded":
            raise _bad(f"Operation '{kind}' is not allowed on VM '{vm['name']}' since the VM is "
                       f"in provisioning state {vm['props']['provisioningState']}.", None, 409,
                       "OperationNotAllowed")
        op = lro.start(app, "Microsoft.Compute", vm["location"], f"vm-{kind}", vm["id"])
        node, booted = vm["_vm_id"], vm.get("_booted") == "booted"
        now = time.time()
        if kind in ("powerOff", "restart"):
            vm["_power"] = "stopped" if kind == "powerOff" else "running"
        elif kind == "deallocate":
            vm["_power"] = "deallocated"
            if vm["_alloc_since"] is not None:
                vm["_billed"] += now - vm["_alloc_since"]
                vm["_alloc_since"] = None
        elif kind == "start":
            vm["_power"] = "running"
            if vm["_alloc_since"] is None:
                vm["_alloc_since"] = now
        if booted and kind != "start":
            vm["_booted"] = f"stopped by {kind}"
        w.event(f"vm-{kind}", id=vm["id"], note="cloud-init's runcmd runs once per instance: "
                "nothing starts again" if kind in ("start", "restart") else "")
    if booted and kind != "start":
        w.spawn(_stop, app, node, kind)
    w.schedule(app.opts["network_delay"], lambda: lro.finish(w, op["id"], "Succeeded"))
    return Response(202, NO_BODY, headers=lro.headers(app, op, location_too=True))


def _sig(app, vm_id, expiry):
    return hmac.new(app.opts["blob_key"], f"{vm_id}:{expiry}".encode(),
                    hashlib.sha256).hexdigest()[:43]


def boot_diagnostics(app, req):
    with app.world.lock:
        vm = _vm(app, req)
        bd = (vm["props"].get("diagnosticsProfile") or {}).get("bootDiagnostics") or {}
        if not bd.get("enabled"):
            raise _bad(f"Boot diagnostics is not enabled for virtual machine '{vm['name']}'.",
                       None, 409, "OperationNotAllowed")
        vm_id = vm["_vm_id"]
    minutes = req.q("sasUriExpirationTimeInMinutes") or 120
    if not 1 <= int(minutes) <= 1440:
        raise _bad("sasUriExpirationTimeInMinutes must be between 1 and 1440.",
                   "sasUriExpirationTimeInMinutes")
    expiry = int(time.time() + int(minutes) * 60)
    base = f"{app.base_url}/bootdiagnostics-{vm_id[:8]}/{vm_id}"
    q = f"sv=2022-11-02&sr=b&sp=r&se={expiry}&sig={_sig(app, vm_id, expiry)}"
    return Response(200, {"consoleScreenshotBlobUri": f"{base}/screenshot.bmp?{q}",
                          "serialConsoleLogBlobUri": f"{base}/serialconsole.log?{q}"})


def serial_blob(app, req, vm_id, what):
    expiry = req.q("se") or ""
    if not expiry.isdigit() or not hmac.compare_digest(req.q("sig") or "",
                                                       _sig(app, vm_id, int(expiry))):
        return Response(403, NO_BODY, raw=b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error>"
                        b"<Code>AuthenticationFailed</Code></Error>",
                        content_type="application/xml", validate=False)
    if int(expiry) < time.time():
        return Response(403, NO_BODY, raw=b"<Error><Code>AuthenticationFailed</Code><Message>"
                        b"Signed expiry time has passed</Message></Error>",
                        content_type="application/xml", validate=False)
    if what != "serialconsole.log":
        return Response(404, NO_BODY, raw=b"<Error><Code>BlobNotFound</Code></Error>",
                        content_type="application/xml", validate=False)
    try:
        text = app.rt.console(vm_id)
    except Exception:
        text = ""
    return Response(200, NO_BODY, raw=(text or "").encode(), content_type="text/plain",
                    headers={"x-ms-blob-type": "AppendBlob"}, validate=False)


def get(app, req):
    expand = req.q("$expand")
    with app.world.lock:
        return Response(200, view(app, _vm(app, req), expand))


def lst(app, req, rg=True):
    w = app.world
    name = app.rg_or_404(req)["name"].lower() if rg else None
    # ListAll's statusOnly=true: every VM with its run-time status (its instance view).
    expand = "instanceView" if not rg and (req.q("statusOnly") or "").lower() == "true" else None
    with w.lock:
        items = [view(app, r, expand) for r in sorted(w.res.values(), key=lambda r: r["id"].lower())
                 if r["type"] == T_VM and (name is None or r["rg"] == name)]
    return Response(200, {"value": items})


def sim_capacity(app, req):
    import json
    body = json.loads(req.raw_body or b"{}")
    with app.world.lock:
        for k in ("no_capacity", "spot_no_capacity", "overconstrained"):
            if k in body:
                app.world.capacity[k] = set(body[k] or [])
        return {k: sorted(v) for k, v in app.world.capacity.items()}


def sim_power_off(app, req, name):
    """Test hook: the guest powers itself off (as its run script would)."""
    w = app.world
    with w.lock:
        vm = next((r for r in w.res.values() if r["type"] == T_VM and
                   r["name"].lower() == name.lower()), None)
        if vm is None:
            return Response(404, {"error": f"no VM {name}"}, validate=False)
        node, booted = vm["_vm_id"], vm.get("_booted") == "booted"
        if booted:
            vm["_booted"] = "stopped by /_sim power_off"
    if booted:
        app.rt.stop(node, wait=True, reason="/_sim power_off")
    _powered_off(app, vm["id"], "/_sim power_off")
    return {"id": vm["id"], "power": "stopped"}


def register(app):
    h = {"VirtualMachines_CreateOrUpdate": lambda req: create(app, req),
         "VirtualMachines_Get": lambda req: get(app, req),
         "VirtualMachines_Delete": lambda req: delete(app, req),
         "VirtualMachines_List": lambda req: lst(app, req),
         "VirtualMachines_ListAll": lambda req: lst(app, req, rg=False),
         "VirtualMachines_InstanceView": lambda req: Response(
             200, view(app, _vm(app, req), "instanceView")["properties"]["instanceView"]),
         "VirtualMachines_RetrieveBootDiagnosticsData": lambda req: boot_diagnostics(app, req),
         "VirtualMachines_PowerOff": lambda req: power(app, req, "powerOff"),
         "VirtualMachines_Start": lambda req: power(app, req, "start"),
         "VirtualMachines_Deallocate": lambda req: power(app, req, "deallocate"),
         "VirtualMachines_Restart": lambda req: power(app, req, "restart")}
    for op, fn in h.items():
        app.handle_op(op, fn)
    app.route("GET", r"/bootdiagnostics-[0-9a-f]{8}/(?P<vm>[0-9a-f-]{36})/(?P<what>[^/]+)",
              lambda req: serial_blob(app, req, req.ctx["route_params"]["vm"],
                                      req.ctx["route_params"]["what"]),
              "blob: boot diagnostics", public=True)
    app.world.hooks[T_VM.lower()] = on_vm_removed(app)
    app.add_control("POST", r"/_sim/capacity", lambda req: sim_capacity(app, req))
    app.add_control("POST", r"/_sim/vms/(?P<name>[^/]+)/power_off",
                    lambda req, name: sim_power_off(app, req, name))
    app.add_control("GET", r"/_sim/console/(?P<name>[^/]+)", lambda req, name: console(app, name))


def console(app, name):
    with app.world.lock:
        vm = next((r for r in app.world.res.values() if r["type"] == T_VM and
                   r["name"].lower() == name.lower()), None)
        node = vm["_vm_id"] if vm else None
    text = app.rt.console(node) if node else ""
    return Response(200, NO_BODY, raw=(text or "").encode(), content_type="text/plain",
                    validate=False)
