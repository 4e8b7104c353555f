"""The `boot` subcommand: booting instances, power-off, and when a process group is killed.

It polls moto, boots each new clusterctl-managed instance by turning its user-data (read
through userdata, runscript and dockerrun) into a local Dask process bound to the instance's
loopback IP, powers the instance off through the API when the run script would, and kills the
process group when the instance goes down.  The loop, the event logs and the kills themselves
are agent.BaseAgent's.
"""

import ipaddress
import json
import os
import subprocess
import time

from .agent import BaseAgent, process_group_alive, refusal_detail, run_agent, tail
from .aws import all_instances, launch_order, make_client
from .common import LOOPBACK, Refusal
from .dockerrun import (
    DASK_OPTIONS, IMAGE_RE, interpret_docker_run, parse_env_file, translate_dask_args,
)
from .runscript import interpret_run_script
from .userdata import decode_user_data, parse_runcmd, parse_write_files

ACTIVE_STATES = ("pending", "running")
DOWN_STATES = ("shutting-down", "terminated", "stopping", "stopped")
KILL_GRACE_SECONDS = 5.0


class Booted:
    def __init__(self, iid, ip, workdir):
        self.id = iid
        self.ip = ip
        self.dir = workdir
        self.log_path = os.path.join(workdir, "dask.log")
        self.proc = None
        self.pgid = None
        self.returncode = None
        self.exited = False
        self.ttl_deadline = None
        self.power_off_on_exit = False
        self.echo_after = []
        self.powered_off = False
        self.machine_down = False
        self.kill = None  # {"reason", "deadline", "escalated"} while a kill is under way

    def group_alive(self):
        if self.proc is not None and self.proc.poll() is not None and not self.exited:
            self.returncode = self.proc.returncode
        if self.pgid is None:
            return False
        return process_group_alive(self.pgid)


