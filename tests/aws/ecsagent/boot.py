"""The `boot` subcommand: booting tasks, the task lifecycle, and when a process group is killed.

It polls moto's ECS, boots each new clusterctl-managed RUNNING task by reading its task
definition (taskdef), roles and secrets (roles) and command (entry) into a local Dask process
bound to the task's private IP, ships its output to CloudWatch Logs (cwlogs), stops the task
through the API when Dask exits (the essential container exited), and kills the process group
when the task is stopped.  The loop, the event logs and the kills themselves are
ecsagent.agent.BaseAgent's.
"""

import json
import os
import signal
import subprocess
import time

from ec2agent.aws import make_client, paginate
from vmboot.common import Refusal
from vmboot.dockerrun import DASK_OPTIONS, translate_dask_args
from vmboot.procs import process_group_alive, refusal_detail, tail

from .agent import BaseAgent, run_agent
from .cwlogs import LogPipe, Shipper
from .entry import KILL_AFTER_SECONDS, TTL_GRACE_SECONDS, interpret_command
from .roles import check_roles, fetch_secrets
from .sandbox import NETWORKS, check_sandbox
from .taskdef import interpret_task

ESSENTIAL_EXITED = "Essential container in task exited"
AGENT_STOP_GRACE = 5.0
STOPPING_STATUSES = ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED")


def tag_map(tags):
    return {t.get("key"): t.get("value") for t in tags or []}


def container_exit_code(returncode, timed_out, sigkill):
    """The container's exit status: Dask's, or `timeout`'s when the backstop fired."""
    if timed_out:
        return 137 if sigkill else 124
    return returncode if returncode >= 0 else 128 - returncode


def positionals(role, args):
    spec = DASK_OPTIONS[role]
    out, i = [], 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        if args[i].startswith("-") and args[i] != "-":
            i += 2 if name in spec["value"] and not eq else 1
        else:
            out.append(args[i])
            i += 1
    return out


class Booted:
    def __init__(self, spec, task_dir):
        self.id = spec.task_id
        self.arn = spec.task_arn
        self.cluster = spec.cluster_arn
        self.ip = spec.private_ip
        self.dir = task_dir
        self.log_path = os.path.join(task_dir, "dask.log")
        self.stop_timeout = spec.stop_timeout
        self.proc = None
        self.pgid = None
        self.pipe = None
        self.shipper = None
        self.ship_failures = 0
        self.returncode = None
        self.exited = False
        self.ttl_term_at = None
        self.ttl_kill_at = None
        self.timed_out = False
        self.timeout_sigkill = False
        self.task_stopped = False   # ECS says the task is (being) stopped
        self.kill = None            # {"reason", "deadline", "escalated"} while killing

    def group_alive(self):
        return self.pgid is not None and process_group_alive(self.pgid)


