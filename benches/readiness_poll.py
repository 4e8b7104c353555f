"""Readiness polling benchmark (issue 11): the API requests clusterctl makes during a 60-second
readiness wait of a cluster that never becomes ready, per provider, with 1 and 10 workers.

For each provider and size, in a fresh emulator or simulator: `clusterctl up --no-wait --timeout
60s` (the cluster is created; its record keeps the timeout), then `clusterctl wait NAME`, which
waits 60 s for readiness and, the deadline passed, shows the log tails and tears the cluster down.
The nodes never run Dask: every node's Python is a stand-in (written by this script) that answers
the interpreter probes (`-c` scripts naming `distributed`) with the real Python and sleeps for
anything else (the VM boot launcher of tests/vmboot, `python -m dask ...` of pods and of local
nodes; the local provider's launcher is refused, so it starts nodes one by one). The platforms
list the nodes alive for the whole wait; the scheduler's dashboard never answers.

- local: the process table (each scan logged as `proc:scan` in `CLUSTERCTL_API_LOG`);
- aws (EC2) and fargate: moto with no boot agent (its instances and tasks stay running);
- kubernetes: tests/k8s/k8s_sim.py (pods run the stand-in);
- digitalocean, azure, gcp: their simkit simulators (droplets/VMs/instances boot the stand-in).

Requests are counted from the first `waiting for the scheduler` mark in `CLUSTERCTL_API_LOG` for
60 s (the wait); what `wait` does after its deadline (the log tails, the teardown) is not counted.
The AWS SDK's log names each call; the REST and Kubernetes requests are named from the
simulators' own request logs (by operation id, or verb and resource), matched by time.

The providers run side by side (one thread each, sizes one after another), in one private network
namespace (`unshare --net`, root), as the other benchmarks do.

Usage:  sudo PY benches/readiness_poll.py --clusterctl target/debug/clusterctl
            [--providers local,aws,fargate,kubernetes,digitalocean,azure,gcp] [--sizes 1,10]
PY is the test venv's Python (dask 2026.8.0, moto[server]==5.2.5, boto3, the simulators' needs).
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sandbox import enter_sandbox  # noqa: E402

WAIT_S = 60
PROVIDERS = ["local", "aws", "fargate", "kubernetes", "digitalocean", "azure", "gcp"]

STAND_IN = """#!/bin/sh
# A node's Python that never runs Dask: interpreter probes go to the real Python, the local
# launcher is refused (nodes are then started one by one), anything else sleeps.
case "$*" in
  *find_spec*|*distributed.__version__*) exec {real} "$@" ;;
