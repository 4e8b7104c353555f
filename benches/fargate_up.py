"""Fargate provider benchmark against the moto emulator (see docs/benchmarks.md).

For 1, 10 and 100 workers, each in a fresh moto server: `clusterctl up --provider fargate
--no-wait` (every resource created and every task started; Dask not awaited, since 100 Dask
processes do not fit this machine), then `clusterctl down` (stop the tasks, wait until stopped,
delete task definitions, parameters, roles, log group, security group and ECS cluster, verify).
Reports wall time and AWS API calls of each command, and of `up` per lifecycle phase, from the
SDK interceptor log (`CLUSTERCTL_API_LOG`, which also carries the phase marks).

moto gives tasks random 10.x addresses, so the script re-runs itself in a private network
namespace (`unshare --net`, root) where lo holds 127.0.0.0/8 and 10.0.0.0/8 and nothing else is
reachable, as the tests do.

Usage:  sudo python benches/fargate_up.py --clusterctl target/release/clusterctl [--sizes 1,10,100]
The Python running this script needs moto[server]==5.2.5 and boto3 (as tests/run.sh installs).
"""

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from moto_server import aws_env, start_moto  # noqa: E402
from sandbox import enter_sandbox  # noqa: E402

AGENT = os.path.join(HERE, "..", "tests", "aws", "ecs_agent.py")


def run(binary, args, env, api_log):
    if os.path.exists(api_log):
        os.remove(api_log)
    start = time.time()
    out = subprocess.run([binary, *args, "--output", "json", "--quiet"],
                         env=dict(env, CLUSTERCTL_API_LOG=api_log), capture_output=True, text=True)
    end = time.time()
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {out.stderr}")
    # Phases: "plan" until the first mark, then each marked phase until the next mark.
    phases = [["plan", start * 1000, collections.Counter()]]
    with open(api_log) as f:
        for line in f:
            ms, what = line.rstrip("\n").split(" ", 1)
            if what.startswith("phase:"):
                phases.append([what[len("phase:"):], float(ms), collections.Counter()])
            else:
                phases[-1][2][what] += 1
    timed = []
    for i, (name, begin, calls) in enumerate(phases):
        until = phases[i + 1][1] if i + 1 < len(phases) else end * 1000
        timed.append((name, (until - begin) / 1000, calls))
    total = collections.Counter()
    for _, _, c in timed:
        total.update(c)
    return end - start, total, timed


def fmt(calls):
    return ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(calls.items()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--sizes", default="1,10,100")
    opts = p.parse_args()
    enter_sandbox()
    binary = os.path.abspath(opts.clusterctl)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in opts.sizes.split(",")]:
            with open(os.path.join(tmp, f"moto-{n}.log"), "w") as log:
                moto, url = start_moto(log, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
                try:
                    env = aws_env(url, os.path.join(tmp, f"state-{n}"))
                    subprocess.run([sys.executable, AGENT, "setup", "--endpoint", url], env=env, check=True,
                                   capture_output=True, text=True)
                    name = f"bench-{n}"
                    api = os.path.join(tmp, "api.log")
                    up = run(binary, ["up", "--provider", "fargate", "--private", "--name", name, "--workers", str(n),
                                      "--no-wait"], env, api)
                    down = run(binary, ["down", name], env, api)
                    rows.append((n, up, down))
                finally:
                    moto.terminate()
                    moto.wait()

    print("| workers | command | wall time | API calls | by operation |")
    print("|---|---|---|---|---|")
    for n, up, down in rows:
        for cmd, (t, calls, _) in (("up --no-wait", up), ("down", down)):
            print(f"| {n} | {cmd} | {t:.2f} s | {sum(calls.values())} | {fmt(calls)} |")
    print()
    print("| workers | `up` phase | wall time | API calls | by operation |")
    print("|---|---|---|---|---|")
    for n, (_, _, phases), _ in rows:
        for name, t, calls in phases:
            print(f"| {n} | {name} | {t:.2f} s | {sum(calls.values())} | {fmt(calls)} |")


if __name__ == "__main__":
    main()
