"""The simulated node's container runtime: local process groups, CRI log files, probes.

Owns what kubelet.py needs below the pod level:
- `Process`: a container's process group (`start_new_session`, umask 077), its signals, and
  whether anything of the group is still alive (`vmboot.procs.process_group_alive`);
- the container log in the CRI on-node format (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`,
  one line per output line, both streams in one file), and `read_log`, which answers like the
  kubelet's log endpoint (tailLines, timestamps, sinceTime, limitBytes);
- `run_probe`: one httpGet/tcpSocket probe against the pod IP, with the kubelet's verdicts
  (2xx/3xx success, `kube-probe/<minor>` user agent, redirects to the same host followed,
  HTTPS without verification) and its failure wordings.
"""

import datetime
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from vmboot.procs import process_group_alive  # noqa: E402

KUBE_PROBE_UA = "kube-probe/1.35"
MAX_CRI_LINE = 16 * 1024       # containerd splits longer lines into partial (P) records


def rfc3339nano(t_ns=None):
    """Go's time.RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    t_ns = time.time_ns() if t_ns is None else t_ns
    sec, ns = divmod(t_ns, 10 ** 9)
    base = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S")
    frac = f"{ns:09d}".rstrip("0")
    return f"{base}{'.' + frac if frac else ''}Z"


def rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    """RFC3339 (with optional fraction) -> epoch nanoseconds."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, frac, rest = text, "", ""
    if "." in text:
        main, _, tail = text.partition(".")
        i = 0
        while i < len(tail) and tail[i].isdigit():
            i += 1
        frac, rest = tail[:i], tail[i:]
        main += rest
    dt = datetime.datetime.fromisoformat(main)
    return int(dt.timestamp()) * 10 ** 9 + int((frac + "000000000")[:9] or 0)


class CriLog:
    """Writes a container's stdout and stderr into one CRI-format file."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._f = open(path, "ab", buffering=0)
        self._threads = []

    def write_line(self, stream, data, full=True):
        with self._lock:
            for i in range(0, max(len(data), 1), MAX_CRI_LINE):
                chunk = data[i:i + MAX_CRI_LINE]
                last = i + MAX_CRI_LINE >= len(data)
                tag = b"F" if (full and last) else b"P"
                self._f.write(rfc3339nano().encode() + b" " + stream + b" " + tag + b" "
                              + chunk + b"\n")

    def attach(self, fd, stream):
        t = threading.Thread(target=self._pump, args=(fd, stream.encode()), daemon=True,
                             name=f"log-{os.path.basename(self.path)}-{stream}")
        t.start()
        self._threads.append(t)

    def _pump(self, fd, stream):
        buf = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.write_line(stream, line)
            if buf:
                self.write_line(stream, buf, full=False)
        except OSError:
            pass
        finally:
            os.close(fd)

    def join(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def close(self):
        self.join()
        with self._lock:
            self._f.close()


def read_log(path, tail_lines=None, timestamps=False, since_ns=None, limit_bytes=None):
    """The text the kubelet's containerLogs endpoint answers for one CRI log file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return ""
    entries = []           # (timestamp text, text bytes incl. newline when full)
    for rec in raw.split(b"\n"):
        if not rec:
            continue
        parts = rec.split(b" ", 3)
        if len(parts) < 3:
            continue
        ts, _stream, tag = parts[0], parts[1], parts[2]
        content = parts[3] if len(parts) > 3 else b""
        if since_ns is not None and parse_rfc3339(ts.decode()) < since_ns:
            continue
        if entries and entries[-1][2] is False:
            entries[-1] = (entries[-1][0], entries[-1][1] + content, tag == b"F")
        else:
            entries.append((ts, content, tag == b"F"))
    lines = [(ts, content + (b"\n" if full else b"")) for ts, content, full in entries]
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    out = b"".join((ts + b" " + text) if timestamps else text for ts, text in lines)
    if limit_bytes is not None:
        out = out[:limit_bytes]
    return out.decode("utf-8", errors="replace")


class Process:
    """One container's process group."""

    def __init__(self, argv, env, cwd, log_path):
        self.log = CriLog(log_path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                         stdout=out_w, stderr=err_w, start_new_session=True,
                                         close_fds=True, umask=0o077)
        except Exception:
            for fd in (out_r, err_r):
                os.close(fd)
            self.log.close()
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pgid = self.proc.pid
        self.log.attach(out_r, "stdout")
        self.log.attach(err_r, "stderr")

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        return self.proc.poll()

    def group_alive(self):
        return process_group_alive(self.pgid)

    def signal(self, sig):
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def exit_code(self):
        """The container's exit code as the runtime reports it (128+N for signal N)."""
        rc = self.proc.returncode
        return rc if rc is None or rc >= 0 else 128 - rc

    def finish(self):
        """The leader exited: the container's init is gone, so is the rest of it."""
        self.signal(signal.SIGKILL)
        self.log.close()


# ---- probes -----------------------------------------------------------------------------------

class _NoVerifyHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, timeout):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=ctx)


def _dial_error(ip, port, exc):
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {ip}:{port}: connect: connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"dial tcp {ip}:{port}: i/o timeout"
    return f"dial tcp {ip}:{port}: {exc}"


def run_probe(plan, ip):
    """One probe -> (success, message for the Unhealthy event when it failed)."""
    if plan.error:
        return False, plan.error
    if plan.action == "tcp":
        try:
            with socket.create_connection((ip, plan.port), timeout=plan.timeout):
                return True, ""
        except OSError as e:
            return False, _dial_error(ip, plan.port, e)
    scheme = plan.scheme.lower()
    path = plan.path if plan.path.startswith("/") else "/" + plan.path
    url = f"{scheme}://{ip}:{plan.port}{path}"
    deadline = time.monotonic() + plan.timeout
    host, port = ip, plan.port
    for _hop in range(10):
        left = deadline - time.monotonic()
        if left <= 0:
            return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded'
                           " while awaiting headers)")
        conn = (_NoVerifyHTTPS(host, port, left) if scheme == "https"
                else http.client.HTTPConnection(host, port, timeout=left))
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            names = {n.lower() for n, _ in plan.headers}
            if "user-agent" not in names:
                conn.putheader("User-Agent", KUBE_PROBE_UA)
            if "accept" not in names:
                conn.putheader("Accept", "*/*")
            for n, v in plan.headers:
                conn.putheader(n, v)
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read(10 * 1024)
            status = resp.status
            location = resp.getheader("Location")
        except ConnectionRefusedError as e:
            return False, f'Get "{url}": {_dial_error(host, port, e)}'
        except (socket.timeout, TimeoutError):
            return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded'
                           " while awaiting headers)")
        except OSError as e:
            return False, f'Get "{url}": {e}'
        except http.client.HTTPException as e:
            return False, f'Get "{url}": {e!r}'
        finally:
            conn.close()
        if 300 <= status < 400 and location:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(url, location))
            if target.hostname != host or (target.port or port) != port:
                # The kubelet does not follow redirects to other hosts: a success with a warning.
                return True, ""
            path = target.path + ("?" + target.query if target.query else "")
            url = urllib.parse.urlunsplit(target)
            continue
        if 200 <= status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {status}"
    return False, f'Get "{url}": stopped after 10 redirects'