esac
if [ "$1" = "-c" ]; then exit 3; fi
exec sleep 3600
"""


def write_stand_in(tmp):
    path = os.path.join(tmp, "python-never-ready")
    with open(path, "w") as fh:
        fh.write(STAND_IN.format(real=sys.executable))
    os.chmod(path, 0o755)
    return path


def clean_env(env, prefixes):
    return {k: v for k, v in env.items() if not k.startswith(prefixes)}


def run(binary, args, env, api_log, timeout):
    out = subprocess.run([binary, *args, "--output", "json", "--quiet"], env=dict(env, CLUSTERCTL_API_LOG=api_log),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def read_api_log(path):
    """([(phase, unix s)], [(unix s, call)])."""
    marks, calls = [], []
    with open(path) as fh:
        for line in fh:
            ms, what = line.rstrip("\n").split(" ", 1)
            if what.startswith("phase:"):
                marks.append((what[len("phase:"):], int(ms) / 1000))
            else:
                calls.append((int(ms) / 1000, what))
    return marks, calls


def jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --- the platforms: each returns (env, `up` flags, requests(since, until) -> Counter, stop) ---

def sdk_requests(api_log):
    def requests(since, until):
        _, calls = read_api_log(api_log)
        return collections.Counter(c.split(":", 1)[1] if ":" in c else c for t, c in calls if since <= t < until)
    return requests


def local_platform(opts, case, api_log):
    env = clean_env(os.environ, ("CLUSTERCTL_",))
    env.update(CLUSTERCTL_STATE_DIR=os.path.join(case, "state"), CLUSTERCTL_CACHE_DIR=os.path.join(case, "cache"))
    return env, ["--provider", "local", "--python", opts.stand_in], sdk_requests(api_log), lambda: None


def moto_platform(kind):
    def start(opts, case, api_log):
        from moto_server import aws_env, start_moto
        log = open(os.path.join(case, "moto.log"), "w")
        if kind == "aws":
            moto, url = start_moto(log, MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true",
                                   MOTO_ENABLE_AMI_VALIDATION="true")
        else:
            moto, url = start_moto(log, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
        env = aws_env(url, os.path.join(case, "state"))
        agent = os.path.join(HERE, "..", "tests", "aws", "ec2_agent.py" if kind == "aws" else "ecs_agent.py")
        setup = subprocess.run([sys.executable, agent, "setup", "--endpoint", url], env=env, check=True,
                               capture_output=True, text=True).stdout
        if kind == "aws":
            s = json.loads(setup)
            flags = ["--provider", "aws", "--private", "--subnet", ",".join(s["subnet_ids"]), "--ami", s["ami_id"]]
        else:
            flags = ["--provider", "fargate", "--private"]

        def stop():
            moto.terminate()
            moto.wait()
            log.close()
        return env, flags, sdk_requests(api_log), stop
    return start


def kubernetes_platform(opts, case, api_log):
    import k8s_up
    sim = k8s_up.Simulator.__new__(k8s_up.Simulator)
    sim.kubeconfig = os.path.join(case, "sim", "kubeconfig")
    from sandbox import ReadyProcess
    ReadyProcess.__init__(sim, [sys.executable, k8s_up.SIM, "serve", "--workdir", os.path.join(case, "sim"),
                                "--python", opts.stand_in, "--node-cpu", "64", "--node-memory", "128Gi",
                                "--kubeconfig-out", sim.kubeconfig], os.path.join(case, "sim"))
    env = clean_env(os.environ, ("CLUSTERCTL_", "KUBECONFIG"))
    env.update(KUBECONFIG=sim.kubeconfig, CLUSTERCTL_STATE_DIR=os.path.join(case, "state"),
               CLUSTERCTL_CACHE_DIR=os.path.join(case, "cache"))
    flags = ["--provider", "kubernetes", "--scheduler-cpus", "1", "--scheduler-memory", "1GiB",
             "--worker-cpus", "1", "--worker-memory", "1GiB"]

    def requests(since, until):
        return collections.Counter(k8s_up.classify(e) for e in sim.requests() if since <= e.get("time", 0) < until)
    return env, flags, requests, sim.stop


def simkit(cls, sim_script, workdir, extra):
    """A simkit simulator of `cls` (do_up.Simulator's kind) run by this Python, whose nodes run
    the stand-in."""
    import ssl
    from sandbox import ReadyProcess
    sim = cls.__new__(cls)
    ReadyProcess.__init__(sim, [sys.executable, sim_script, "serve", "--workdir", workdir, *extra], workdir,
                          stop_grace=60)
    sim.url, sim.ca_file = sim.ready["url"], sim.ready["ca_file"]
    sim.credentials_file = sim.ready.get("credentials_file")
    sim.ssl = ssl.create_default_context(cafile=sim.ca_file)
    return sim


def simkit_requests(sim):
    from do_up import label

    def requests(since, until):
        return collections.Counter(label(e) for e in sim.requests() if since <= e["time"] < until)
    return requests


def digitalocean_platform(opts, case, api_log):
    import do_up
    sim = simkit(do_up.Simulator, do_up.SIM, os.path.join(case, "sim"),
                 ["--python", opts.stand_in, "--token", do_up.TOKEN])
    os.makedirs(os.path.join(case, "config"))
    env = clean_env(os.environ, ("CLUSTERCTL_", "DIGITALOCEAN_"))
    env.update(DIGITALOCEAN_API_URL=sim.url, CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file, DIGITALOCEAN_TOKEN=do_up.TOKEN,
               XDG_CONFIG_HOME=os.path.join(case, "config"), CLUSTERCTL_STATE_DIR=os.path.join(case, "state"),
               CLUSTERCTL_CACHE_DIR=os.path.join(case, "cache"))
    flags = ["--provider", "digitalocean", "--region", "nyc3", "--allow-cidr", "10.0.0.0/32"]
    return env, flags, simkit_requests(sim), sim.stop


def azure_platform(opts, case, api_log):
    import azure_up as az
    sim = simkit(az.AzSimulator, az.SIM, os.path.join(case, "sim"),
                 ["--python", opts.stand_in, "--client-secret", az.SECRET, *az.QUOTA])
    os.makedirs(os.path.join(case, "config"))
    env = clean_env(os.environ, ("AZURE_", "CLUSTERCTL_", "IDENTITY_", "MSI_"))
    env.update(AZURE_RESOURCE_MANAGER_ENDPOINT=sim.url, AZURE_AUTHORITY_HOST=sim.url,
               CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file, AZURE_TENANT_ID=az.TENANT, AZURE_CLIENT_ID=az.CLIENT_ID,
               AZURE_CLIENT_SECRET=az.SECRET, AZURE_SUBSCRIPTION_ID=az.SUBSCRIPTION,
               XDG_CONFIG_HOME=os.path.join(case, "config"), CLUSTERCTL_STATE_DIR=os.path.join(case, "state"),
               CLUSTERCTL_CACHE_DIR=os.path.join(case, "cache"))
    flags = ["--provider", "azure", "--location", "eastus", "--allow-cidr", "10.0.0.0/32"]
    return env, flags, simkit_requests(sim), sim.stop


def gcp_platform(opts, case, api_log):
    import gcp_up as g
    sim = simkit(g.GceSimulator, g.SIM, os.path.join(case, "sim"),
                 ["--python", opts.stand_in, "--project", g.PROJECT, *g.QUOTA])
    for d in ("config", "gcloud"):
        os.makedirs(os.path.join(case, d))
    env = clean_env(os.environ, ("GOOGLE_", "CLOUDSDK_", "CLUSTERCTL_", "GCE_"))
    env.update(CLUSTERCTL_GCP_ENDPOINT=sim.url, CLUSTERCTL_EXTRA_CA_FILE=sim.ca_file,
               GOOGLE_APPLICATION_CREDENTIALS=sim.credentials_file, GOOGLE_CLOUD_PROJECT=g.PROJECT,
               CLOUDSDK_CONFIG=os.path.join(case, "gcloud"), XDG_CONFIG_HOME=os.path.join(case, "config"),
               CLUSTERCTL_STATE_DIR=os.path.join(case, "state"), CLUSTERCTL_CACHE_DIR=os.path.join(case, "cache"))
    flags = ["--provider", "gcp", "--zone", g.ZONE, "--allow-cidr", "10.0.0.0/32"]
    return env, flags, simkit_requests(sim), sim.stop


PLATFORMS = {"local": local_platform, "aws": moto_platform("aws"), "fargate": moto_platform("fargate"),
             "kubernetes": kubernetes_platform, "digitalocean": digitalocean_platform, "azure": azure_platform,
             "gcp": gcp_platform}


def one_case(opts, tmp, provider, workers):
    case = os.path.join(tmp, f"{provider}-{workers}")
    os.makedirs(case)
    api_log = os.path.join(case, "api.log")
    env, flags, requests, stop = PLATFORMS[provider](opts, case, api_log)
    name = f"poll{workers}"
    try:
        code, out, err = run(opts.clusterctl, ["up", "--name", name, "--workers", str(workers), "--no-wait",
                                               "--timeout", f"{WAIT_S}s", *flags], env, api_log, 600)
        if code != 0:
            raise RuntimeError(f"up --no-wait exited {code}: {err.strip()[-1500:]}")
        started = time.time()
        code, out, err = run(opts.clusterctl, ["wait", name], env, api_log, WAIT_S + 600)
        ended = time.time()
        with open(os.path.join(case, "wait.out"), "w") as fh:
            fh.write(f"exit {code}\n{out}\n--- stderr\n{err}")
        answer = json.loads(out or err or "{}") if (out or err).strip().startswith("{") else {}
        kind = (answer.get("error") or {}).get("kind") if isinstance(answer.get("error"), dict) else None
        if code == 0:
            raise RuntimeError(f"wait succeeded: the cluster was meant never to be ready: {out}")
        marks, _ = read_api_log(api_log)
        waits = [t for p, t in marks if p == "waiting-for-the-scheduler" and t >= started]
        if not waits:
            raise RuntimeError(f"no waiting mark in {api_log}; wait said: {err.strip()[-1500:]}")
        time.sleep(1)  # requests that were in flight reach the simulator's log
        since = waits[0]
        counts = requests(since, since + WAIT_S)
        timed_out = "tim" in (err + out).lower()
        return {"requests": counts, "wall": ended - started, "exit": code, "kind": kind, "timed out": timed_out,
                "error": None}
    finally:
        # `wait` tore the cluster down after its deadline; make sure nothing of it is left running.
        subprocess.run([opts.clusterctl, "down", name, "--quiet"], env=env, capture_output=True, timeout=600)
        stop()


LISTING = {
    "local": ("scan",),
    "aws": ("DescribeInstances",),
    "fargate": ("ListTasks",),
    "kubernetes": ("LIST pods",),
    "digitalocean": ("droplets_list",),
    "azure": ("VirtualMachines_List",),
    "gcp": ("compute.instances.aggregatedList",),
}


def listings(provider, counts):
    """How many node listings the counts hold (Fargate's listing is two ListTasks: running and
    stopped tasks)."""
    n = sum(v for k, v in counts.items() if k in LISTING[provider])
    return n / 2 if provider == "fargate" else n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--providers", default=",".join(PROVIDERS))
    p.add_argument("--sizes", default="1,10")
    p.add_argument("--keep", metavar="DIR", help="keep every case's directory under DIR")
    opts = p.parse_args()
    enter_sandbox()
    if opts.keep:
        os.makedirs(opts.keep, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="readiness-poll-", dir=opts.keep)
    binary = os.path.join(tmp, "clusterctl")
    shutil.copy2(os.path.abspath(opts.clusterctl), binary)
    opts.clusterctl = binary
    opts.stand_in = write_stand_in(tmp)
    providers = opts.providers.split(",")
    sizes = [int(s) for s in opts.sizes.split(",")]
    results = {}

    def provider_thread(provider):
        for n in sizes:
            try:
                results[(provider, n)] = one_case(opts, tmp, provider, n)
            except Exception as e:  # noqa: BLE001 -- reported in the table, the run goes on
                traceback.print_exc()
                results[(provider, n)] = {"error": str(e)[-600:]}
            print(f"{provider} {n}: done", file=sys.stderr)

    threads = [threading.Thread(target=provider_thread, args=(pr,)) for pr in providers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not opts.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"wait: {WAIT_S} s; cpus: {os.cpu_count()}; providers side by side")
    print()
    print("| provider | workers | requests in the wait | listings | listings per minute | wait ended | by operation |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    for provider in providers:
        for n in sizes:
            r = results[(provider, n)]
            if r.get("error"):
                failed = True
                print(f"| {provider} | {n} | failed: {r['error']} | | | | |")
                continue
            c = r["requests"]
            ops = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            lst = listings(provider, c)
            ended = f"exit {r['exit']} after {r['wall']:.1f} s" + (" (timeout)" if r["timed out"] else "")
            print(f"| {provider} | {n} | {sum(c.values())} | {lst:g} | {lst * 60 / WAIT_S:g} | {ended} | {ops} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
