"""The skeleton both boot agents share: the work directory and its event logs, the main loop,
the local process groups and their kills, and the `--python` probe.

`ec2agent.boot` (EC2 instances) and `ecsagent.boot` (Fargate tasks) each subclass `BaseAgent`.
What a machine is, how it boots, and what ends it stays with them; this module only runs the
loop around that and logs what happens.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from .common import Refusal

BASE_ENV_KEYS = ("PATH", "HOME", "LANG")


def tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


def process_group_alive(pgid):
    """Whether any non-zombie process is left in the group.  kill(-pgid, 0) alone also counts
    zombies, which linger until a (possibly lazy) init reaps the orphans."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def probe_python(python_arg, base_env):
    """`--python` -> (its absolute path, the `distributed.__version__` it imports)."""
    python = shutil.which(python_arg, path=base_env.get("PATH"))
    if python is None:
        raise SystemExit(f"--python {python_arg!r} is not an executable")
    python = os.path.abspath(python)
    probe = subprocess.run(
        [python, "-c", "import distributed; print(distributed.__version__)"],
        env=base_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        raise SystemExit(f"{python} cannot import distributed:\n{probe.stderr}")
    return python, probe.stdout.strip()


def refusal_detail(e):
    """The `refused` event's detail for what booting raised; call it in the `except` block."""
    if isinstance(e, Refusal):
        return {"reason": str(e)}
    return {"reason": f"agent failure: {e!r}", "trace": traceback.format_exc()}


def run_agent(agent_class, args):
    """The `boot` subcommand: check `--poll`, start the agent, run it until SIGTERM/SIGINT."""
    if args.poll <= 0:
        raise SystemExit("--poll must be positive")
    agent = agent_class(args)
    agent.run()
    return 0


class BaseAgent:
    """The loop and the logs of a boot agent.  A subclass sets `name` (the stderr prefix) and
    `subject` (the key naming the machine in each event record), `stop_grace` (seconds between
    SIGTERM and SIGKILL when the agent stops), and defines `poll` and `tick_one`.

    A booted machine (in `self.booted`) has `id`, `proc` (the Popen it started, or None),
    `pgid`, `exited`, `returncode`, `kill` (None, or the kill under way) and `group_alive()`.
    """

    name = None
    subject = None
    stop_grace = None

    def __init__(self, args):
        self.workdir = os.path.abspath(args.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.events_path = os.path.join(self.workdir, "agent-events.jsonl")
        self.errors_path = os.path.join(self.workdir, "agent-errors.jsonl")
        self.poll_interval = args.poll
        self.preflight()
        self.base_env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        self.python, self.distributed_version = probe_python(args.python, self.base_env)
        self.seen = set()
        self.booted = {}
        self.stop = threading.Event()

    def preflight(self):
        """Checks of this machine, made after the work directory exists and before `--python`
        is probed.  Raise SystemExit to refuse to run."""

    # -- logging ---------------------------------------------------------------------------

    def event(self, subject_id, kind, detail, error=False):
        record = {"t": time.time(), self.subject: subject_id, "event": kind, "detail": detail}
        line = json.dumps(record, default=str) + "\n"
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(line)
        if error:
            with open(self.errors_path, "a", encoding="utf-8") as f:
                f.write(line)
        print(f"{self.name}: {subject_id or '-'} {kind}: {json.dumps(detail, default=str)}",
              file=sys.stderr, flush=True)

    # -- main loop --------------------------------------------------------------------------

    def ready_record(self):
        """The `{"ready": true, ...}` line printed on stdout once the agent runs."""
        return {"ready": True, "distributed_version": self.distributed_version,
                "python": self.python, "workdir": self.workdir}

    def run(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        print(json.dumps(self.ready_record()), flush=True)
        next_poll = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_poll:
                self.poll()
                self.after_poll()
                next_poll = time.monotonic() + self.poll_interval
            self.tick()
            self.stop.wait(min(0.1, self.poll_interval))
        self.shutdown()

    def poll(self):
        """Ask moto what runs now: boot new machines, start kills of those gone down."""
        raise NotImplementedError

    def after_poll(self):
        """Run after each `poll`, whether or not it failed."""

    def tick(self):
        for b in list(self.booted.values()):
            try:
                if b.kill is not None:
                    self.progress_kill(b)
                else:
                    self.tick_one(b)
            except Exception as e:
                self.event(b.id, "error", {"error": repr(e), "trace": traceback.format_exc()},
                           error=True)

    def tick_one(self, b):
        """One step of a booted machine that is not being killed (exits, timers)."""
        raise NotImplementedError

    def shutdown(self):
        for b in self.booted.values():
            if b.kill is None:
                self.start_kill(b, "agent stopping", self.stop_grace)
        deadline = time.monotonic() + self.stop_grace + 2
        while any(b.kill is not None for b in self.booted.values()):
            for b in self.booted.values():
                if b.kill is not None:
                    self.progress_kill(b)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

    # -- process groups and kills -----------------------------------------------------------

    def signal_group(self, b, sig):
        if b.pgid is None:
            return
        try:
            os.killpg(b.pgid, sig)
        except ProcessLookupError:
            pass

    def start_kill(self, b, reason, grace):
        """SIGTERM to the group, and SIGKILL `grace` seconds later if anything is left."""
        if b.kill is not None or not b.group_alive():
            return
        self.signal_group(b, signal.SIGTERM)
        b.kill = {"reason": reason, "deadline": time.monotonic() + grace, "escalated": False,
                  "grace": grace}

    def progress_kill(self, b):
        if b.proc is not None and not b.exited and b.proc.poll() is not None:
            self.leader_exited_during_kill(b)
        if not b.group_alive():
            self.event(b.id, "killed", self.killed_detail(b))
            b.kill = None
            return
        if time.monotonic() >= b.kill["deadline"] and not b.kill["escalated"]:
            b.kill["escalated"] = True
            self.signal_group(b, signal.SIGKILL)

    def leader_exited_during_kill(self, b):
        """The process the agent started exited while its group is being killed."""
        b.exited = True
        b.returncode = b.proc.returncode

    def killed_detail(self, b):
        """The `killed` event's detail, built once the group of a kill is empty."""
        return {"reason": b.kill["reason"], "returncode": b.returncode,
                "sigkill": b.kill["escalated"]}
