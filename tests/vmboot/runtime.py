"""VmRuntime: boots VM nodes from their cloud-init user-data as local Dask processes, watches
them, powers them off as their run script would, and stops them when the platform says so.

One runtime serves one simulated cloud (the EC2 boot agent over moto, the DigitalOcean
simulator, ...).  The platform adapter calls `boot` when a VM starts and `stop` when the
platform deletes or stops it, and decides in `on_power_off` what a guest-initiated power-off
means on its platform.  A monitor thread (one per runtime) notices Dask exiting and the TTL
timer firing, calls `on_power_off`, and kills process groups (SIGTERM, then SIGKILL after the
grace).  Events go to the `events` callable, or to DIR/agent-events.jsonl and
DIR/agent-errors.jsonl (`events.EventLog`).

Output, as the rendered runcmd sends it on the VM (`run.sh 2>&1 | tee -a LOG >/dev/console`):
the run script's `echo` lines and Dask's stdout/stderr go through a real `tee` into
DIR/<node>/dask.log (the log file) and DIR/<node>/console.log (the serial console).
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from .bootplan import prepare
from .common import LOOPBACK, SANDBOX_10, Refusal, check_networks, in_networks
from .events import EventLog
from .procs import (
    base_env, probe_python, process_group_alive, refusal_detail, signal_group, tail,
)
from .sandbox import HOW_TO, sandbox_problems

KILL_GRACE_SECONDS = 5.0
# Runs a node's key fetch, then execs its Dask (see _spawn).
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")
# After Dask exits, how long to wait for `tee` to pass on its last output before the run
# script's final echo is written and the node powers off.
DRAIN_SECONDS = 2.0
TICK_SECONDS = 0.05
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
POWER_OFF_WHY = {
    "ttl": "the TTL timer of 'shutdown -P +N' fired",
    "exited": "Dask exited; the run script runs 'shutdown -P now'",
}


def shell_status(returncode):
    """`$?` in the run script after `docker run`: the exit code, or 128+N for signal N."""
    return returncode if returncode >= 0 else 128 - returncode


class _Node:
    def __init__(self, plan, on_power_off):
        self.id = plan.node_id
        self.ip = plan.ip
        self.dir = plan.dir
        self.log_path = plan.log_path
        self.console_path = plan.console_path
        self.boot_json = plan.boot_json
        self.on_power_off = on_power_off
        self.echo_after = plan.echo_after
        self.power_off_on_exit = plan.power_off_on_exit
        self.ttl_deadline = None
        self.proc = None       # Dask, leader of its own process group
        self.pgid = None
        self.tee = None        # `tee -a dask.log >console.log`, in its own session
        self.returncode = None
        self.exited = False
        self.drain_deadline = None
        self.powered_off = False
        self.stopped = False   # the platform stopped or deleted the VM
        self.kill = None       # {"reason", "deadline", "escalated"} while a kill is under way

    def group_alive(self):
        if self.proc is not None:
            self.proc.poll()  # reap the leader, so a zombie does not count as alive
        if self.pgid is None:
            return False
        return process_group_alive(self.pgid)


class VmRuntime:
    """See tests/vmboot/README.md for the contract.

    `python`: an interpreter with distributed (the version every image tag must name).
    `workdir`: where DIR/<node>/... and the event logs go.
    `events(kind, node=ID, **detail)`: called for each event; None writes the event logs.
    Additions to the contract (keyword-only): `networks` (default None: loopback, plus
    10.0.0.0/8 when this is the sandbox namespace; given explicitly, 10.0.0.0/8 must be in the
    sandbox or the constructor raises), `subject` and `name`
    (the node key and stderr prefix of the default event log), `kill_grace` (seconds between
    SIGTERM and SIGKILL, default 5), `ttl_minute` (seconds per minute of the run script's
    `shutdown -P +N` timer, default 60; self-checks shorten it)."""

    def __init__(self, python, workdir, events=None, *, networks=None,
                 subject="instance", name="vmboot", kill_grace=KILL_GRACE_SECONDS,
                 ttl_minute=60.0):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        if networks is None:
            # 10.0.0.0/8 is local only inside the sandbox namespace: use it only there.
            self.sandbox_problems = sandbox_problems()
            self.networks = (LOOPBACK,) if self.sandbox_problems else (LOOPBACK, SANDBOX_10)
        else:
            self.networks = check_networks(networks)
            self.sandbox_problems = sandbox_problems() if SANDBOX_10 in self.networks else None
            if self.sandbox_problems:
                raise RuntimeError(
                    "10.0.0.0/8 node addresses are local only in the sandbox network namespace,"
                    " and this is not it:\n  - " + "\n  - ".join(self.sandbox_problems)
                    + "\nRun it as: " + HOW_TO)
        self.events = events if events is not None else EventLog(self.workdir, subject, name)
        self.base_env = base_env()
        try:
            self.python, self.distributed_version = probe_python(python, self.base_env)
        except SystemExit as e:
            raise RuntimeError(str(e)) from None
        self.tee_path = shutil.which("tee", path=self.base_env.get("PATH"))
        if self.tee_path is None:
            raise RuntimeError("`tee` (coreutils) is not on PATH; it carries each node's output"
                               " to its log file and console, as on the VM")
        self.kill_grace = kill_grace
        self.ttl_minute = ttl_minute
        self._lock = threading.RLock()
        self._nodes = {}       # id -> _Node, in boot order
        self._refused = set()
        self._queue = []       # (kind, node, detail) to emit outside the lock
        self._closing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vmboot", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    # -- the contract ----------------------------------------------------------------------

    def boot(self, node_id, user_data, ip, on_power_off, image_python_check=True, *,
             metadata_env=None):
        """Start the node's Dask process as its user-data says; Refusal(reason) if it cannot.
        Returns once the process started. `metadata_env`: how a process on this VM finds the
        platform's metadata service (e.g. AWS_EC2_METADATA_SERVICE_ENDPOINT), given to the key
        fetch that runs before Dask when the user-data has one."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the runtime is shut down")
            try:
                if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
                    raise Refusal(f"node id {node_id!r} is not a plain name ([A-Za-z0-9._-])")
                if node_id in self._nodes or node_id in self._refused:
                    raise Refusal(f"node {node_id} was booted before (cloud-init runs runcmd"
                                  " once per instance)")
                if SANDBOX_10 not in self.networks and in_networks(ip, (SANDBOX_10,)):
                    problems = self.sandbox_problems or []
                    why = (f"not here: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                         if len(problems) > 1 else "")
                           if problems else "the runtime was given loopback only")
                    raise Refusal(f"private IP {ip} is in 10.0.0.0/8, which is local only inside"
                                  f" the sandbox network namespace ({why}); run as: {HOW_TO}")
                plan = prepare(
                    node_id, user_data, ip, os.path.join(self.workdir, node_id),
                    python=self.python, distributed_version=self.distributed_version,
                    base_env=self.base_env, networks=self.networks,
                    image_check=image_python_check, metadata_env=metadata_env,
                )
                node = self._spawn(plan, on_power_off)
            except Exception as e:
                detail = refusal_detail(e)
                if isinstance(node_id, str):
                    self._refused.add(node_id)
                self._queue.append(("refused", node_id, detail))
                refusal = e if isinstance(e, Refusal) else Refusal(detail["reason"])
            else:
                refusal = None
                self._nodes[node_id] = node
                self._queue.append(("booted", node_id, {
                    "private_ip": node.ip, "pid": node.proc.pid, "boot_json": node.boot_json,
                    "console": node.console_path}))
        self._flush()
        if refusal is not None:
            raise refusal

    def stop(self, node_id, wait=False, reason=None):
        """The platform deleted or stopped the VM: SIGTERM to the group, SIGKILL after the
        grace.  Idempotent; a node never booted is ignored.  `wait=True` returns only once the
        group is gone (or the grace and 2 s passed)."""
        with self._lock:
            n = self._nodes.get(node_id)
            if n is None:
                return
            n.stopped = True
            n.ttl_deadline = None
            n.power_off_on_exit = False
            self._start_kill(n, reason or "stopped by the platform", self.kill_grace)
        self._flush()
        if wait:
            self._wait_killed([n], self.kill_grace + 2)

    def alive(self, node_id):
        """Whether anything of the node's process group still runs."""
        with self._lock:
            n = self._nodes.get(node_id)
            return n is not None and n.group_alive()

    def console(self, node_id):
        """What the node wrote to its serial console so far ("" for a node never booted)."""
        with self._lock:
            n = self._nodes.get(node_id)
        if n is None:
            return ""
        try:
            with open(n.console_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def nodes(self):
        """Every node booted (not refused), in boot order, running or not."""
        with self._lock:
            return list(self._nodes)

    def shutdown(self):
        """Stop every node, wait for their groups (the grace and 2 s at most), stop the
        monitor thread.  Idempotent; boot refuses afterwards."""
        with self._lock:
            first = not self._closing
            self._closing = True
            nodes = list(self._nodes.values())
            for n in nodes:
                n.ttl_deadline = None
                n.power_off_on_exit = False
                self._start_kill(n, "runtime shutting down", self.kill_grace)
        self._flush()
        if not first or threading.current_thread() is self._thread:
            return
        self._wait_killed(nodes, self.kill_grace + 2)
        self._stop.set()
        self._thread.join(5)
        for n in nodes:
            if n.tee is not None and n.tee.poll() is None:
                try:
                    n.tee.wait(1)
                except subprocess.TimeoutExpired:
                    n.tee.kill()
                    n.tee.wait()

    # -- additions --------------------------------------------------------------------------

    def console_path(self, node_id):
        """The file that holds the node's console output (DIR/<node>/console.log), for
        adapters that serve it from another process (the EC2 agent's moto)."""
        with self._lock:
            return self._nodes[node_id].console_path

    def node_dir(self, node_id):
        """DIR/<node>: boot.json, dask.log, console.log, root/, work/."""
        return os.path.join(self.workdir, node_id)

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, plan, on_power_off):
        node = _Node(plan, on_power_off)
        before = "".join(text + "\n" for text in plan.echo_before).encode("utf-8")
        for sink in (plan.log_path, plan.console_path):
            with open(sink, "ab") as f:
                f.write(before)
        r, w = os.pipe()
        try:
            with open(plan.console_path, "ab") as console:
                node.tee = subprocess.Popen(
                    [self.tee_path, "-a", plan.log_path], stdin=r, stdout=console,
                    stderr=console, env=self.base_env, cwd=plan.dir, start_new_session=True,
                    close_fds=True,
                )
            argv, env = plan.argv, plan.env
            if plan.fetch is not None:
                # The key fetch, then Dask, in one process group with one output, as the run
                # script runs them: launch.py runs the fetch and then execs Dask (whatever the
                # fetch's status: without its key, Dask fails on its own).
                steps = os.path.join(plan.dir, "launch.json")
                with open(steps, "w", encoding="utf-8") as f:
                    json.dump({"fetch": {"argv": plan.fetch[0], "env": plan.fetch[1]},
                               "exec": {"argv": plan.argv, "env": plan.env}}, f)
                argv = [self.python, LAUNCHER, steps]
            try:
                node.proc = subprocess.Popen(
                    argv, env=env, cwd=plan.cwd, stdin=subprocess.DEVNULL,
                    stdout=w, stderr=subprocess.STDOUT, start_new_session=True,
                    close_fds=True,
                )
            except BaseException:
                node.tee.kill()
                node.tee.wait()
                raise
        finally:
            os.close(r)
            os.close(w)
        node.pgid = node.proc.pid
        if plan.ttl_minutes is not None:
            node.ttl_deadline = time.monotonic() + self.ttl_minute * plan.ttl_minutes
        return node

    # -- the monitor thread -----------------------------------------------------------------

    def _loop(self):
        while not self._stop.is_set():
            with self._lock:
                nodes = list(self._nodes.values())
            for n in nodes:
                try:
                    self._tick(n)
                except Exception as e:
                    self._emit("error", n.id, {"error": repr(e),
                                               "trace": traceback.format_exc()})
            self._stop.wait(TICK_SECONDS)

    def _tick(self, n):
        power_off = None
        with self._lock:
            if n.tee is not None:
                n.tee.poll()  # reap it once its input closed
            if n.kill is not None:
                self._progress_kill(n)
            elif n.drain_deadline is not None:
                if n.tee.poll() is not None or time.monotonic() >= n.drain_deadline:
                    n.drain_deadline = None
                    power_off = self._finish_exit(n)
            elif not n.exited and n.proc.poll() is not None:
                n.exited = True
                n.returncode = n.proc.returncode
                n.drain_deadline = time.monotonic() + DRAIN_SECONDS
            if (power_off is None and n.ttl_deadline is not None and not n.powered_off
                    and not n.stopped and not self._closing
                    and time.monotonic() >= n.ttl_deadline):
                n.ttl_deadline = None
                n.powered_off = True
                power_off = "ttl"
        self._flush()
        if power_off is not None:
            self._power_off(n, power_off)

    def _finish_exit(self, n):
        """Dask exited and its output is drained: the run script's last echo, the `exited`
        event, then its `shutdown -P now` (returned as the power-off reason) if it has one."""
        status = shell_status(n.returncode)
        after = "".join(t.replace("$?", str(status)) + "\n" for t in n.echo_after)
        for sink in (n.log_path, n.console_path):
            with open(sink, "ab") as f:
                f.write(after.encode("utf-8"))
        self._queue.append(("exited", n.id, {"returncode": n.returncode, "status": status,
                                             "log_tail": tail(n.log_path)}))
        if (n.power_off_on_exit and not n.powered_off and not n.stopped
                and not self._closing):
            n.powered_off = True
            n.ttl_deadline = None
            return "exited"
        if n.powered_off and n.group_alive():
            self._start_kill(n, "powered off", self.kill_grace)
        return None

    def _power_off(self, n, reason):
        """Outside the lock: the adapter's on_power_off, the event, then the group's kill."""
        detail = {"reason": reason, "why": POWER_OFF_WHY[reason]}
        try:
            if n.on_power_off is not None:
                extra = n.on_power_off(n.id, reason)
                if isinstance(extra, dict):
                    detail.update(extra)
            self._emit("powered-off", n.id, detail)
        except Exception as e:
            self._emit("error", n.id, {"while": f"powering off ({reason})", "error": repr(e),
                                       "trace": traceback.format_exc()})
        with self._lock:
            self._start_kill(n, "powered off", self.kill_grace)
        self._flush()

    # -- kills ------------------------------------------------------------------------------

    def _start_kill(self, n, reason, grace):
        """SIGTERM to the group, and SIGKILL `grace` seconds later if anything is left."""
        if n.kill is not None or not n.group_alive():
            return
        signal_group(n.pgid, signal.SIGTERM)
        n.kill = {"reason": reason, "deadline": time.monotonic() + grace, "escalated": False}

    def _progress_kill(self, n):
        if not n.exited and n.proc.poll() is not None:
            # The leader died of the kill: no `exited` event and no power-off, as on a VM
            # that is going down anyway.
            n.exited = True
            n.returncode = n.proc.returncode
        if not n.group_alive():
            self._queue.append(("killed", n.id, {"reason": n.kill["reason"],
                                                 "returncode": n.returncode,
                                                 "sigkill": n.kill["escalated"]}))
            n.kill = None
            return
        if time.monotonic() >= n.kill["deadline"] and not n.kill["escalated"]:
            n.kill["escalated"] = True
            signal_group(n.pgid, signal.SIGKILL)

    def _wait_killed(self, nodes, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if all(n.kill is None for n in nodes):
                    return
            if threading.current_thread() is self._thread or self._stop.is_set():
                for n in nodes:
                    with self._lock:
                        if n.kill is not None:
                            self._progress_kill(n)
                self._flush()
            time.sleep(TICK_SECONDS)

    # -- events -----------------------------------------------------------------------------

    def _flush(self):
        with self._lock:
            queued, self._queue = self._queue, []
        for kind, node, detail in queued:
            self._emit(kind, node, detail)

    def _emit(self, kind, node, detail):
        try:
            self.events(kind, node=node, **detail)
        except Exception:
            print(f"vmboot: the events callable failed on {kind} of {node}:\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)
