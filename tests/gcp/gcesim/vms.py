"""The VM side of instances: boot through tests/vmboot, external addresses, the
`maxRunDuration` timer, stops and deletions.

Owns `Vms`: `started(inst)` makes an instance RUNNING, boots its metadata `user-data`
(cloud-init) with vmboot on the instance's internal IP (`user-data-encoding: base64` is decoded
first, as GCE's cloud-init datasource does), opens the external address's forwarders
(`--public-ports`, each connection judged by the VPC firewall rules, firewalls.py) and arms
`maxRunDuration` (scaled by `--run-duration-scale`): at expiry the instance is deleted
(`instanceTerminationAction: DELETE`) or stopped (STOP → TERMINATED), its processes stopped,
with no client involved. `delete(...)` is the API's and the timer's deletion (STOPPING, then
gone at the end of a zonal operation). A guest power-off (vmboot's `on_power_off`) makes the
instance TERMINATED. `by_ip(ip)` is how the metadata server knows who calls. Node processes get
`SSL_CERT_FILE`/`REQUESTS_CA_BUNDLE` = the simulator's CA: on Google the node trusts Google's
public CAs; here the simulator's CA stands in for them.
"""

import base64
import time
import traceback

from simkit import TcpForwarder

from . import catalog, firewalls
from .instances import set_status
from .network import Addresses
from .world import rfc3339


def subnet_of(inst):
    return inst["api"]["networkInterfaces"][0]["subnetwork"].rsplit("/", 1)[-1]