class Agent(BaseAgent):
    name = "ecs_agent"
    subject = "task"
    stop_grace = AGENT_STOP_GRACE

    def __init__(self, args):
        self.region = args.region
        self.ecs = make_client(args, "ecs")
        self.iam = make_client(args, "iam")
        self.ssm = make_client(args, "ssm")
        self.logs = make_client(args, "logs")
        super().__init__(args)

    def preflight(self):
        self.sandbox = check_sandbox()

    # -- main loop --------------------------------------------------------------------------

    def ready_record(self):
        return {**super().ready_record(), "sandbox": self.sandbox}

    def after_poll(self):
        self.ship_logs()

    def list_running(self):
        """Every task with desiredStatus RUNNING, described with its tags, by ARN."""
        where = {}
        for cluster in paginate(self.ecs, "list_clusters", "clusterArns"):
            name = cluster.rsplit("/", 1)[-1]
            for arn in paginate(self.ecs, "list_tasks", "taskArns", cluster=cluster,
                                desiredStatus="RUNNING"):
                # moto's ListTasks matches the cluster name as a substring; keep the
                # cluster the ARN names (long ARN format) when there is a choice.
                parts = arn.split(":task/", 1)[-1].split("/")
                if arn not in where or (len(parts) == 2 and parts[0] == name):
                    where[arn] = cluster
        by_cluster = {}
        for arn, cluster in where.items():
            by_cluster.setdefault(cluster, []).append(arn)
        tasks = {}
        for cluster, arns in by_cluster.items():
            for i in range(0, len(arns), 100):
                resp = self.ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100],
                                               include=["TAGS"])
                for t in resp.get("tasks", []):
                    if t["taskArn"] in where:
                        tasks[t["taskArn"]] = t
        return tasks

    def describe_one(self, b):
        """The task as ECS reports it now, or None if it is gone."""
        try:
            resp = self.ecs.describe_tasks(cluster=b.cluster, tasks=[b.arn], include=["TAGS"])
        except self.ecs.exceptions.ClusterNotFoundException:
            return None
        return next((t for t in resp.get("tasks", []) if t["taskArn"] == b.arn), None)

    def poll(self):
        try:
            tasks = self.list_running()
        except Exception as e:
            self.event(None, "poll-error", {"error": repr(e)})
            return
        new = [t for arn, t in tasks.items()
               if arn not in self.seen and t.get("lastStatus") == "RUNNING"
               and tag_map(t.get("tags")).get("clusterctl-managed") == "true"]
        # Schedulers first, so workers find them sooner; then in ARN order.
        new.sort(key=lambda t: (tag_map(t.get("tags")).get("clusterctl-role") != "scheduler",
                                t["taskArn"]))
        for t in new:
            self.seen.add(t["taskArn"])
            self.boot(t)
        for b in list(self.booted.values()):
            if b.task_stopped:
                continue
            t = tasks.get(b.arn)
            if t is not None and t.get("lastStatus") not in STOPPING_STATUSES:
                continue
            try:
                t = t or self.describe_one(b)
            except Exception as e:
                self.event(b.id, "poll-error", {"error": repr(e)})
                continue
            if t is None:
                why = "the task is gone from DescribeTasks"
            elif (t.get("lastStatus") in STOPPING_STATUSES
                  or t.get("desiredStatus") == "STOPPED"):
                why = (f"the task is {t.get('lastStatus')} (desired {t.get('desiredStatus')},"
                       f" reason {t.get('stoppedReason')!r})")
            else:
                continue
            b.task_stopped = True
            b.ttl_term_at = b.ttl_kill_at = None
            if b.group_alive():
                self.start_kill(b, why, b.stop_timeout)
            else:
                self.event(b.id, "task-stopped", {"reason": why})

    def tick_one(self, b):
        now = time.monotonic()
        if b.proc is not None and not b.exited and b.proc.poll() is not None:
            self.on_exit(b)
            return
        if b.exited:
            return
        if b.ttl_term_at is not None and now >= b.ttl_term_at:
            b.ttl_term_at = None
            b.timed_out = True
            b.ttl_kill_at = now + KILL_AFTER_SECONDS
            self.signal_group(b, signal.SIGTERM)
            self.event(b.id, "timeout", {"detail": "CLUSTERCTL_EXPIRES + 60 s passed:"
                                         " `timeout` sends SIGTERM",
                                         "sigkill_in": KILL_AFTER_SECONDS})
        if b.ttl_kill_at is not None and now >= b.ttl_kill_at:
            b.ttl_kill_at = None
            b.timeout_sigkill = True
            self.signal_group(b, signal.SIGKILL)

    def shutdown(self):
        super().shutdown()
        for b in self.booted.values():
            if b.pipe is not None:
                b.pipe.join(1.0)
        self.ship_logs()

    # -- booting ----------------------------------------------------------------------------

    def boot(self, task):
        tid = task["taskArn"].rsplit("/", 1)[-1]
        try:
            b = self.prepare_and_spawn(task)
        except Exception as e:
            detail = refusal_detail(e)
            self.event(tid, "refused", detail, error=True)
            # On ECS a task that cannot start is stopped; do the same so it does not linger.
            self.stop_task(tid, task.get("clusterArn"), task["taskArn"],
                           f"clusterctl ecs_agent refused the task: {detail['reason']}"[:255])
            return
        self.booted[b.arn] = b
        if b.proc is None:
            return
        self.event(b.id, "booted", {"private_ip": b.ip, "pid": b.proc.pid,
                                    "boot_json": os.path.join(b.dir, "boot.json"),
                                    "log_stream": b.shipper and
                                    f"{b.shipper.group}:{b.shipper.stream}"})

    def prepare_and_spawn(self, task):
        tdef = self.ecs.describe_task_definition(
            taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        spec = interpret_task(task, tdef, self.region, self.distributed_version)
        notes = list(spec.notes)
        roles = check_roles(self.iam, spec, notes)
        secret_values, secret_info = ({}, {})
        if spec.secrets:
            secret_values, secret_info = fetch_secrets(self.ssm, spec)
        variables = dict(spec.environment)
        variables.update(secret_values)
        plan = interpret_command(spec.command, variables)
        role = plan.argv[1]
        tags = tag_map(task.get("tags"))
        if tags.get("clusterctl-role") not in (None, role):
            raise Refusal(f"task tag clusterctl-role={tags['clusterctl-role']} but the command"
                          f" runs dask {role}")
        for other in self.booted.values():
            if other.ip == spec.private_ip and other.group_alive():
                raise Refusal(f"moto gave this task the IP {spec.private_ip} of the running task"
                              f" {other.id}")

        task_dir = os.path.join(self.workdir, spec.task_id)
        if os.path.exists(task_dir):
            raise Refusal(f"{task_dir} already exists: this task was booted before")
        root = os.path.join(task_dir, "root")

        def rooted(path):
            return os.path.join(root, path.lstrip("/"))

        written = {f.path for f in plan.files}

        def root_path(value):
            if value == plan.root or value.startswith(plan.root + "/"):
                if value != plan.root and value not in written:
                    raise Refusal(f"path {value!r} is under the files root {plan.root} but the"
                                  " entry script does not write it")
                return rooted(value)
            if value.startswith("/"):
                raise Refusal(f"path {value!r} is outside the files root {plan.root}: it names"
                              " the image's filesystem, which the agent cannot provide")
            return value

        dask_args, dask_notes = translate_dask_args(role, plan.argv[2:], spec.private_ip,
                                                    root_path, NETWORKS)
        notes += dask_notes
        if role == "worker":
            address = positionals(role, plan.argv[2:])[0]
            if not address.startswith(("tcp://", "tls://")):
                raise Refusal(f"worker scheduler address {address!r} has no tcp:// or tls://")
        argv = [self.python, "-m", "dask", role] + dask_args

        # The process environment: the image's few basics, then what ECS sets, minus what
        # the entry script unsets.  Values that name files under the root follow the files.
        env = dict(self.base_env)
        sources = {k: "agent" for k in env}
        for name, value in spec.environment.items():
            env[name] = value
            sources[name] = "override" if name in spec.override_env else "environment"
        for name, value in secret_values.items():
            env[name] = value
            sources[name] = "secret"
        for name in plan.unset:
            env.pop(name, None)
            sources.pop(name, None)
        rewritten = []
        for name in list(env):
            if sources[name] in ("environment", "override") and (env[name] == plan.root
                                                   or env[name].startswith(plan.root + "/")):
                env[name] = root_path(env[name])
                rewritten.append(name)

        # The ECS agent's own steps before the container starts: the log stream.
        shipper = None
        if spec.log:
            group = spec.log["group"]
            groups = paginate(self.logs, "describe_log_groups", "logGroups",
                              logGroupNamePrefix=group)
            if not any(g["logGroupName"] == group for g in groups):
                if not spec.log["create_group"]:
                    raise Refusal(f"awslogs-group {group} does not exist (ECS: 'failed to"
                                  " create Cloudwatch log stream: ResourceNotFoundException')")
                self.logs.create_log_group(logGroupName=group)
                notes.append(f"awslogs-create-group: created {group}")
            shipper = Shipper(self.logs, group, spec.log["stream"])
            shipper.create_stream()

        os.makedirs(root)
        os.makedirs(rooted(plan.root), mode=0o700, exist_ok=True)
        os.chmod(rooted(plan.root), 0o700)  # `umask 077; mkdir -p ROOT`
        files = []
        for f in plan.files:
            data = variables[f.var].encode("utf-8")
            target = rooted(f.path)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(target, f.mode)
            files.append({"path": f.path, "rooted": target, "mode": f"{f.mode:04o}",
                          "bytes": len(data), "variable": f.var,
                          "from": "secret" if f.var in secret_values else "environment"})

        left = plan.expires - int(time.time())
        cwd = os.path.join(task_dir, "work")
        os.makedirs(cwd)
        b = Booted(spec, task_dir)
        record = {
            "task": spec.task_arn,
            "cluster": spec.cluster_arn,
            "task_definition": task["taskDefinitionArn"],
            "private_ip": spec.private_ip,
            "role": role,
            "python": self.python,
            "argv": argv,
            "env_names": sorted(env),
            "env_sources": dict(sorted(sources.items())),
            "env_rewritten_to_rooted": rewritten,
            "unset": plan.unset,
            "secrets": [{"name": s.env_name, "valueFrom": s.value_from,
                         "parameter": s.parameter_name,
                         **secret_info.get(s.parameter_name, {})} for s in spec.secrets],
            "roles": roles,
            "cwd": cwd,
            "log": b.log_path,
            "awslogs": spec.log,
            "container": {"image": spec.container.get("image"), "argv": plan.argv,
                          "files_root": plan.root},
            "task_size": {"cpu": spec.cpu, "memory": spec.memory},
            "expires": plan.expires,
            "seconds_left": left,
            "backstop": (None if left <= 0 else
                         {"sigterm_after": left + TTL_GRACE_SECONDS,
                          "sigkill_after": left + TTL_GRACE_SECONDS + KILL_AFTER_SECONDS}),
            "stop_timeout": spec.stop_timeout,
            "ran": left > 0,
            "notes": notes,
            "files": files,
        }
        with open(os.path.join(task_dir, "boot.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)

        if left <= 0:
            # `[ "$left" -gt 0 ] || exit 0`: the container exits 0 without starting Dask.
            b.exited = True
            b.returncode = 0
            self.event(b.id, "expired", {"seconds_left": left, "container_exit_code": 0})
            self.after_container_exit(b)
            return b

        read_fd, write_fd = os.pipe()
        try:
            b.proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=write_fd,
                stderr=write_fd, start_new_session=True, close_fds=True, umask=0o077,
            )
        except Exception:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        b.pgid = b.proc.pid
        b.pipe = LogPipe(read_fd, b.log_path)
        b.shipper = shipper
        b.ttl_term_at = time.monotonic() + left + TTL_GRACE_SECONDS
        return b

    # -- exits, stops and kills -------------------------------------------------------------

    def on_exit(self, b):
        b.exited = True
        b.returncode = b.proc.returncode
        b.ttl_term_at = b.ttl_kill_at = None
        # The container's init is gone: the kernel kills whatever is left in it.
        self.signal_group(b, signal.SIGKILL)
        code = container_exit_code(b.returncode, b.timed_out, b.timeout_sigkill)
        if b.pipe is not None:
            b.pipe.join(2.0)
        self.ship_one(b)
        self.event(b.id, "exited", {"returncode": b.returncode, "container_exit_code": code,
                                    "timed_out": b.timed_out, "log_tail": tail(b.log_path)})
        self.after_container_exit(b)

    def after_container_exit(self, b):
        if b.task_stopped:
            return
        b.task_stopped = True
        self.stop_task(b.id, b.cluster, b.arn, ESSENTIAL_EXITED)

    def stop_task(self, tid, cluster, arn, reason):
        """StopTask, but only on a task moto still has (StopTask on an unknown one is a 500)."""
        try:
            resp = self.ecs.describe_tasks(cluster=cluster, tasks=[arn])
            t = next((t for t in resp.get("tasks", []) if t["taskArn"] == arn), None)
            if t is None:
                self.event(tid, "stopped", {"action": "none", "detail": "task is gone"})
            elif t.get("lastStatus") == "STOPPED":
                self.event(tid, "stopped", {"action": "none", "detail": "already STOPPED",
                                            "stopped_reason": t.get("stoppedReason")})
            else:
                self.ecs.stop_task(cluster=cluster, task=arn, reason=reason)
                self.event(tid, "stopped", {"action": "StopTask", "reason": reason})
        except Exception as e:
            self.event(tid, "error", {"while": f"StopTask ({reason})", "error": repr(e)},
                       error=True)

    def leader_exited_during_kill(self, b):
        super().leader_exited_during_kill(b)
        # The container's init exited: the rest of its processes go with it.
        self.signal_group(b, signal.SIGKILL)

    def killed_detail(self, b):
        # The group is gone, so its output is complete: ship it before reporting the kill.
        if b.pipe is not None:
            b.pipe.join(2.0)
        self.ship_one(b)
        return {**super().killed_detail(b), "grace": b.kill["grace"]}

    # -- logs -------------------------------------------------------------------------------

    def ship_logs(self):
        for b in self.booted.values():
            self.ship_one(b)

    def ship_one(self, b):
        if b.pipe is None:
            return
        events = b.pipe.take()
        if b.shipper is None or not events:
            return
        try:
            b.shipper.ship(events)
        except Exception as e:
            unsent = getattr(e, "unsent", events)
            b.ship_failures += 1
            gone = "ResourceNotFoundException" in repr(e)
            if not gone and b.ship_failures < 5:
                b.pipe.put_back(unsent)
            self.event(b.id, "log-error", {"error": repr(e), "unsent": len(unsent),
                                           "dropped": gone or b.ship_failures >= 5})


def cmd_boot(args):
    return run_agent(Agent, args)
