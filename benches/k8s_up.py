"""Kubernetes provider benchmark against the repo's API simulator (see docs/benchmarks.md).

One case per size of `--sizes` (default 1,3) plus one, each in a fresh simulator
(`tests/k8s/k8s_sim.py serve`, one node of 64 CPUs and 128 GiB), run one after another in the
same run (and round by round with `--rounds`):

- each size reached through the API server's port-forward, which is what clusterctl does by
  default from outside the cluster;
- the largest size with `--private`, where the client dials the Service's cluster IP directly.

Each case times `clusterctl up --provider kubernetes ... --timeout 180s` (TLS on, the default)
until it returns with the cluster ready, then `clusterctl down`. API requests come from the
simulator's request log (WORKDIR/sim-requests.jsonl: one line per request with method, path,
query and status) and are counted by verb (CREATE, GET, LIST, WATCH, PATCH, UPDATE, DELETE,
DELETECOLLECTION) and resource; port-forward WebSocket upgrades are counted on their own.
A request belongs to the command whose wall-clock interval contains its start time.

The kubelet runs pods only in a network namespace whose one interface is `lo` with 127/8 and
10/8 (pod IPs are 10.244.x, Service IPs 10.96.x), so the script re-runs itself under
`unshare --net` (root), as benches/fargate_up.py does. Each pod is a local Dask process
(~100 MB): cases run strictly one at a time, and after each the script checks that no pod
process is left.

Usage:  sudo PY benches/k8s_up.py --clusterctl target/debug/clusterctl [--python PY] [--rounds 1]
PY needs dask[distributed] and the simulator's modules (tornado, PyYAML, ...), as the venv that
tests/run.sh builds has.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sandbox import ReadyProcess, enter_sandbox  # noqa: E402
SIM = os.path.join(HERE, "..", "tests", "k8s", "k8s_sim.py")



def cases(sizes):
    """(label, workers, extra `up` arguments): port-forward at every size, then direct
    (`--private`) at the largest."""
    out = [(f"port-forward, {n} worker{'s' if n > 1 else ''}", n, []) for n in sizes]
    out.append((f"direct (--private), {sizes[-1]} workers", sizes[-1], ["--private"]))
    return out


PORT_FORWARD = "port-forward WebSocket"


class Simulator(ReadyProcess):
    """One `k8s_sim.py serve` process with its own work directory and kubeconfig."""

    def __init__(self, python, workdir):
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        # One simulated node large enough for the largest case (1 CPU, 1 GiB per pod).
        super().__init__([python, SIM, "serve", "--workdir", workdir, "--python", python,
                          "--node-cpu", "64", "--node-memory", "128Gi",
                          "--kubeconfig-out", self.kubeconfig], workdir)

    def requests(self):
        path = os.path.join(self.workdir, "sim-requests.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def errors(self):
        path = os.path.join(self.workdir, "sim-errors.jsonl")
        if not os.path.exists(path):
            return ""
        with open(path) as fh:
            return fh.read().strip()


def classify(entry):
    """`VERB resource[/subresource]` of one logged request (and ` (STATUS)` when it failed)."""
    method, path, query = entry.get("method", "?"), entry.get("path", ""), entry.get("query") or {}
    if path.endswith("/portforward") and entry.get("upgrade"):
        return PORT_FORWARD
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        rest = []
    if not rest:
        label = f"{method} discovery ({path or '/'})"
    else:
        if rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]                 # a namespaced resource
        resource, named = rest[0], len(rest) >= 2
        if len(rest) >= 3:
            resource += "/" + rest[2]
        watch = any(v in ("true", "1") for v in query.get("watch", []))
        verb = {
            "GET": "WATCH" if watch else ("GET" if named else "LIST"),
            "POST": "CREATE",
            "PUT": "UPDATE",
            "PATCH": "PATCH",
            "DELETE": "DELETE" if named else "DELETECOLLECTION",
        }.get(method, method)
        label = f"{verb} {resource}"
    status = entry.get("status")
    if isinstance(status, int) and status >= 400:
        label += f" ({status})"
    return label


def run(binary, args, env):
    start = time.time()
    out = subprocess.run([binary, *args, "--output", "json", "--quiet"], env=env, capture_output=True,
                         text=True)
    end = time.time()
    if out.returncode != 0:
        raise SystemExit(f"clusterctl {args[0]} failed ({out.returncode}): {out.stderr}")
    return start, end, json.loads(out.stdout)


def leftovers(tmp):
    """Pod processes still alive: any `clusterctl-node`, and `-m dask` ones working under tmp."""
    found = []
    for pattern in ("clusterctl-node", "-m dask"):
        out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
        for pid in out.stdout.split():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if pattern == "clusterctl-node" or cwd.startswith(tmp):
                found.append(pid)
    return sorted(set(found))


def one_case(opts, tmp, index, workers, extra):
    name = f"b{workers}" + ("p" if "--private" in extra else "")
    case_dir = os.path.join(tmp, f"case-{index}")
    sim = Simulator(opts.python, os.path.join(case_dir, "sim"))
    try:
        env = dict(os.environ, KUBECONFIG=sim.kubeconfig,
                   CLUSTERCTL_STATE_DIR=os.path.join(case_dir, "state"),
                   CLUSTERCTL_CACHE_DIR=os.path.join(case_dir, "cache"),
                   CLUSTERCTL_PYTHON=opts.python)
        for var in ("CLUSTERCTL_CONFIG", "CLUSTERCTL_PROVIDER", "CLUSTERCTL_OUTPUT",
                    "CLUSTERCTL_KUBE_CONTEXT", "CLUSTERCTL_NAMESPACE", "KUBERNETES_SERVICE_HOST"):
            env.pop(var, None)
        up_args = ["up", "--provider", "kubernetes", "--name", name, "--workers", str(workers),
                   "--scheduler-cpus", "1", "--scheduler-memory", "1GiB",
                   "--worker-cpus", "1", "--worker-memory", "1GiB", "--timeout", "180s", *extra]
        try:
            up_start, up_end, up = run(opts.clusterctl, up_args, env)
        except SystemExit:
            subprocess.run([opts.clusterctl, "down", name, "--quiet"], env=env, capture_output=True)
            raise
        if up.get("ready") is not True or up.get("workers", {}).get("joined") != workers:
            raise SystemExit(f"up did not report {workers} joined workers: {up}")
        down_start, down_end, _ = run(opts.clusterctl, ["down", name], env)
        time.sleep(1)           # let long requests that ended with the CLI reach the log
        counts = {"up": collections.Counter(), "down": collections.Counter()}
        for entry in sim.requests():
            t = entry.get("time", 0)
            if up_start - 0.01 <= t <= up_end + 0.01:
                counts["up"][classify(entry)] += 1
            elif down_start - 0.01 <= t <= down_end + 0.01:
                counts["down"][classify(entry)] += 1
        errors = sim.errors()
        if errors:
            raise SystemExit(f"the simulator rejected requests or failed:\n{errors}")
        return {"up": up_end - up_start, "down": down_end - down_start,
                "address": up.get("scheduler_address"), **{f"{k} requests": v for k, v in counts.items()}}
    finally:
        sim.stop()
        deadline = time.time() + 30
        while leftovers(tmp) and time.time() < deadline:
            time.sleep(0.5)
        left = leftovers(tmp)
        if left:
            raise SystemExit(f"pod processes left after case {name}: {left}")


def median_counts(counters):
    keys = set().union(*counters)
    return {k: statistics.median(c.get(k, 0) for c in counters) for k in keys}


def fmt_counts(counts):
    def num(v):
        return f"{v:g}"
    pf = counts.get(PORT_FORWARD, 0)
    api = {k: v for k, v in counts.items() if k != PORT_FORWARD and v}
    text = ", ".join(f"{k} {num(v)}" for k, v in sorted(api.items(), key=lambda kv: (kv[0].split(" ", 1)[1], kv[0])))
    return num(sum(api.values())), num(pf), text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--python", default=os.path.expanduser("~/.cache/clusterctl-test/venv-2026.8.0/bin/python"),
                   help="interpreter that runs the simulator and the pods' Dask processes")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--keep", metavar="DIR", help="keep each case's simulator work directory under DIR")
    p.add_argument("--sizes", default="1,3", help="worker counts, comma-separated (e.g. 1,10,50)")
    opts = p.parse_args()
    sizes = sorted(int(n) for n in opts.sizes.split(","))
    CASES = cases(sizes)
    enter_sandbox()
    opts.clusterctl = os.path.abspath(opts.clusterctl)
    results = collections.defaultdict(list)
    if opts.keep:
        os.makedirs(opts.keep, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="k8s-bench-", dir=opts.keep) as tmp:
        for r in range(opts.rounds):
            for i, (label, workers, extra) in enumerate(CASES):
                res = one_case(opts, tmp, f"{r}-{i}", workers, extra)
                results[label].append(res)
                if opts.keep:
                    os.rename(os.path.join(tmp, f"case-{r}-{i}"), os.path.join(opts.keep, f"case-{r}-{i}"))
                print(f"round {r + 1}: {label}: up {res['up']:.2f} s, down {res['down']:.2f} s,"
                      f" address {res['address']}", file=sys.stderr)

    summary = {}
    for label, rs in results.items():
        summary[label] = {
            "up": statistics.median(r["up"] for r in rs),
            "down": statistics.median(r["down"] for r in rs),
            "up rounds": [r["up"] for r in rs],
            "down rounds": [r["down"] for r in rs],
            "up requests": median_counts([r["up requests"] for r in rs]),
            "down requests": median_counts([r["down requests"] for r in rs]),
        }

    print(f"rounds: {opts.rounds}; python: {opts.python}; cpus: {os.cpu_count()}")
    print()
    print("| case | command | wall time (median) | each round | API requests | port-forwards"
          " | by verb and resource |")
    print("|---|---|---|---|---|---|---|")
    for label, s in summary.items():
        for cmd in ("up", "down"):
            total, pf, text = fmt_counts(s[f"{cmd} requests"])
            each = ", ".join(f"{t:.2f}" for t in s[f"{cmd} rounds"])
            print(f"| {label} | {cmd} | {s[cmd]:.2f} s | {each} | {total} | {pf} | {text} |")
    print()

    def api_total(s, cmd):
        return sum(v for k, v in s[f"{cmd} requests"].items() if k != PORT_FORWARD)

    one, big, direct = summary[CASES[0][0]], summary[CASES[-2][0]], summary[CASES[-1][0]]
    print("| ratio | up wall time | down wall time | up API requests | down API requests |")
    print("|---|---|---|---|---|")
    for title, a, b in ((f"{sizes[-1]} workers / {sizes[0]} worker (port-forward)", big, one),
                        (f"port-forward / direct ({sizes[-1]} workers)", big, direct)):
        cells = [a["up"] / b["up"], a["down"] / b["down"],
                 api_total(a, "up") / max(api_total(b, "up"), 1),
                 api_total(a, "down") / max(api_total(b, "down"), 1)]
        print(f"| {title} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
