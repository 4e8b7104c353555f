"""What the benchmarks against simulators and emulators share: re-running the script inside a
private network namespace (lo holding 127/8 and 10/8, where task, pod and droplet addresses are
local and nothing else is reachable), and a test double that prints one JSON "ready" line."""

import json
import os
import signal
import subprocess
import sys
import threading

SANDBOX = "CLUSTERCTL_BENCH_SANDBOX"


def enter_sandbox():
    """Re-exec this script in a private network namespace with lo up holding 10.0.0.0/8 (needs
    root); a no-op once inside."""
    if os.environ.get(SANDBOX) == "1":
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark needs its own network namespace (unshare --net)")
    script = "ip link set lo up && ip addr add 10.0.0.0/8 dev lo && exec \"$@\""
    os.execvpe("unshare", ["unshare", "--net", "sh", "-c", script, "sh", sys.executable, *sys.argv],
               dict(os.environ, **{SANDBOX: "1"}))


class ReadyProcess:
    """A simulator started with `argv` in `workdir` (created; stderr to `sim.log`) that prints one
    JSON line with `"ready": true` once it serves; `self.ready` is that object."""

    def __init__(self, argv, workdir, stop_grace=30):
        self.workdir = workdir
        self.stop_grace = stop_grace
        os.makedirs(workdir)
        self.log = open(os.path.join(workdir, "sim.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self._first_line(60)
        try:
            self.ready = json.loads(line)
        except ValueError:
            self.ready = {}
        if self.ready.get("ready") is not True:
            self.stop()
            raise SystemExit(f"the simulator did not start ({line!r}); see {self.log.name}")

    def _first_line(self, timeout):
        got = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return got[0].strip() if got else ""

    def stop(self):
        """SIGTERM (the simulator stops what it started), SIGKILL after the grace."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
