"""EC2 provider benchmark against the moto emulator (see docs/benchmarks.md).

For 1, 10 and 200 workers: `clusterctl up --provider aws --no-wait` (every resource created,
Dask not awaited: moto boots nothing, and 200 Dask processes do not fit this machine), then
`clusterctl down` (terminate, wait until terminated, delete the security group, verify). Reports
the wall time of each command and the AWS API calls it made, per operation, from the SDK
interceptor log (`CLUSTERCTL_API_LOG`). Every size runs in a fresh moto server.

Usage:  python benches/aws_up.py --clusterctl target/release/clusterctl [--sizes 1,10,200]
The Python running this script needs moto[server]==5.2.5 and boto3 (as tests/run.sh installs).
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from moto_server import aws_env, start_moto  # noqa: E402

AGENT = os.path.join(HERE, "..", "tests", "aws", "ec2_agent.py")


def run(binary, args, env, api_log):
    if os.path.exists(api_log):
        os.remove(api_log)
    start = time.perf_counter()
    out = subprocess.run([binary, *args, "--output", "json", "--quiet"], env=dict(env, CLUSTERCTL_API_LOG=api_log), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {out.stderr}")
    calls = collections.Counter()
    with open(api_log) as f:
        for line in f:
            what = line.rstrip("\n").split(" ", 1)[1]
            if not what.startswith("phase:"):  # the CLI's phase marks are not API calls
                calls[what] += 1
    return elapsed, calls


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--sizes", default="1,10,200")
    opts = p.parse_args()
    binary = os.path.abspath(opts.clusterctl)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in opts.sizes.split(",")]:
            with open(os.path.join(tmp, f"moto-{n}.log"), "w") as log:
                moto, url = start_moto(log, MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true", MOTO_ENABLE_AMI_VALIDATION="true")
                try:
                    env = aws_env(url, os.path.join(tmp, f"state-{n}"))
                    setup = json.loads(subprocess.run([sys.executable, AGENT, "setup", "--endpoint", url], env=env, check=True, capture_output=True, text=True).stdout)
                    name = f"bench-{n}"
                    common = ["--provider", "aws", "--private", "--subnet", ",".join(setup["subnet_ids"]), "--ami", setup["ami_id"]]
                    up_t, up_calls = run(binary, ["up", "--name", name, "--workers", str(n), "--no-wait", *common], env, os.path.join(tmp, "api.log"))
                    st_t, st_calls = run(binary, ["status", name], env, os.path.join(tmp, "api.log"))
                    down_t, down_calls = run(binary, ["down", name], env, os.path.join(tmp, "api.log"))
                    rows.append((n, up_t, up_calls, st_t, st_calls, down_t, down_calls))
                finally:
                    moto.terminate()
                    moto.wait()

    def fmt(calls):
        return ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(calls.items()))

    print("| workers | command | wall time | API calls | by operation |")
    print("|---|---|---|---|---|")
    for n, up_t, up_c, st_t, st_c, down_t, down_c in rows:
        for cmd, t, c in (("up --no-wait", up_t, up_c), ("status", st_t, st_c), ("down", down_t, down_c)):
            print(f"| {n} | {cmd} | {t:.2f} s | {sum(c.values())} | {fmt(c)} |")


if __name__ == "__main__":
    main()
