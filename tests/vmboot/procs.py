"""Local processes: whether a process group is still alive, signalling it, the `--python`
probe, log tails, and how a boot failure is described.

Shared by the VM runtime and, through the compatibility names in tests/aws/ec2agent/agent.py,
by the ECS agent and the Kubernetes simulator's kubelet.
"""

import os
import shutil
import subprocess
import traceback

from .common import Refusal

# The only variables of the host's environment a node's process starts with.
BASE_ENV_KEYS = ("PATH", "HOME", "LANG")


def base_env():
    """PATH, HOME and LANG of this process: nothing DASK_*, CLUSTERCTL_*, AWS_*, ... leaks."""
    return {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}


def tail(path, lines=30):
    """The last `lines` lines of a text file (at most its last 8 KiB); [] if unreadable."""
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


def signal_group(pgid, sig):
    """Send `sig` to the group; a group that is already gone is not an error."""
    if pgid is None:
        return
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def probe_python(python_arg, env):
    """`--python` -> (its absolute path, the `distributed.__version__` it imports).
    SystemExit with the reason if it is not an interpreter with distributed."""
    python = shutil.which(python_arg, path=env.get("PATH"))
    if python is None:
        raise SystemExit(f"--python {python_arg!r} is not an executable")
    python = os.path.abspath(python)
    probe = subprocess.run(
        [python, "-c", "import distributed; print(distributed.__version__)"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
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
