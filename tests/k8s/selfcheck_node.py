"""By-hand check of the simulator's node half (podspec, kubelet, netproxy, portforward).

    sudo ~/.cache/clusterctl-test/venv-2026.8.0/bin/python tests/k8s/selfcheck_node.py [--unit]

`--unit` runs only the pure podspec checks (no processes).  Otherwise it then re-runs itself
inside a fresh network namespace (`unshare -n`, lo up holding 10.0.0.0/8, root needed) and
drives an in-process Sim (store + Kubelet + NetProxy + a tornado server for the port-forward
handler): a scheduler pod, its Service and two workers shaped like clusterctl's, readiness,
/health through the clusterIP and a kube-rs-style WebSocket port-forward, a Dask computation,
logs, graceful deletion, the deadline, and each fault mode.  Plain asserts; about two minutes.
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from k8ssim import podspec  # noqa: E402

SCRIPT = "\n".join([
    "set -eu", "umask 077", "mkdir -p /etc/clusterctl",
    "left=$((CLUSTERCTL_EXPIRES - $(date +%s)))",
    '[ "$left" -gt 0 ] || exit 0',
    'exec timeout -k 30 "$((left + 60))" "$@"',
])
FILES = "/etc/clusterctl"
PRELOAD = ("import logging\nlogging.getLogger('distributed').info('clusterctl preload loaded')\n"
           "def dask_setup(scheduler):\n    pass\n")


def labels(name, role, node):
    return {"app.kubernetes.io/managed-by": "clusterctl", "app.kubernetes.io/name": "dask",
            "app.kubernetes.io/instance": name, "app.kubernetes.io/component": role,
            "clusterctl-managed": "true", "clusterctl-cluster": name,
            "clusterctl-expires": str(int(time.time()) + 3600), "clusterctl-protocol": "tcp",
            "clusterctl-role": role, "clusterctl-node": node}


def secret(name, files):
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
            "metadata": {"name": f"{name}-files", "labels": labels(name, "files", "files")},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}}


def pod(name, role, node, argv, *, image=None, expires=None, probe=True, deadline=3600,
        cpu="100m", memory="256Mi", restart="Never", items=None, extra_env=()):
    expires = int(time.time()) + 3600 if expires is None else expires
    env = [{"name": "CLUSTERCTL_CLUSTER", "value": name},
           {"name": "CLUSTERCTL_EXPIRES", "value": str(expires)},
           {"name": "DASK_DISTRIBUTED__ADMIN__TICK__LIMIT", "value": "30s"},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           *extra_env]
    c = {"name": "dask", "image": image or f"ghcr.io/dask/dask:{DV}-py3.12",
         "command": ["sh", "-c", SCRIPT, "clusterctl-node", "dask", role, *argv],
         "env": env,
         "ports": [{"name": "dask", "containerPort": 8786}, {"name": "dashboard",
                                                             "containerPort": 8787}],
         "resources": {"requests": {"cpu": cpu, "memory": memory},
                       "limits": {"cpu": cpu, "memory": memory}},
         "securityContext": {"allowPrivilegeEscalation": False,
                             "capabilities": {"drop": ["ALL"]}},
         "volumeMounts": [{"name": "clusterctl-files", "mountPath": FILES, "readOnly": True}]}
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/health", "port": "dashboard"},
                               "periodSeconds": 1, "timeoutSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{node}", "labels": labels(name, role, node)},
            "spec": {"restartPolicy": restart, "activeDeadlineSeconds": deadline,
                     "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                     "terminationGracePeriodSeconds": 5,
                     "containers": [c],
                     "volumes": [{"name": "clusterctl-files", "secret": {
                         "secretName": f"{name}-files", "defaultMode": 0o400,
                         "items": items or [{"key": "clusterctl_ttl.py",
                                             "path": "clusterctl_ttl.py", "mode": 0o444}]}}]}}


def scheduler_argv():
    return ["--host", "0.0.0.0", "--port", "8786", "--dashboard-address", "0.0.0.0:8787",
            "--preload", f"{FILES}/clusterctl_ttl.py"]


def worker_argv(address, n):
    return [address, "--host", "0.0.0.0", "--no-dashboard", "--dashboard-address", "0.0.0.0:0",
            "--death-timeout", "60s", "--no-nanny", "--name", f"worker-{n}", "--nthreads", "1",
            "--memory-limit", "256MiB"]


DV = None


# ---- unit checks ------------------------------------------------------------------------------

def unit():
    q = podspec.parse_quantity
    assert podspec.cpu_millis("500m") == 500 and podspec.cpu_millis("1") == 1000
    assert podspec.cpu_millis("0.25") == 250 and podspec.mem_bytes("4Gi") == 4 * 2 ** 30
    assert podspec.mem_bytes("4096Mi") == 4 * 2 ** 30 and podspec.mem_bytes("1e3") == 1000
    assert q("1.5k") == 1500
    e = podspec.expand
    env = {"A": "x", "B": "y"}
    assert e("$(A)-$(B)", env) == "x-y"
    assert e("$$(A)", env) == "$(A)" and e("$(C)", env) == "$(C)" and e("$A $", env) == "$A $"
    assert e("$(A", env) == "$(A" and e(SCRIPT, env) == SCRIPT
    assert podspec.check_image(f"ghcr.io/dask/dask:{DV}", DV) is None
    assert podspec.check_image(f"ghcr.io/dask/dask:{DV}-py3.11", DV) is None
    assert podspec.check_image("ghcr.io/dask/dask:1.0.0-py3.12", DV)
    assert podspec.check_image(f"docker.io/dask/dask:{DV}", DV)

    sec = secret("c1", {"clusterctl_ttl.py": PRELOAD, "ca.pem": "CA"})
    sec["metadata"]["namespace"] = "default"
    objs = {("Secret", "default", "c1-files"): sec}

    def lookup(kind, ns, name):
        return objs.get((kind, ns, name))

    p = pod("c1", "scheduler", "scheduler", scheduler_argv(),
            extra_env=[{"name": "GREETING", "value": "hi $(POD_NAME) $$(POD_NAME)"},
                       {"name": "PRELOAD", "value": f"{FILES}/clusterctl_ttl.py"},
                       {"name": "CA", "valueFrom": {"secretKeyRef": {"name": "c1-files",
                                                                     "key": "ca.pem"}}}])
    p["metadata"].update(namespace="default", uid="u1")
    p["spec"]["nodeName"] = "sim-node-1"
    assert podspec.pod_requests(p) == (100, 256 * 2 ** 20)
    assert podspec.qos_class(p) == "Guaranteed"
    plan = podspec.plan_pod(p, python="/py", pod_dir="/w/pods/default_c1-scheduler",
                            pod_ip="10.244.0.7", host_ip="10.0.0.1", lookup=lookup,
                            base_env={"PATH": "/bin"})
    root = "/w/pods/default_c1-scheduler/root"
    assert plan.argv == ["/py", "-m", "dask", "scheduler", "--host", "10.244.0.7", "--port",
                         "8786", "--dashboard-address", "10.244.0.7:8787", "--preload",
                         f"{root}/etc/clusterctl/clusterctl_ttl.py"], plan.argv
    assert plan.env["POD_NAME"] == "c1-scheduler" and plan.env["POD_IP"] == "10.244.0.7"
    assert plan.env["GREETING"] == "hi c1-scheduler $(POD_NAME)", plan.env["GREETING"]
    assert plan.env["PRELOAD"] == f"{root}/etc/clusterctl/clusterctl_ttl.py"
    assert plan.env["CA"] == "CA" and plan.env_sources["CA"] == "secret:c1-files/ca.pem"
    assert set(plan.env) >= {"PATH", "CLUSTERCTL_EXPIRES"} and "HOME" not in plan.env
    assert [(f[0], f[2]) for f in plan.files] == [(f"{root}/etc/clusterctl/clusterctl_ttl.py",
                                                   0o444)], plan.files
    assert plan.probes["readiness"].port == 8787 and plan.probes["readiness"].path == "/health"

    w = pod("c1", "worker", "worker-0", worker_argv("tcp://10.96.0.5:8786", 0), probe=False)
    w["metadata"].update(namespace="default", uid="u2")
    plan = podspec.plan_pod(w, python="/py", pod_dir="/w/p", pod_ip="10.244.0.8",
                            host_ip="10.0.0.1", lookup=lookup, base_env={})
    assert plan.argv[4:6] == ["tcp://10.96.0.5:8786", "--host"] and "10.244.0.8" in plan.argv

    def fails(pd, cls, text, lk=lookup):
        try:
            podspec.plan_pod(pd, python="/py", pod_dir="/w/p", pod_ip="10.244.0.9",
                             host_ip="10.0.0.1", lookup=lk, base_env={})
        except cls as e:
            assert text in e.message, e.message
            return e
        raise AssertionError(f"no {cls.__name__}")

    bad = json.loads(json.dumps(w))
    bad["spec"]["containers"][0]["command"][2] = SCRIPT.replace("umask 077", "umask 022")
    fails(bad, podspec.Unsupported, "umask")
    bad = json.loads(json.dumps(w))
    bad["spec"]["containers"][0]["command"] += ["--preload", "/opt/other.py"]
    fails(bad, podspec.Unsupported, "outside every volume mount")
    bad = json.loads(json.dumps(w))
    bad["spec"]["containers"][0]["command"] += ["--preload", f"{FILES}/missing.py"]
    fails(bad, podspec.Unsupported, "has no such file")
    bad = json.loads(json.dumps(w))
    bad["spec"]["hostNetwork"] = True
    fails(bad, podspec.Unsupported, "hostNetwork")
    e = fails(w, podspec.MountError, 'secret "c1-files" not found', lk=lambda *a: None)
    assert e.retry and not e.sim
    bad = json.loads(json.dumps(w))
    bad["spec"]["volumes"][0]["secret"]["items"][0]["key"] = "nope"
    fails(bad, podspec.MountError, "references non-existent secret key: nope")
    bad = json.loads(json.dumps(w))
    bad["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "c1-files", "key": "zz"}}})
    fails(bad, podspec.ConfigError, "couldn't find key zz in Secret default/c1-files")
    assert podspec.backstop(int(time.time()) - 5, time.time()) is None
    unit_dns(objs, w, fails)
    print("unit checks: ok", flush=True)


def unit_dns(objs, w, fails):
    """Cluster DNS: Service names in dialled addresses and env become clusterIPs."""
    from vmboot.common import Refusal
    from vmboot.dockerrun import translate_dask_args
    from k8ssim import clusterdns

    def svc(ns, name, cip, **spec):
        objs[("Service", ns, name)] = {"metadata": {"name": name, "namespace": ns},
                                       "spec": {"clusterIP": cip, **spec}}
    for ns in ("default", "other"):
        objs[("Namespace", None, ns)] = {"metadata": {"name": ns}}
    svc("default", "c1-scheduler", "10.96.0.5")
    svc("other", "o-sched", "10.96.0.9")
    svc("default", "headless", "None")
    svc("default", "ext", None, type="ExternalName", externalName="sched.example.com")
    lookup = lambda kind, ns, name: objs.get((kind, ns, name))  # noqa: E731

    def build(address, extra_env=(), contact=None):
        p = json.loads(json.dumps(w))
        c = p["spec"]["containers"][0]
        c["command"][c["command"].index("tcp://10.96.0.5:8786")] = address
        c["env"] += list(extra_env)
        if contact:
            c["command"] += ["--contact-address", contact]
        return p

    def plan(*a, **kw):
        p = build(*a, **kw)
        return p, podspec.plan_pod(p, python="/py", pod_dir="/w/p", pod_ip="10.244.0.8",
                                   host_ip="10.0.0.1", lookup=lookup, base_env={})
    for address, want, query in (
            ("tls://c1-scheduler.default.svc.cluster.local:8786", "tls://10.96.0.5:8786",
             "c1-scheduler.default.svc.cluster.local"),
            ("tls://C1-Scheduler.Default.svc.cluster.local.:8786", "tls://10.96.0.5:8786",
             "c1-scheduler.default.svc.cluster.local"),
            ("tcp://c1-scheduler.default.svc:8786", "tcp://10.96.0.5:8786",
             "c1-scheduler.default.svc.cluster.local"),
            ("c1-scheduler.default:8786", "10.96.0.5:8786",
             "c1-scheduler.default.svc.cluster.local"),
            ("tcp://c1-scheduler:8786", "tcp://10.96.0.5:8786",
             "c1-scheduler.default.svc.cluster.local"),
            ("tcp://o-sched.other:8786", "tcp://10.96.0.9:8786", "o-sched.other.svc.cluster.local"),
            ("tcp://10.96.0.5:8786", "tcp://10.96.0.5:8786", None)):
        _, pl = plan(address)
        assert pl.argv[4] == want, (address, pl.argv)
        if query is None:
            assert pl.dns == [], pl.dns
        else:
            assert pl.dns == [{"where": "dask worker scheduler address", "name": address.split(
                "//")[-1].rsplit(":", 1)[0], "answer": want.split("//")[-1].rsplit(":", 1)[0],
                "query": query, "source": f"Service {query.split('.')[1]}/{query.split('.')[0]}"}
            ], pl.dns
    # the operator's shape: env DASK_SCHEDULER_ADDRESS, the worker argv `$(DASK_...)`;
    # /etc/hosts: the pod's own hostname is its pod IP; other env values stay as written
    addr = "tcp://c1-scheduler.default.svc.cluster.local:8786"
    p, pl = plan("$(DASK_SCHEDULER_ADDRESS)", contact="tcp://c1-worker-0:9000", extra_env=[
        {"name": "DASK_SCHEDULER_ADDRESS", "value": addr},
        {"name": "HTTP_PROXY", "value": "proxy.example.com:3128"},
        {"name": "PEER", "value": "c1-scheduler"}])
    assert pl.argv[4] == "tcp://10.96.0.5:8786" and pl.argv[-2:] == [
        "--contact-address", "tcp://10.244.0.8:9000"], pl.argv
    assert pl.env["DASK_SCHEDULER_ADDRESS"] == "tcp://10.96.0.5:8786", pl.env
    assert pl.env["PEER"] == "c1-scheduler" and pl.env["POD_NAME"] == "c1-worker-0"
    assert pl.env["HTTP_PROXY"] == "proxy.example.com:3128"
    assert [(r["where"], r["answer"], r.get("source")) for r in pl.dns] == [
        ("dask worker --contact-address", "10.244.0.8", "/etc/hosts"),
        ("dask worker scheduler address", "10.96.0.5", "Service default/c1-scheduler"),
        ("env DASK_SCHEDULER_ADDRESS", "10.96.0.5", "Service default/c1-scheduler"),
        ("env HTTP_PROXY", "not simulated", None)], pl.dns
    assert "upstream" in pl.dns[3]["reason"], pl.dns[3]
    # an unknown cluster name is not guessed: NXDOMAIN, left for the process to fail on
    for address in ("tcp://o-sched:8786", "tcp://nope.default.svc.cluster.local:8786",
                    "tcp://nope.other:8786", "tcp://nope.default.svc:8786"):
        _, pl = plan(address)
        assert pl.argv[4] == address and pl.dns[0]["answer"] == "NXDOMAIN", pl.dns
        assert any("NXDOMAIN" in n for n in pl.notes), pl.notes
    p, pl = plan("tcp://o-sched:8786")
    resolver = pl.resolver
    svc("default", "o-sched", "10.96.0.11")
    assert [r["answer"] for r in clusterdns.now_answered(pl.dns, resolver)] == ["10.96.0.11"]
    del objs[("Service", "default", "o-sched")]
    # names the simulator cannot answer the way a cluster would
    for address, text in (("tcp://headless:8786", "is headless"),
                          ("tcp://ext.default.svc:8786", "is ExternalName"),
                          ("tcp://sched.example.com:8786", "upstream resolver"),
                          ("tcp://c1-scheduler.nons:8786", "upstream resolver"),
                          ("tcp://10-0-0-1.default.pod.cluster.local:8786", "pod A records")):
        fails(build(address), podspec.Unsupported, text, lk=lookup)
    fails(build("tcp://c1-scheduler:8786", extra_env=[
        {"name": "DASK_X", "value": "tls://sched.example.com:1"}]), podspec.Unsupported,
        "env DASK_X", lk=lookup)
    # the AWS agents' default: still IP literals only
    try:
        translate_dask_args("worker", ["tcp://c1-scheduler:8786", "--host", "0.0.0.0"],
                            "10.0.0.9", lambda v: v, podspec.NETWORKS)
        raise AssertionError("a name passed the AWS agents' address check")
    except Refusal as e:
        assert "is not [tcp://|tls://]IP:PORT" in str(e), e


def main():
    global DV
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", action="store_true")
    ap.add_argument("--inside", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    DV = subprocess.run([sys.executable, "-c", "import distributed; print(distributed.__version__)"],
                        capture_output=True, text=True, check=True).stdout.strip()
    if not args.inside:
        unit()
        if args.unit:
            return
        cmd = ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inside"]
        if args.keep:
            cmd.append("--keep")
        rc = subprocess.call(cmd)
        left = subprocess.run(["pgrep", "-f", "clusterctl-node|-m dask"], capture_output=True,
                              text=True).stdout.split()
        assert not left, f"stray processes: {left}"
        sys.exit(rc)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.0.0.0/8", "dev", "lo"], check=True)
    from selfcheck_node_e2e import e2e
    e2e(DV, args.keep)


if __name__ == "__main__":
    main()
