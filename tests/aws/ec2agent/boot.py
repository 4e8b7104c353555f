"""The `boot` subcommand: moto's EC2 instances, booted and powered off by vmboot.VmRuntime.

This is the EC2 adapter of the shared VM runtime (tests/vmboot).  It polls moto; each new
clusterctl-managed instance that is pending or running is handed to `VmRuntime.boot` with its
userData attribute and private IP; an instance seen shutting-down, terminated, stopping,
stopped or gone is handed to `VmRuntime.stop`.  When the runtime reports a guest-initiated
power-off (the run script's `shutdown -P`), the instance's instanceInitiatedShutdownBehavior
decides what EC2 does: TerminateInstances or StopInstances.

With `--console-dir`, each booted instance's console file is linked there as `<instance-id>`,
where tests/aws/moto_server.py serves it as GetConsoleOutput.
"""

import json
import os
import signal
import threading

from vmboot import EventLog, Refusal, VmRuntime
from vmboot.common import LOOPBACK
from vmboot.procs import refusal_detail

from .aws import all_instances, launch_order, make_client
from .imds import InstanceMetadata

ACTIVE_STATES = ("pending", "running")
DOWN_STATES = ("shutting-down", "terminated", "stopping", "stopped")


class Ec2Adapter:
    def __init__(self, args):
        self.ec2 = make_client(args, "ec2")
        self.iam = make_client(args, "iam")
        self.imds = {}
        self.poll_interval = args.poll
        self.log = EventLog(args.workdir, subject="instance", name="ec2_agent")
        try:
            self.rt = VmRuntime(python=args.python, workdir=args.workdir, events=self.log,
                                networks=(LOOPBACK,))
        except RuntimeError as e:
            raise SystemExit(f"ec2_agent: {e}")
        self.console_dir = os.path.abspath(args.console_dir) if args.console_dir else None
        if self.console_dir:
            os.makedirs(self.console_dir, exist_ok=True)
        self.seen = set()
        self.down = set()
        self.stop = threading.Event()

    def run(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        print(json.dumps({"ready": True, "distributed_version": self.rt.distributed_version,
                          "python": self.rt.python, "workdir": self.rt.workdir}), flush=True)
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(self.poll_interval)
        self.rt.shutdown()
        for m in self.imds.values():
            m.close()

    def poll(self):
        try:
            instances = list(all_instances(
                self.ec2, [{"Name": "tag:clusterctl-managed", "Values": ["true"]}]
            ))
        except Exception as e:
            self.log.record(None, "poll-error", {"error": repr(e)})
            return
        instances.sort(key=launch_order)
        present = set()
        for inst in instances:
            iid = inst["InstanceId"]
            state = inst.get("State", {}).get("Name")
            present.add(iid)
            if iid not in self.seen and state in ACTIVE_STATES:
                self.seen.add(iid)
                self.boot(inst)
            elif iid in self.seen and state in DOWN_STATES and iid not in self.down:
                self.down.add(iid)
                self.rt.stop(iid, reason=f"instance is {state}")
        for iid in self.seen - present - self.down:
            self.down.add(iid)
            self.rt.stop(iid, reason="instance disappeared from DescribeInstances")

    def boot(self, inst):
        iid = inst["InstanceId"]
        try:
            attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        except Exception as e:
            self.log("refused", node=iid, **refusal_detail(e))
            return
        user_data = attr.get("UserData", {}).get("Value")
        ip = inst.get("PrivateIpAddress")
        try:
            self.imds[iid] = InstanceMetadata(ip, iid, lambda: self.role_of(iid))
        except OSError as e:
            self.log("refused", node=iid, reason=f"cannot serve its metadata on {ip}: {e}")
            return
        try:
            self.rt.boot(iid, user_data, ip, self.power_off, metadata_env={
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds[iid].url})
        except Refusal:
            return  # recorded by the runtime
        if self.console_dir:
            link = os.path.join(self.console_dir, iid)
            try:
                os.symlink(self.rt.console_path(iid), link)
            except OSError as e:
                self.log("error", node=iid, **{"while": f"linking the console to {link}",
                                               "error": repr(e)})

    def role_of(self, iid):
        """The role in the instance profile the instance runs with, as moto holds it; None
        without a profile (then IMDS has no credentials, as on EC2)."""
        described = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        profiles = [i.get("IamInstanceProfile", {}).get("Arn")
                    for r in described for i in r["Instances"]]
        if not profiles or not profiles[0]:
            return None
        name = profiles[0].rsplit("/", 1)[-1]
        roles = self.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
        return roles[0]["RoleName"] if roles else None

    def power_off(self, iid, reason):
        """The guest powered itself off: what EC2 does then, as the event's extra detail."""
        described = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        states = [i["State"]["Name"] for r in described for i in r["Instances"]]
        if states and states[0] in DOWN_STATES:
            return {"action": "none", "detail": f"instance already {states[0]}"}
        attr = self.ec2.describe_instance_attribute(
            InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
        behavior = attr.get("InstanceInitiatedShutdownBehavior", {}).get("Value")
        if behavior == "terminate":
            self.ec2.terminate_instances(InstanceIds=[iid])
            action = "TerminateInstances"
        elif behavior == "stop":
            self.ec2.stop_instances(InstanceIds=[iid])
            action = "StopInstances"
        else:
            raise RuntimeError(f"unknown instanceInitiatedShutdownBehavior {behavior!r}")
        return {"shutdown_behavior": behavior, "action": action}


def cmd_boot(args):
    if args.poll <= 0:
        raise SystemExit("--poll must be positive")
    Ec2Adapter(args).run()
    return 0

