"""GCE provider benchmark against the repo's Compute Engine simulator (see docs/benchmarks.md).

Owns the measurement of `clusterctl up` / `clusterctl down` with `--provider gcp` against
`tests/gcp/gce_sim.py serve` (Compute, IAM, Secret Manager, the OAuth token endpoint and the
metadata server): wall time and API requests per command and per lifecycle phase, for 1, 10
and 100 workers, each in a fresh simulator, one case at a time (and round by round with
`--rounds`), and whether `up`'s request count stays the same whatever the number of workers.
The measurement and the tables are benches/do_up.py's and benches/azure_up.py's (imported):

- per command: the phase `up`, then `down`, is marked through `POST /_sim/mark` before each
  command, and `GET /_sim/requests/summary` gives the counts by operation (the discovery
  documents' method ids) and by status (the simulator is the server, so it sees every attempt,
  throttled ones included: Compute throttles with 403 `rateLimitExceeded`, faults with 429/503);
- per lifecycle phase: clusterctl writes `<unix ms> phase:<phase>` into `CLUSTERCTL_API_LOG`
  when each phase begins; each request of the simulator's log goes to the phase begun when it
  arrived ("plan" before the first mark). With a service-account key file google-cloud-auth
  signs its own JWTs, so clusterctl asks the token endpoint for nothing; the instances' key
  fetches at boot (`secretmanager...versions.access`, with the metadata server's token) reach
  the same API and are counted with `up` (clusterctl's own attempts are cross-checked).

Each case times `clusterctl up --provider gcp --zone us-central1-a --workers N --allow-cidr
10.0.0.0/32 --timeout 600s` (TLS on, the default; the nodes' keys in Secret Manager behind a
per-cluster service account) until it returns with the cluster ready and all N workers joined,
then `clusterctl down`. clusterctl reaches the simulator as tests/gcp_e2e.rs points it there:
`CLUSTERCTL_GCP_ENDPOINT` (the simulator's URL), `CLUSTERCTL_EXTRA_CA_FILE` (its CA),
`GOOGLE_APPLICATION_CREDENTIALS` (the service-account key file it issues, whose `token_uri` is
its own token endpoint) and `GOOGLE_CLOUD_PROJECT`. The simulator keeps its default timings
(`--op-pending 0.3`, `--op-delay 1.0`, `--delete-delay 1.0`, `--firewall-delay 0.5`,
`--sa-propagation 3`, `--iam-propagation 1`, `--secret-latest-lag 2`) and rate limits (1500
reads and 1500 writes per minute); its regional quotas are raised (`--quota CPUS=1000` etc.)
because 100 workers of 4 vCPUs exceed a new project's 24 CPUs and 24 instances.

Instances boot for real as local Dask processes (a nanny and a worker each, ~100 MB) on 10.x
addresses, so the script re-runs itself under `unshare --net` (root) with `lo` holding
127.0.0.0/8 and 10.0.0.0/8, where the simulator also serves the metadata server on
169.254.169.254. After `down` it checks that nothing of the cluster is left (instances,
firewall rules, secrets, the service account) and that no VM process runs; on exit (also on
SIGINT/SIGTERM) it stops the simulator and whatever it started.

Usage:  sudo PY benches/gcp_up.py --clusterctl target/debug/clusterctl [--python PY]
            [--sizes 1,10,100] [--rounds 1] [--keep DIR]
"""

import collections
import json
import os
import ssl
import statistics
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

SIM = os.path.join(HERE, "..", "tests", "gcp", "gce_sim.py")
PROJECT = "clusterctl-sim"
ZONE = "us-central1-a"
QUOTA = ["--quota", "CPUS=1000", "--quota", "INSTANCES=1000", "--quota", "SSD_TOTAL_GB=100000",
         "--quota", "DISKS_TOTAL_GB=100000"]
# The phases in which `up` only waits (readiness polls, which last as long as the boot does).
WAITING = ("waiting-for-the-scheduler", "waiting-for-workers-to-join")


class GceSimulator(Simulator):
    """One `gce_sim.py serve` process with its own work directory, and its control API."""

    def __init__(self, python, workdir, extra):   # pylint: disable=super-init-not-called
        ReadyProcess.__init__(self, [python, SIM, "serve", "--workdir", workdir, "--python", python,
                                     "--project", PROJECT, *extra], workdir, stop_grace=60)
        self.url, self.ca_file = self.ready["url"], self.ready["ca_file"]
        self.credentials_file = self.ready["credentials_file"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)


