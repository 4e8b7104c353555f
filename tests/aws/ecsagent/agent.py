"""The skeleton of the ECS boot agent: the work directory and its event logs, the main loop
over moto, the local process groups and their kills.

`ecsagent.boot.Agent` subclasses `BaseAgent`: what a task is, how it boots, and what ends it
stay there; this module only runs the loop around that and logs what happens.  The process and
event helpers are vmboot's (tests/vmboot), which the EC2 agent's runtime is built on too.
"""

import json
import os
import signal
import threading
import time
import traceback

from vmboot.events import EventLog
from vmboot.procs import base_env, probe_python, signal_group


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
        self.log = EventLog(self.workdir, subject=self.subject, name=self.name)
        self.poll_interval = args.poll
        self.preflight()
        self.base_env = base_env()
        self.python, self.distributed_version = probe_python(args.python, self.base_env)
        self.seen = set()
        self.booted = {}
        self.stop = threading.Event()

    def preflight(self):
        """Checks of this machine, made after the work directory exists and before `--python`
        is probed.  Raise SystemExit to refuse to run."""

    # -- logging ---------------------------------------------------------------------------

    def event(self, subject_id, kind, detail, error=False):
        self.log.record(subject_id, kind, detail, error=error)

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
        signal_group(b.pgid, sig)

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
