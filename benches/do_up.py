"""DigitalOcean provider benchmark against the repo's API simulator (see docs/benchmarks.md).

Owns the measurement of `clusterctl up` / `clusterctl down` with `--provider digitalocean`
against `tests/digitalocean/do_sim.py serve`: wall time and API requests per command and per
lifecycle phase, for 1, 10 and 50 workers, each in a fresh simulator, one case at a time (and
round by round with `--rounds`).

Each case times `clusterctl up --provider digitalocean --region nyc3 --workers N --allow-cidr
10.0.0.0/32 --timeout 600s` (TLS on, the default) until it returns with the cluster ready and
all N workers joined, then `clusterctl down`. Requests are counted by the simulator, which is
the server and so sees every attempt, throttled ones included:

- per command: the script marks the phase `up`, then `down`, through `POST /_sim/mark` before
  each command, and reads `GET /_sim/requests/summary` (counts by operation and by status);
- per lifecycle phase: clusterctl writes `<unix ms> phase:<phase>` into the API log named by
  `CLUSTERCTL_API_LOG` when each phase begins (creating resources, starting the scheduler,
  starting workers, waiting for the scheduler, waiting for workers to join, tearing down);
  each request of the simulator's log (`requests.jsonl`, stamped with its arrival time) goes
  to the phase that had begun when it arrived ("plan" before the first mark). The client's
  own count of attempts (the same log's other lines) is cross-checked against the server's.

HTTP 429s are part of the result: they show in the tables with their status, as does the
busiest 60 s window against the simulator's per-minute limit (`--rate-per-minute`, 250 by
default, as on DigitalOcean). The simulator's account allows 25 droplets by default (DigitalOcean
accounts have such a limit too, raised on request); 50 workers and a scheduler need more, so
every case runs with `--droplet-limit 100` (`--droplet-limit` to change it). The other
simulator timings keep their defaults (`--boot-delay 1`, `--ip-delay 0.5`, `--list-lag 1`,
`--public-ip-lag 0.5`, `--firewall-delay 0.5`).

Droplets boot for real as local Dask processes (a nanny and a worker each, ~100 MB)
on 10.x addresses, so the script re-runs itself under `unshare --net` (root) with `lo` holding
127.0.0.0/8 and 10.0.0.0/8, as benches/k8s_up.py does. It samples the memory available while
each case runs, checks after `down` that the simulator holds nothing of the cluster and that no
droplet process is left, and on exit (also on SIGINT/SIGTERM) stops the simulator and whatever
it started.

Usage:  sudo PY benches/do_up.py --clusterctl target/debug/clusterctl [--python PY]
            [--sizes 1,10,50] [--rounds 1] [--keep DIR]
PY needs dask[distributed] and the simulator's modules (jsonschema, openapi-schema-validator,
cryptography, ...), as the venv that tests/run.sh builds has.
"""

