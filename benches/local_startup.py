"""Side-by-side startup benchmark for the local provider (see docs/benchmarks.md).

Measures in one run, interleaving the contenders round by round so that machine noise hits all
of them alike:

  * time-to-ready of `clusterctl up --provider local` (the command returns only once the
    scheduler's /health answers and all workers joined) with 1 and 4 workers, plain TCP and TLS;
  * time-to-ready of Python's `distributed.LocalCluster(processes=True)` with the same number
    of workers, until a client sees them all (`Client.wait_for_workers`);
  * the CLI's cold start: `clusterctl --version` and `clusterctl list` with no clusters.

With --baseline OTHER_BINARY (e.g. a build of the previous commit), that binary's `up` is measured
in the same rounds too (TCP), so a change is compared before/after in one run.

Usage:  python benches/local_startup.py --clusterctl target/release/clusterctl [--rounds 5]
            [--baseline /path/to/old/clusterctl]
The Python running this script must have dask[distributed] installed; it is also the cluster's
runtime (passed to clusterctl with --python) so both sides run the same Dask.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def clusterctl_up(binary, python, workers, tls, state):
    env = dict(os.environ, CLUSTERCTL_STATE_DIR=state, CLUSTERCTL_PYTHON=python)
    env.pop("CLUSTERCTL_API_LOG", None)
    env.pop("CLUSTERCTL_CONFIG", None)
    name = f"bench-{workers}-{'tls' if tls else 'tcp'}"
    args = [binary, "up", "--workers", str(workers), "--name", name, "--output", "json", "--quiet"]
    args.append("--tls" if tls else "--no-tls")
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"clusterctl up failed: {out.stderr}")
    joined = json.loads(out.stdout)["workers"]["joined"]
    assert joined == workers, out.stdout
    subprocess.run([binary, "down", name, "--quiet"], env=env, check=True, capture_output=True)
    return elapsed


LOCALCLUSTER = """
import sys
from distributed import Client, LocalCluster
n = int(sys.argv[1])
cluster = LocalCluster(n_workers=n, processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1")
client = Client(cluster)
client.wait_for_workers(n)
print("ready", flush=True)
client.close()
cluster.close()
"""


def localcluster_up(python, workers):
    # A fresh interpreter each time, timed from its start until it prints "ready": the same span
    # a user waits for, as `clusterctl up` is timed from its start until it returns. Closing the
    # cluster is not timed.
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-c", LOCALCLUSTER, str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    _, err = proc.communicate()
    if line.strip() != "ready" or proc.returncode != 0:
        raise SystemExit(f"LocalCluster failed: {err}")
    return elapsed


def cold_start(binary, args, state):
    env = dict(os.environ, CLUSTERCTL_STATE_DIR=state)
    start = time.perf_counter()
    subprocess.run([binary, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--baseline", help="another clusterctl binary to time alongside (before/after)")
    opts = p.parse_args()
    python = sys.executable
    binary = os.path.abspath(opts.clusterctl)
    baseline = os.path.abspath(opts.baseline) if opts.baseline else None
    results = {}

    def record(key, value):
        results.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory() as state:
        for _ in range(opts.rounds):
            for workers in (1, 4):
                record(f"clusterctl up, {workers} worker(s), tcp", clusterctl_up(binary, python, workers, False, state))
                record(f"LocalCluster, {workers} worker(s)", localcluster_up(python, workers))
                record(f"clusterctl up, {workers} worker(s), tls", clusterctl_up(binary, python, workers, True, state))
                if baseline:
                    record(f"baseline up, {workers} worker(s), tcp", clusterctl_up(baseline, python, workers, False, state))
            for _ in range(5):
                record("clusterctl --version", cold_start(binary, ["--version"], state))
                record("clusterctl list (no clusters)", cold_start(binary, ["list"], state))

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"rounds: {opts.rounds}; python: {python}; cpus: {os.cpu_count()}")
    print()
    print("| measurement | median | min | max | samples |")
    print("|---|---|---|---|---|")
    for k, v in results.items():
        print(f"| {k} | {med[k]:.3f} s | {min(v):.3f} s | {max(v):.3f} s | {len(v)} |")
    print()
    print("| ratio (median time-to-ready) | value |")
    print("|---|---|")
    for workers in (1, 4):
        lc = med[f"LocalCluster, {workers} worker(s)"]
        for proto in ("tcp", "tls"):
            cc = med[f"clusterctl up, {workers} worker(s), {proto}"]
            print(f"| clusterctl ({proto}) / LocalCluster, {workers} worker(s) | {cc / lc:.2f} |")
        if baseline:
            base = med[f"baseline up, {workers} worker(s), tcp"]
            print(f"| baseline (tcp) / LocalCluster, {workers} worker(s) | {base / lc:.2f} |")


if __name__ == "__main__":
    main()