class Vms:
    def __init__(self, world, rt, refusal, sandbox, ca_file, opts):
        self.world, self.rt, self.Refusal, self.sandbox = world, rt, refusal, sandbox
        self.opts = opts
        self.addresses = Addresses(opts.get("networks") or ())
        self.metadata = None        # the MetadataServer (per-instance listeners)
        self.fwd = TcpForwarder(drop_hold=opts["drop_hold"])
        for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            rt.base_env[k] = ca_file

    # ----- lookups -----
    def by_ip(self, ip):
        with self.world.lock:
            for i in self.world.instances.values():
                if i["internal_ip"] == ip and i["status"] != "TERMINATED":
                    return i
        return None

    def console(self, key):
        with self.world.lock:
            inst = self.world.instances.get(tuple(key))
        if inst is None:
            return ""
        try:
            return self.rt.console(inst["node"])
        except Exception:
            return ""

    # ----- life -----
    def forget(self, inst):
        """An instance whose creation failed: gone from the API, addresses released."""
        key = (inst["project"], inst["zone"], inst["name"])
        with self.world.lock:
            if self.world.instances.get(key) is inst:
                del self.world.instances[key]
        self.addresses.release(inst["project"], catalog.ZONES[inst["zone"]], inst["internal_ip"],
                               subnet_of(inst))

    def started(self, inst):
        now = time.time()
        with self.world.lock:
            key = (inst["project"], inst["zone"], inst["name"])
            if self.world.instances.get(key) is not inst or inst.get("deleting"):
                return
            set_status(inst, "RUNNING")
            inst["running_at"] = now
            inst["api"]["lastStartTimestamp"] = rfc3339(now)
            if inst["max_run"]:
                scaled = inst["max_run"] * self.opts["run_duration_scale"]
                inst["expires_at"] = now + scaled
                self.world.schedule(scaled, lambda: self._expire(inst))
            user_data = inst["metadata"].get("user-data")
            encoding = inst["metadata"].get("user-data-encoding")
        self.world.event("running", name=inst["name"], zone=inst["zone"],
                         internal_ip=inst["internal_ip"], external_ip=inst["external_ip"])
        if inst["external_ip"]:
            self._open_forwarders(inst)
        if not user_data:
            inst["booted"] = "no user-data"
            return
        if encoding == "base64":
            try:
                user_data = base64.b64decode(user_data).decode()
            except ValueError:
                inst["booted"] = "refused: user-data-encoding base64 but not base64"
                return
        self.world.spawn(self._boot, inst, user_data)

    def _boot(self, inst, user_data):
        try:
            env = {}
            if self.metadata is not None:
                env["GCE_METADATA_HOST"] = self.metadata.open_for(inst)
            self.rt.boot(inst["node"], user_data, inst["internal_ip"],
                         on_power_off=self._powered_off, metadata_env=env)
            outcome = "booted"
        except self.Refusal as exc:
            outcome = f"refused: {exc}"
        except Exception as exc:
            outcome = f"error: {exc!r}"
            self.world.errors.record("boot-error", {"instance": inst["name"],
                                                    "traceback": traceback.format_exc()[-4000:]})
        inst["booted"] = outcome
        self.world.event("boot", name=inst["name"], outcome=outcome)
        # A delete that came while the guest booted found no processes to stop yet (the
        # runtime ignores a node it has not started): stop what the boot started now. The
        # instance may still be listed (STOPPING) until its delete operation finishes.
        with self.world.lock:
            gone = self.world.instances.get((inst["project"], inst["zone"],
                                             inst["name"])) is not inst or inst.get("deleting")
        if gone and outcome == "booted":
            self._stop_node(inst, "deleted while booting")

    def _open_forwarders(self, inst):
        for port in self.opts["public_ports"]:
            try:
                self.fwd.open(("vm", inst["id"], port), (inst["external_ip"], port),
                              (inst["internal_ip"], port),
                              lambda src, sport, inst=inst, port=port:
                              firewalls.ingress_verdict(self.world, inst, "tcp", port, src))
            except OSError as exc:
                self.world.errors.record("forward-bind-failed", {
                    "instance": inst["name"], "listen": f"{inst['external_ip']}:{port}",
                    "error": str(exc), "hint": "external addresses need the sandbox namespace "
                                               "(10.0.0.0/8 on lo)"})

    def _stop_node(self, inst, why):
        if self.metadata is not None:
            self.metadata.close_for(inst)
        try:
            self.rt.stop(inst["node"], reason=why)
            self.world.event("processes-stopped", name=inst["name"], why=why)
        except Exception as exc:
            self.world.errors.record("stop-failed", {"instance": inst["name"], "why": why,
                                                     "error": repr(exc)})

    def _powered_off(self, node_id, reason):
        with self.world.lock:
            for i in self.world.instances.values():
                if i["node"] == node_id:
                    set_status(i, "TERMINATED")
                    i["booted"] = f"powered off ({reason})"
                    self.world.event("guest-power-off", name=i["name"], reason=reason)
                    self.fwd.close_matching(lambda k, iid=i["id"]: k[:2] == ("vm", iid))
                    return {"instance_status": "TERMINATED"}
        return None

    def _expire(self, inst):
        with self.world.lock:
            key = (inst["project"], inst["zone"], inst["name"])
            if self.world.instances.get(key) is not inst or inst["status"] != "RUNNING":
                return
            action = inst["api"]["scheduling"].get("instanceTerminationAction", "STOP")
        self.world.event("max-run-duration", name=inst["name"], action=action)
        if action == "DELETE":
            self.delete(inst, "system", None, "maxRunDuration")
        else:
            with self.world.lock:
                set_status(inst, "TERMINATED")
            self.fwd.close_matching(lambda k: k[:2] == ("vm", inst["id"]))
            self.world.spawn(self._stop_node, inst, "maxRunDuration STOP")

    def delete(self, inst, user, rid, why):
        ops, w = self.world.operations, self.world
        with w.lock:
            op = ops.create(inst["project"], ("zone", inst["zone"]), "delete",
                            inst["api"]["selfLink"], inst["id"], user, rid)
            inst["deleting"] = True
            if inst["status"] != "STOPPING":
                set_status(inst, "STOPPING")
        w.event("delete", name=inst["name"], zone=inst["zone"], why=why, operation=op["name"])
        self.fwd.close_matching(lambda k: k[:2] == ("vm", inst["id"]))
        w.spawn(self._stop_node, inst, why)

        def gone():
            key = (inst["project"], inst["zone"], inst["name"])
            with w.lock:
                if w.instances.get(key) is inst:
                    del w.instances[key]
                    w.deleted.append({"name": inst["name"], "zone": inst["zone"],
                                      "project": inst["project"], "id": inst["id"],
                                      "why": why, "deleted_at": rfc3339(),
                                      "lived_seconds": round(time.time() - inst["created"], 1),
                                      "ran_seconds": round(time.time() - inst["running_at"], 1)
                                      if inst["running_at"] else 0})
            self.addresses.release(inst["project"], catalog.ZONES[inst["zone"]],
                                   inst["internal_ip"], subnet_of(inst))
            ops.finish(op)
        w.schedule(self.opts["delete_delay"], gone)
        return op

    # ----- inventory / shutdown -----
    def snapshot(self, instances):
        for s in instances:
            try:
                s["alive"] = bool(self.rt.alive(s["node"]))
            except Exception as exc:
                s["alive"] = f"error: {exc!r}"
        try:
            nodes = [{"id": n, "alive": bool(self.rt.alive(n))} for n in self.rt.nodes()]
        except Exception as exc:
            nodes = f"error: {exc!r}"
        return {"runtime_nodes": nodes, "forwarders": self.fwd.snapshot(),
                "sandbox": self.sandbox}

    def shutdown(self):
        self.fwd.close_all()
        try:
            self.rt.shutdown()
        except Exception:
            self.world.errors.record("exception", {"where": "runtime shutdown",
                                                   "traceback": traceback.format_exc()[-4000:]})