import argparse
import collections
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sandbox import ReadyProcess, enter_sandbox  # noqa: E402
SIM = os.path.join(HERE, "..", "tests", "digitalocean", "do_sim.py")
# A token of DigitalOcean's shape; the simulator accepts only this one.
TOKEN = "dop_v1_simulated0123456789abcdef0123456789abcdef0123456789abcdef0123"


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind through every `finally`, so everything started is stopped."""


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


class Simulator(ReadyProcess):
    """One `do_sim.py serve` process with its own work directory, and its control API."""

    def __init__(self, python, workdir, extra):
        super().__init__([python, SIM, "serve", "--workdir", workdir, "--python", python,
                          "--token", TOKEN, *extra], workdir, stop_grace=60)
        self.url, self.ca_file = self.ready["url"], self.ready["ca_file"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=300) as r:
            text = r.read().decode()
        return json.loads(text) if text.strip() else None

    def mark(self, phase):
        self.control("POST", "/_sim/mark", {"phase": phase})

    def requests(self):
        return self._jsonl("requests.jsonl")

    def errors(self):
        """The simulator's errors and vmboot's: both must be empty after a good run."""
        return self._jsonl("sim-errors.jsonl") + self._jsonl("agent-errors.jsonl")

    def _jsonl(self, name):
        path = os.path.join(self.workdir, name)
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]


class MemoryWatch:
    """Samples MemAvailable twice a second; `lowest` is the least seen, in bytes."""

    def __init__(self):
        self.lowest = self.baseline = available()
        self.total = meminfo()["MemTotal"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(0.5):
            self.lowest = min(self.lowest, available())

    def stop(self):
        self._stop.set()
        self._thread.join()


def meminfo():
    out = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) * 1024
    return out


def available():
    return meminfo()["MemAvailable"]


def own_processes(tmp):
    """Processes working under `tmp` (droplets' nannies, workers, schedulers, their tee), but
    not this script."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == tmp or cwd.startswith(tmp + os.sep):
            found.append(int(pid))
    return sorted(found)


def run(binary, args, env, api_log):
    """Run one clusterctl command; (start, end, exit code, JSON answer, stderr). The child is
    killed if this script is interrupted while it runs."""
    start = time.time()
    proc = subprocess.Popen([binary, *args, "--output", "json", "--quiet"],
                            env=dict(env, CLUSTERCTL_API_LOG=api_log), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    end = time.time()
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    return start, end, proc.returncode, answer, err


def read_api_log(path):
    """clusterctl's API log: ([(phase, unix s)], client attempts)."""
    marks, attempts = [], 0
    if not os.path.exists(path):
        return marks, attempts
    with open(path) as fh:
        for line in fh:
            ms, what = line.rstrip("\n").split(" ", 1)
            if what.startswith("phase:"):
                marks.append((what[len("phase:"):], int(ms) / 1000))
            else:
                attempts += 1
    return marks, attempts


def label(entry):
    """An operation id (DigitalOcean's spec), with the status when it is not a success."""
    op = entry.get("operation") or f"{entry.get('method')} {entry.get('path')}"
    status = entry.get("status")
    if isinstance(status, int) and status >= 400:
        op += f" ({status})"
    return op


def split_phases(entries, marks, start, end, first):
    """[(phase, seconds, Counter)]: each request goes to the phase begun when it arrived;
    `first` names the time before clusterctl's first mark."""
    bounds = [(first, start)] + [(name, at) for name, at in marks]
    out = []
    for i, (name, begin) in enumerate(bounds):
        until = bounds[i + 1][1] if i + 1 < len(bounds) else end
        calls = collections.Counter(
            label(e) for e in entries
            if begin <= e["time"] < until or (i == 0 and e["time"] < begin)
            or (i == len(bounds) - 1 and e["time"] >= until))
        out.append((name, until - begin, calls))
    return out


def busiest_minute(entries):
    """The most requests counted by the limiter (not refused with 429) in any 60 s window."""
    times = sorted(e["time"] for e in entries if e.get("status") != 429)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 60:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def wait_stopped(sim, timeout=60):
    """Seconds until the simulator reports no live droplet process; raises if some outlive it."""
    start = time.time()
    while True:
        nodes = sim.control("GET", "/_sim/inventory")["runtime_nodes"]
        alive = [n["id"] for n in nodes if n.get("alive")]
        if not alive:
            return time.time() - start
        if time.time() - start > timeout:
            raise RuntimeError(f"droplet processes still alive {timeout} s after down: {alive}")
        time.sleep(0.25)


def nothing_left(inv, name):
    """What the simulator still holds of cluster `name` (droplets, firewall, key, tag)."""
    tag = f"clusterctl-cluster:{name}"
    left = [f"droplet {d['name']}" for d in inv["droplets"] if tag in d.get("tags", [])]
    left += [f"firewall {f['name']}" for f in inv["firewalls"] if f["name"] == f"clusterctl-{name}"]
    left += [f"ssh key {k['name']}" for k in inv["ssh_keys"] if k["name"] == f"clusterctl-{name}"]
    left += [f"tag {t}" for t in inv["tags"] if t == tag]          # names
    left += [f"root password e-mail {e}" for e in inv["root_password_emails"]]
    return left


def fail(res, message):
    res["failure"] = f"{res['failure']}; {message}" if res["failure"] else message


def one_case(opts, tmp, index, workers):
    name = f"bench{workers}"
    case_dir = os.path.join(tmp, f"case-{index}")
    sim_args = ["--droplet-limit", str(opts.droplet_limit)]
    if opts.rate_per_minute:
        sim_args += ["--rate-per-minute", str(opts.rate_per_minute)]
    res = {"workers": workers, "load": os.getloadavg()[0], "failure": None, "up": 0.0, "down": 0.0,
           "stopped": 0.0, "address": None, "minute": 0}
    for cmd in ("up", "down"):
        res.update({cmd + " requests": 0, cmd + " 429": 0, cmd + " by op": collections.Counter(),
                    cmd + " phases": []})
    mem = MemoryWatch()
    sim = Simulator(opts.python, os.path.join(case_dir, "sim"), sim_args)
    try:
        os.makedirs(os.path.join(case_dir, "config"))
        env = dict(os.environ, DIGITALOCEAN_API_URL=sim.url, CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file,
                   DIGITALOCEAN_TOKEN=TOKEN, XDG_CONFIG_HOME=os.path.join(case_dir, "config"),
                   CLUSTERCTL_STATE_DIR=os.path.join(case_dir, "state"),
                   CLUSTERCTL_CACHE_DIR=os.path.join(case_dir, "cache"))
        for var in ("CLUSTERCTL_CONFIG", "CLUSTERCTL_PROVIDER", "CLUSTERCTL_OUTPUT",
                    "DIGITALOCEAN_ACCESS_TOKEN", "CLUSTERCTL_API_LOG"):
            env.pop(var, None)
        up_args = ["up", "--provider", "digitalocean", "--region", "nyc3", "--name", name,
                   "--workers", str(workers), "--allow-cidr", "10.0.0.0/32", "--timeout", "600s"]
        logs = {cmd: os.path.join(case_dir, f"api-{cmd}.log") for cmd in ("up", "down")}
        spans = {}
        for cmd, args in (("up", up_args), ("down", ["down", name])):
            # The phase mark labels every request the simulator logs from now on.
            sim.mark(cmd)
            start, end, code, answer, err = run(opts.clusterctl, args, env, logs[cmd])
            spans[cmd] = (start, end)
            res[cmd] = end - start
            with open(os.path.join(case_dir, f"{cmd}.out"), "w") as fh:
                fh.write(f"exit {code}\n{json.dumps(answer, indent=1)}\n--- stderr\n{err}")
            if code != 0:
                fail(res, f"{cmd} exited {code}: {(answer or {}).get('error') or err.strip()[-2000:]}")
            if cmd == "up" and code == 0:
                res["address"] = answer.get("scheduler_address")
                if answer.get("ready") is not True or answer.get("workers", {}).get("joined") != workers:
                    fail(res, f"up did not report {workers} joined workers: {answer}")
                elif not str(res["address"]).startswith("tls://"):
                    fail(res, f"up gave no TLS address: {res['address']}")
        sim.mark(None)
        # Not before: the inventory's firewall reachability report is quadratic in droplets.
        res["stopped"] = wait_stopped(sim)
        left = nothing_left(sim.control("GET", "/_sim/inventory"), name)
        if left:
            fail(res, f"left after down: {left}")

        summary = sim.control("GET", "/_sim/requests/summary")
        entries = sim.requests()
        res["minute"] = busiest_minute(entries)
        for cmd, (start, end) in spans.items():
            mine = [e for e in entries if e.get("phase") == cmd]
            marks, attempts = read_api_log(logs[cmd])
            s = summary.get(cmd, {"requests": 0, "by_status": {}})
            res[cmd + " requests"] = s["requests"]
            res[cmd + " 429"] = s["by_status"].get("429", 0)
            res[cmd + " by op"] = collections.Counter(label(e) for e in mine)
            first = "plan" if cmd == "up" else "finding-the-cluster"
            res[cmd + " phases"] = split_phases(mine, marks, start, end, first)
            if attempts != s["requests"]:
                print(f"note: {name} {cmd}: clusterctl logged {attempts} attempts, the simulator"
                      f" {s['requests']} requests", file=sys.stderr)
        errors = sim.errors()
        if errors:
            fail(res, f"simulator/agent errors ({len(errors)}): "
                 + "; ".join(json.dumps(e)[:600] for e in errors[:5]))
    except Exception as e:      # a broken case is reported with the others, not fatal
        fail(res, f"benchmark error: {e!r}")
    finally:
        sim.stop()
        mem.stop()
        res["memory peak"] = mem.total - mem.lowest
        res["memory added"] = mem.baseline - mem.lowest
        deadline = time.time() + 30
        while own_processes(case_dir) and time.time() < deadline:
            time.sleep(0.5)
        left = own_processes(case_dir)
        if left:
            raise SystemExit(f"droplet processes left after case {name}: {left}")
    return res


def check_provider(binary, tmp):
    """Refuse a build without the digitalocean provider (a shared target directory may hold
    another worktree's build): without a token, such a build says so, a good one asks for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITALOCEAN_", "CLUSTERCTL_"))}
    env.update(DIGITALOCEAN_API_URL="https://127.0.0.1:9", XDG_CONFIG_HOME=os.path.join(tmp, "no-config"),
               CLUSTERCTL_STATE_DIR=os.path.join(tmp, "no-state"))
    out = subprocess.run([binary, "up", "--provider", "digitalocean", "--region", "nyc3", "--allow-cidr",
                          "10.0.0.0/32", "--dry-run", "--output", "json"], env=env, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    if "DIGITALOCEAN_TOKEN" not in out.stdout + out.stderr:
        raise SystemExit(f"{binary} does not look like a build with the digitalocean provider:"
                         f" {(out.stdout + out.stderr).strip()[:500]}")


def fmt_counts(counts):
    return ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items()) if v)


def median_counts(counters):
    keys = set().union(*counters)
    return {k: statistics.median(c.get(k, 0) for c in counters) for k in keys}


def gib(n):
    return f"{n / 2**30:.1f} GiB"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--python", default=os.path.expanduser("~/.cache/clusterctl-test/venv-2026.8.0/bin/python"),
                   help="interpreter that runs the simulator and the droplets' Dask processes")
    p.add_argument("--sizes", default="1,10,50", help="worker counts, one case each")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--droplet-limit", type=int, default=100, help="the simulated account's droplet limit")
    p.add_argument("--rate-per-minute", type=int, default=0,
                   help="the simulator's per-minute limit (default: its own, 250 as DigitalOcean)")
    p.add_argument("--keep", metavar="DIR", help="keep each case's directory (simulator logs, API logs) under DIR")
    opts = p.parse_args()
    enter_sandbox()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    opts.clusterctl = os.path.abspath(opts.clusterctl)
    sizes = [int(x) for x in opts.sizes.split(",")]
    results = collections.defaultdict(list)
    if opts.keep:
        os.makedirs(opts.keep, exist_ok=True)
    failed = False
    tmp = tempfile.mkdtemp(prefix="do-bench-", dir=opts.keep)
    try:
        # A copy: a build into a shared target directory must not swap the binary mid-run.
        binary = os.path.join(tmp, "clusterctl")
        shutil.copy2(opts.clusterctl, binary)
        opts.clusterctl = binary
        check_provider(binary, tmp)
        for r in range(opts.rounds):
            for n in sizes:
                print(f"round {r + 1}: {n} worker(s): memory available {gib(available())},"
                      f" load {os.getloadavg()[0]:.2f}", file=sys.stderr)
                res = one_case(opts, tmp, f"{r}-{n}", n)
                results[n].append(res)
                print(f"round {r + 1}: {n} worker(s): up {res['up']:.2f} s, down {res['down']:.2f} s,"
                      f" processes gone {res['stopped']:.2f} s after down, {res['up requests']}+"
                      f"{res['down requests']} requests, peak memory in use {gib(res['memory peak'])}"
                      f" ({gib(res['memory added'])} above the start), address {res['address']}",
                      file=sys.stderr)
                if res["failure"]:
                    failed = True
                    print(f"FAILED: {n} worker(s): {res['failure']}", file=sys.stderr)
    finally:
        left = own_processes(tmp)
        for pid in left:       # only our simulator's children can work under tmp
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if left:
            print(f"killed processes left under {tmp}: {left}", file=sys.stderr)
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"rounds: {opts.rounds}; python: {opts.python}; cpus: {os.cpu_count()};"
          f" memory: {gib(meminfo()['MemTotal'])}; simulator: default timings,"
          f" --droplet-limit {opts.droplet_limit}"
          + (f", --rate-per-minute {opts.rate_per_minute}" if opts.rate_per_minute else ""))
    print()
    print("| workers | command | wall time (median) | each round | API requests | of which 429 |"
          " by operation |")
    print("|---|---|---|---|---|---|---|")
    for n, rs in results.items():
        for cmd in ("up", "down"):
            each = ", ".join(f"{x[cmd]:.2f}" for x in rs)
            print(f"| {n} | {cmd} | {statistics.median(x[cmd] for x in rs):.2f} s | {each}"
                  f" | {statistics.median(x[cmd + ' requests'] for x in rs):g}"
                  f" | {statistics.median(x[cmd + ' 429'] for x in rs):g}"
                  f" | {fmt_counts(median_counts([x[cmd + ' by op'] for x in rs]))} |")
    print()
    print("| workers | phase | wall time (median) | API requests | by operation |")
    print("|---|---|---|---|---|")
    for n, rs in results.items():
        for cmd in ("up", "down"):
            names = [ph for ph, _, _ in rs[0][cmd + " phases"]]
            for i, ph in enumerate(names):
                same = [x[cmd + " phases"][i] for x in rs if len(x[cmd + " phases"]) > i]
                counts = median_counts([c for _, _, c in same])
                title = f"{cmd}: {ph}"
                print(f"| {n} | {title} | {statistics.median(t for _, t, _ in same):.2f} s"
                      f" | {sum(counts.values()):g} | {fmt_counts(counts)} |")
    print()
    limit = opts.rate_per_minute or 250
    print(f"| workers | busiest 60 s (requests; limit {limit}) | droplet processes gone after `down` returned"
          " | memory in use at the peak (above the case's start) | load average at the start |")
    print("|---|---|---|---|---|")
    for n, rs in results.items():
        print(f"| {n} | {max(x['minute'] for x in rs)}"
              f" | {statistics.median(x['stopped'] for x in rs):.2f} s"
              f" | {gib(max(x['memory peak'] for x in rs))}"
              f" ({gib(max(x['memory added'] for x in rs))})"
              f" | {', '.join(format(x['load'], '.2f') for x in rs)} |")
    if failed:
        print()
        for n, rs in results.items():
            for x in rs:
                if x["failure"]:
                    print(f"FAILED, {n} worker(s): {x['failure']}")
        sys.exit(1)


if __name__ == "__main__":
    main()
