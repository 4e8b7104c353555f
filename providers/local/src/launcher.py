"""clusterctl local launcher: import Dask once, then fork the cluster's nodes from it.

Boot of a local cluster is CPU-bound on importing `distributed` in every process. This process
imports it (and both command-line entry points) once, then, for every request it reads on
stdin, forks a child that becomes one node: a process group of its own, its output appended to
its log file, its environment updated, then the `dask scheduler` or `dask worker` command run in
it. The children are real, separate Dask processes; only the imported modules are shared (copy
on write). Nothing here starts a thread or an event loop before a fork: each child creates its
own loop when its command runs.

Nodes are found by the tags in their environment as `/proc/<pid>/environ` shows it: the
environment block the process started with. A forked child keeps its parent's block, so this
process starts with CLUSTERCTL_TAGS padded to a fixed size, writes each node's tags into that
block in place just before forking (the child inherits the copy), and writes its own back after.

Protocol, one JSON object per line: first this process writes {"ready": true} (or {"ready":
false, "why": ...}); then for each request {"role", "args", "env", "log", "tags"} it answers
{"pid": N} or {"error": "..."}. It exits when its stdin closes.
"""

import sys

# `-c` puts the working directory first on the path; the `dask` command does not.
if sys.path and sys.path[0] == "":
    del sys.path[0]

import ctypes  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _env_block():
    """The address range of this process's original environment block."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # Fields 50 and 51 of proc_pid_stat(5) (env_start, env_end); `fields` starts at field 3.
    return int(fields[47]), int(fields[48])


class TagSlot:
    """CLUSTERCTL_TAGS's value in the original environment block, rewritten in place."""

    def __init__(self):
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_void_p
        libc.getenv.argtypes = [ctypes.c_char_p]
        self.addr = libc.getenv(b"CLUSTERCTL_TAGS")
        self.own = os.environb[b"CLUSTERCTL_TAGS"]
        self.size = len(self.own)
        start, end = _env_block()
        if not self.addr or not (start <= self.addr and self.addr + self.size <= end):
            raise RuntimeError("CLUSTERCTL_TAGS is not in the original environment block")
        probe = b'{"probe":"' + str(os.getpid()).encode() + b'"}'
        self.write(probe)
        with open("/proc/self/environ", "rb") as f:
            seen = f.read()
        self.write(self.own)
        if b"CLUSTERCTL_TAGS=" + probe.ljust(self.size) not in seen:
            raise RuntimeError("/proc/self/environ does not show a rewritten CLUSTERCTL_TAGS")

    def write(self, value):
        if len(value) > self.size:
            raise ValueError(f"tags of {len(value)} bytes exceed the slot of {self.size}")
        ctypes.memmove(self.addr, value.ljust(self.size, b" "), self.size)


def _await_scheduler(args, patience=10.0):
    """Wait until the scheduler's port accepts connections, trying every 10 ms (for at most
    `patience` seconds, then Dask's own retries take over). A worker forked beside its
    scheduler would otherwise meet a closed port and back off: Dask retries a connection after a
    random delay whose bound doubles from 10 ms, so a scheduler that takes 0.3 s to listen is
    found up to as long again later."""
    import socket
    import time
    from urllib.parse import urlsplit

    address = next((a for a in args if "://" in a), None)
    if address is None:
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        return
    if not host or not port:
        return
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.01)


def _child(request):
    """Become the node (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)
        # The dispositions a fresh interpreter starts with (Python ignores SIGPIPE itself).
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.update(request["env"])
        # Children of the node inherit its tags (so `down` finds stragglers), as with exec.
        os.environ["CLUSTERCTL_TAGS"] = request["tags"]
        import dask.config

        dask.config.refresh()
        from distributed.cli import dask_scheduler, dask_worker

        if request["role"] == "worker":
            _await_scheduler(request["args"])
        command = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}[request["role"]]
        sys.argv = ["dask " + request["role"], *request["args"]]
        command(args=request["args"], prog_name="dask " + request["role"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main():
    # A node that exits is reaped by the kernel: this process never waits for its children.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # The CLI's Ctrl-C is not ours (own process group), but never die of it mid-fork either.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        slot = TagSlot()
        import dask.config  # noqa: F401
        import distributed  # noqa: F401
        from distributed.cli import dask_scheduler, dask_worker  # noqa: F401

        if threading.active_count() != 1:
            raise RuntimeError("importing Dask started a thread: forking would be unsafe")
    except Exception as e:  # noqa: BLE001 - reported to the CLI, which falls back to exec
        _reply({"ready": False, "why": f"{type(e).__name__}: {e}"})
        return
    _reply({"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            tags = request["tags"].encode()
            slot.write(tags)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            try:
                # Also here, so the group exists when the CLI reads the pid (no race).
                os.setpgid(pid, pid)
            except OSError:
                pass
            _reply({"pid": pid})
        except Exception as e:  # noqa: BLE001 - one request failed, the CLI decides
            _reply({"error": f"{type(e).__name__}: {e}"})
        finally:
            slot.write(slot.own)


if __name__ == "__main__":
    main()