def nothing_left(inv, name):
    """What the simulator still holds of cluster `name`: labelled instances and secrets, its
    firewall rules and its service account."""
    left = [f"instance {i['name']}" for i in inv["instances"]
            if i["labels"].get("clusterctl-cluster") == name]
    left += [f"firewall {f['name']}" for f in inv["firewalls"]
             if f["name"] == f"clusterctl-{name}" or f["name"].startswith(f"clusterctl-{name}-")]
    left += [f"secret {s.get('name')}" for s in inv["secrets"]
             if (s.get("labels") or {}).get("clusterctl-cluster") == name]
    left += [f"service account {s['email']}" for s in inv["service_accounts"]
             if s["email"].startswith(f"clusterctl-{name}@")]
    return left


def one_case(opts, tmp, index, workers):
    name = f"bench{workers}"
    case_dir = os.path.join(tmp, f"case-{index}")
    res = {"workers": workers, "load": os.getloadavg()[0], "failure": None, "up": 0.0, "down": 0.0,
           "stopped": 0.0, "address": None, "minute": 0}
    for cmd in ("up", "down"):
        res.update({cmd + " requests": 0, cmd + " throttled": 0, cmd + " by op": collections.Counter(),
                    cmd + " phases": []})
    mem = MemoryWatch()
    sim = GceSimulator(opts.python, os.path.join(case_dir, "sim"), QUOTA)
    try:
        for d in ("config", "gcloud"):
            os.makedirs(os.path.join(case_dir, d))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GOOGLE_", "CLOUDSDK_", "CLUSTERCTL_", "GCE_"))}
        env.update(CLUSTERCTL_GCP_ENDPOINT=sim.url, CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file,
                   GOOGLE_APPLICATION_CREDENTIALS=sim.credentials_file,
                   GOOGLE_CLOUD_PROJECT=PROJECT, CLOUDSDK_CONFIG=os.path.join(case_dir, "gcloud"),
                   XDG_CONFIG_HOME=os.path.join(case_dir, "config"),
                   CLUSTERCTL_STATE_DIR=os.path.join(case_dir, "state"),
                   CLUSTERCTL_CACHE_DIR=os.path.join(case_dir, "cache"))
        up_args = ["up", "--provider", "gcp", "--zone", ZONE, "--name", name,
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
                elif not str(res["address"]).startswith("tls://"):
                    fail(res, f"up gave no TLS address: {res['address']}")
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
            res[cmd + " throttled"] = sum(1 for e in mine if throttled(e))
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


def throttled(entry):
    """A refusal to retry later: 429, 503, or Compute's 403 `rateLimitExceeded` (not the 403s of
    a service account that has not propagated yet)."""
    if entry.get("status") in (429, 503):
        return True
    reasons = [e.get("reason") for e in ((entry.get("error") or {}).get("error") or {}).get("errors", [])]
    return entry.get("status") == 403 and "rateLimitExceeded" in reasons


def check_provider(binary):
    """Refuse a build without the gcp provider (a shared target directory may hold another
    worktree's build)."""
    out = subprocess.run([binary, "up", "--help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if "--gcp-endpoint" not in out.stdout:
        raise SystemExit(f"{binary} does not look like a build with the gcp provider")


def up_without_waiting(res):
    """clusterctl's requests in `up` outside the phases that only wait for the boot (the
    instances' own key fetches, `versions.access`, left out wherever they fall)."""
    return sum(v for ph, _, c in res["up phases"] if ph not in WAITING
               for op, v in c.items() if not op.endswith("versions.access"))


def main():
    opts = restbench.parse(__doc__, "1,10,100")
    results, failed = restbench.run_cases(opts, "gcp-bench-", check_provider, one_case)
    restbench.print_tables(opts, results, QUOTA, "API", "throttled", "throttled (429, 503, 403 rateLimitExceeded)")
    # The claim: `up`'s requests do not grow with the workers (readiness polls aside, which
    # grow with how long the boot takes, not with how many instances there are).
    good = {n: [x for x in rs if not x["failure"]] for n, rs in results.items()}
    good = {n: rs for n, rs in good.items() if rs}
    if len(good) > 1:
        whole = {n: statistics.median(x["up requests"] for x in rs) for n, rs in good.items()}
        fixed = {n: statistics.median(up_without_waiting(x) for x in rs) for n, rs in good.items()}
        print()
        print("`up` requests by workers: "
              + ", ".join(f"{n}: {whole[n]:g} ({fixed[n]:g} outside the waits)" for n in good)
              + "; outside the waits "
              + ("the same for every size" if len(set(fixed.values())) == 1
                 else f"from {min(fixed.values()):g} to {max(fixed.values()):g}"))
    restbench.exit_on_failures(results, failed)


if __name__ == "__main__":
    main()
