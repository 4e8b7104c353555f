"""Azure provider benchmark against the repo's ARM simulator (see docs/benchmarks.md).

Owns the measurement of `clusterctl up` / `clusterctl down` with `--provider azure` against
`tests/azure/az_sim.py serve`: wall time and ARM requests per command and per lifecycle phase,
for 1, 10 and 50 workers, each in a fresh simulator, one case at a time (and round by round
with `--rounds`). The measurement and the tables are benches/do_up.py's (imported from it):

- per command: the phase `up`, then `down`, is marked through `POST /_sim/mark` before each
  command, and `GET /_sim/requests/summary` gives the counts by operation and by status (the
  simulator is the server, so it sees every attempt, throttled ones included);
- per lifecycle phase: clusterctl writes `<unix ms> phase:<phase>` into `CLUSTERCTL_API_LOG`
  when each phase begins; each request of the simulator's log goes to the phase begun when it
  arrived ("plan" before the first mark). Token requests to Entra ID count too.

Each case times `clusterctl up --provider azure --location eastus --workers N --allow-cidr
10.0.0.0/32 --timeout 600s` (TLS on, the default) until it returns with the cluster ready and
all N workers joined, then `clusterctl down`. The simulator keeps ARM's throttling buckets
(reads 250, writes/deletes 200 per principal) and its default timings (`--network-delay 0.3`,
`--vm-create-delay 1.0`, `--rg-delete-delay 1.0`, `--rbac-delay 1.0`); its quotas are raised
(`--vcpu-quota`/`--family-quota` 1000) because 50 workers of 4 vCPUs exceed the defaults, as
they would a new subscription's.

VMs boot for real as local Dask processes (a nanny and a worker each, ~100 MB) on 10.x
addresses, so the script re-runs itself under `unshare --net` (root) with `lo` holding
127.0.0.0/8 and 10.0.0.0/8, where the simulator also serves IMDS on 169.254.169.254. After
`down` it checks that nothing tagged for the cluster is left and that no VM process runs; on
exit (also on SIGINT/SIGTERM) it stops the simulator and whatever it started.

Usage:  sudo PY benches/azure_up.py --clusterctl target/debug/clusterctl [--python PY]
            [--sizes 1,10,50] [--rounds 1] [--keep DIR]
"""

import collections
import json
import os
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import do_up  # noqa: E402
import restbench  # noqa: E402
from do_up import (MemoryWatch, Simulator, busiest_minute, fail,  # noqa: E402
                   own_processes, read_api_log, run, split_phases, wait_stopped)
from sandbox import ReadyProcess  # noqa: E402

SIM = os.path.join(HERE, "..", "tests", "azure", "az_sim.py")
SECRET = "azsim-client-secret-0123456789"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
SUBSCRIPTION = "00000000-0000-4000-8000-00000000c1c7"
QUOTA = ["--vcpu-quota", "1000", "--family-quota", "1000"]


class AzSimulator(Simulator):
    """One `az_sim.py serve` process with its own work directory, and its control API."""

    def __init__(self, python, workdir, extra):   # pylint: disable=super-init-not-called
        ReadyProcess.__init__(self, [python, SIM, "serve", "--workdir", workdir, "--python", python,
                                     "--client-secret", SECRET, *extra], workdir, stop_grace=60)
        self.url, self.ca_file = self.ready["url"], self.ready["ca_file"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)


def nothing_left(inv, name):
    """What the simulator still holds of cluster `name`: tagged resources and groups, disks."""
    left = [f"{r['type']} {r['name']}" for r in inv["resources"]
            if r["tags"].get("clusterctl-cluster") == name]
    left += [f"resource group {g['name']}" for g in inv["resource_groups"]
             if g["tags"].get("clusterctl-cluster") == name]
    left += [f"disk {d['id']}" for d in inv["leftover_disks"]]
    return left


def one_case(opts, tmp, index, workers):
    name = f"bench{workers}"
    case_dir = os.path.join(tmp, f"case-{index}")
    res = {"workers": workers, "load": os.getloadavg()[0], "failure": None, "up": 0.0, "down": 0.0,
           "stopped": 0.0, "address": None, "minute": 0}
    for cmd in ("up", "down"):
        res.update({cmd + " requests": 0, cmd + " 429": 0, cmd + " by op": collections.Counter(),
                    cmd + " phases": []})
    mem = MemoryWatch()
    sim = AzSimulator(opts.python, os.path.join(case_dir, "sim"), QUOTA)
    try:
        os.makedirs(os.path.join(case_dir, "config"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AZURE_", "CLUSTERCTL_", "IDENTITY_", "MSI_"))}
        env.update(AZURE_RESOURCE_MANAGER_ENDPOINT=sim.url, AZURE_AUTHORITY_HOST=sim.url,
                   CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file, AZURE_TENANT_ID=TENANT,
                   AZURE_CLIENT_ID=CLIENT_ID, AZURE_CLIENT_SECRET=SECRET,
                   AZURE_SUBSCRIPTION_ID=SUBSCRIPTION,
                   XDG_CONFIG_HOME=os.path.join(case_dir, "config"),
                   CLUSTERCTL_STATE_DIR=os.path.join(case_dir, "state"),
                   CLUSTERCTL_CACHE_DIR=os.path.join(case_dir, "cache"))
        up_args = ["up", "--provider", "azure", "--location", "eastus", "--name", name,
                   "--workers", str(workers), "--allow-cidr", "10.0.0.0/32", "--timeout", "600s"]
        logs = {cmd: os.path.join(case_dir, f"api-{cmd}.log") for cmd in ("up", "down")}
        spans = {}
        for cmd, args in (("up", up_args), ("down", ["down", name])):
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
        sim.mark(None)
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
            res[cmd + " by op"] = collections.Counter(do_up.label(e) for e in mine)
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
            raise SystemExit(f"VM processes left after case {name}: {left}")
    return res


def check_provider(binary):
    """Refuse a build without the azure provider (a shared target directory may hold another
    worktree's build)."""
    out = subprocess.run([binary, "up", "--help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if "--subscription" not in out.stdout:
        raise SystemExit(f"{binary} does not look like a build with the azure provider")


def main():
    opts = restbench.parse(__doc__, "1,10,50")
    results, failed = restbench.run_cases(opts, "azure-bench-", check_provider, one_case)
    restbench.print_tables(opts, results, QUOTA, "ARM", "429", "of which 429")
    restbench.exit_on_failures(results, failed)


if __name__ == "__main__":
    main()