class Agent(BaseAgent):
    name = "ec2_agent"
    subject = "instance"
    stop_grace = KILL_GRACE_SECONDS

    def __init__(self, args):
        self.ec2 = make_client(args, "ec2")
        super().__init__(args)

    # -- main loop --------------------------------------------------------------------------

    def poll(self):
        try:
            instances = list(all_instances(
                self.ec2, [{"Name": "tag:clusterctl-managed", "Values": ["true"]}]
            ))
        except Exception as e:
            self.event(None, "poll-error", {"error": repr(e)})
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
            elif iid in self.booted and state in DOWN_STATES:
                b = self.booted[iid]
                if not b.machine_down:
                    b.machine_down = True
                    b.ttl_deadline = None
                    b.power_off_on_exit = False
                    self.start_kill(b, f"instance is {state}", KILL_GRACE_SECONDS)
        for iid, b in self.booted.items():
            if iid not in present and not b.machine_down:
                b.machine_down = True
                b.ttl_deadline = None
                b.power_off_on_exit = False
                self.start_kill(b, "instance disappeared from DescribeInstances",
                                KILL_GRACE_SECONDS)

    def tick_one(self, b):
        if b.proc is not None and not b.exited and b.proc.poll() is not None:
            self.on_exit(b, b.proc.returncode)
        if (b.ttl_deadline is not None and not b.powered_off
                and time.monotonic() >= b.ttl_deadline):
            b.ttl_deadline = None
            self.power_off(b, "TTL timer of 'shutdown -P +N' fired")

    # -- booting ----------------------------------------------------------------------------

    def boot(self, inst):
        iid = inst["InstanceId"]
        try:
            b = self.prepare_and_spawn(inst)
        except Exception as e:
            self.event(iid, "refused", refusal_detail(e), error=True)
            return
        self.booted[iid] = b
        self.event(iid, "booted", {"private_ip": b.ip, "pid": b.proc.pid,
                                   "boot_json": os.path.join(b.dir, "boot.json")})

    def prepare_and_spawn(self, inst):
        iid = inst["InstanceId"]
        ip = inst.get("PrivateIpAddress")
        try:
            if ipaddress.ip_address(ip or "") not in LOOPBACK:
                raise ValueError
        except ValueError:
            raise Refusal(f"private IP {ip!r} is not in 127.0.0.0/8; the agent binds loopback only")

        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        _, doc = decode_user_data(attr.get("UserData", {}).get("Value"))
        files = parse_write_files(doc)
        files_by_path = {p: (mode, data) for p, mode, data in files}
        written_dirs = {os.path.dirname(p) for p in files_by_path}

        inst_dir = os.path.join(self.workdir, iid)
        if os.path.exists(inst_dir):
            raise Refusal(f"{inst_dir} already exists: this instance was booted before (cloud-init"
                          " runs runcmd once per instance)")
        root = os.path.join(inst_dir, "root")

        def rooted(path):
            return os.path.join(root, path.lstrip("/"))

        os.makedirs(root)
        for path, mode, data in files:
            target = rooted(path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(target, mode)

        script = parse_runcmd(doc, files)
        try:
            script_src = files_by_path[script][1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refusal(f"run script {script} is not UTF-8: {e}")
        plan = interpret_run_script(script_src)
        run = interpret_docker_run(plan.docker_words, files_by_path, written_dirs)

        m = IMAGE_RE.match(run.image)
        if not m:
            raise Refusal(f"image {run.image!r} is not ghcr.io/dask/dask:<version>-py3.12")
        if m.group("version") != self.distributed_version:
            raise Refusal(f"image {run.image} is Dask {m.group('version')}, but {self.python}"
                          f" has distributed {self.distributed_version}")
        if len(run.argv) < 2 or run.argv[0] != "dask" or run.argv[1] not in DASK_OPTIONS:
            raise Refusal(f"container command {run.argv[:2]} is not 'dask scheduler|worker'")
        role = run.argv[1]

        def root_path(value):
            for vol in run.volumes:
                if value == vol or value.startswith(vol + "/"):
                    if ".." in value.split("/"):
                        raise Refusal(f"path {value!r} climbs out of the mounted {vol}")
                    return rooted(value)
            for d in sorted(written_dirs):
                if value == d or value.startswith(d + "/"):
                    raise Refusal(f"path {value!r} is under {d}, which the user-data writes but"
                                  " docker run does not mount, so the container cannot see it")
            return value

        dask_args, notes = translate_dask_args(role, run.argv[2:], ip, root_path)
        argv = [self.python, "-m", "dask", role] + dask_args

        env = dict(self.base_env)
        env_file_pairs = []
        for path in run.env_files:
            for key, value in parse_env_file(path, files_by_path[path][1]):
                env_file_pairs.append((key, value))
                env[key] = root_path(value)

        cwd = os.path.join(inst_dir, "work")
        os.makedirs(cwd)
        b = Booted(iid, ip, inst_dir)
        b.power_off_on_exit = plan.power_off_on_exit
        b.echo_after = plan.echo_after
        record = {
            "instance": iid,
            "private_ip": ip,
            "role": role,
            "python": self.python,
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "log": b.log_path,
            "container": {
                "image": run.image,
                "argv": run.argv,
                "name": run.name,
                "rm": run.rm,
                "network": run.network,
                "gpus": run.gpus,
                "env_files": run.env_files,
                "env_file_pairs": env_file_pairs,
                "volumes": run.volumes,
            },
            "run_script": script,
            "docker_run_line": plan.docker_line,
            "ttl_minutes": plan.ttl_minutes,
            "power_off_on_exit": plan.power_off_on_exit,
            "ignored_lines": plan.ignored,
            "notes": notes,
            "files": [
                {"path": p, "rooted": rooted(p), "mode": f"{mode:04o}", "bytes": len(data)}
                for p, mode, data in files
            ],
        }
        with open(os.path.join(inst_dir, "boot.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)

        with open(b.log_path, "ab") as log:
            for text in plan.echo_before:
                log.write((text + "\n").encode("utf-8"))
            log.flush()
            b.proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        b.pgid = b.proc.pid
        if plan.ttl_minutes is not None:
            b.ttl_deadline = time.monotonic() + 60.0 * plan.ttl_minutes
        return b

    # -- exits and power-off ----------------------------------------------------------------

    def on_exit(self, b, returncode):
        b.exited = True
        b.returncode = returncode
        with open(b.log_path, "ab") as log:
            for text in b.echo_after:
                log.write((text.replace("$?", str(returncode)) + "\n").encode("utf-8"))
        self.event(b.id, "exited", {"returncode": returncode, "log_tail": tail(b.log_path)})
        if b.power_off_on_exit and not b.powered_off and not b.machine_down:
            self.power_off(b, "Dask exited; the run script runs 'shutdown -P now'")
        elif b.group_alive() and b.powered_off:
            self.start_kill(b, "powered off", KILL_GRACE_SECONDS)

    def power_off(self, b, reason):
        b.powered_off = True
        b.ttl_deadline = None
        try:
            described = list(self.ec2.describe_instances(InstanceIds=[b.id])["Reservations"])
            states = [i["State"]["Name"] for r in described for i in r["Instances"]]
            if states and states[0] in DOWN_STATES:
                self.event(b.id, "powered-off", {"reason": reason, "action": "none",
                                                 "detail": f"instance already {states[0]}"})
            else:
                attr = self.ec2.describe_instance_attribute(
                    InstanceId=b.id, Attribute="instanceInitiatedShutdownBehavior")
                behavior = attr.get("InstanceInitiatedShutdownBehavior", {}).get("Value")
                if behavior == "terminate":
                    self.ec2.terminate_instances(InstanceIds=[b.id])
                    action = "TerminateInstances"
                elif behavior == "stop":
                    self.ec2.stop_instances(InstanceIds=[b.id])
                    action = "StopInstances"
                else:
                    raise RuntimeError(f"unknown instanceInitiatedShutdownBehavior {behavior!r}")
                self.event(b.id, "powered-off", {"reason": reason, "shutdown_behavior": behavior,
                                                 "action": action})
        except Exception as e:
            self.event(b.id, "error", {"while": f"powering off ({reason})", "error": repr(e)},
                       error=True)
        if b.group_alive():
            self.start_kill(b, "powered off", KILL_GRACE_SECONDS)


def cmd_boot(args):
    return run_agent(Agent, args)
