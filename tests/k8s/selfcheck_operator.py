"""By-hand check of the simulator's DaskCluster operator with real Dask processes (root).

    sudo ~/.cache/clusterctl-test/venv-2026.8.0/bin/python tests/k8s/selfcheck_operator.py [--keep]

Re-runs itself in `unshare -n` (lo up holding 10.0.0.0/8) and drives an in-process Sim (store,
Kubelet with NetProxy, Operator): a DaskCluster whose pod template a Deployment refuses (the
operator makes nothing, a `rejected` sim error), then a clusterctl-shaped DaskCluster (owned by
a root ConfigMap; no TLS; the scheduler's HTTP API enabled) scaled 0 -> 2 -> 1: the worker the
scheduler retired is the pod deleted and the scheduler keeps one worker. Deleting the root then
removes the DaskCluster, its pods and Service through the garbage collector. Ends by asserting
an empty sim-errors.jsonl and no process left. Plain asserts; about a minute.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from k8ssim import polling  # noqa: E402

NS = "default"
SPECS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "specs", "kubernetes", "v1.35"))
ROUTES = str(["distributed.http.scheduler.prometheus", "distributed.http.scheduler.info",
              "distributed.http.scheduler.json", "distributed.http.health",
              "distributed.http.proxy", "distributed.http.statics",
              "distributed.http.scheduler.api"])


def wait(what, fn, timeout=120, step=0.3):
    return polling.wait(what, fn, timeout, step)


def dask_cluster(name, owner, restart="Always"):
    """A DaskCluster shaped like clusterctl's --k8s-operator one (without TLS)."""
    import selfcheck_node as sn

    def spec(role, argv, probe):
        p = sn.pod(name, role, role, argv, probe=probe, restart=restart)["spec"]
        if restart == "Always":
            del p["activeDeadlineSeconds"]
        c = p["containers"][0]
        c["ports"] = [{"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                      {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"}]
        if probe:
            c["readinessProbe"]["httpGet"]["port"] = "http-dashboard"
            c["env"].append({"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": ROUTES})
        return p

    sched = spec("scheduler", ["--host", "0.0.0.0", "--port", "8786",
                               "--dashboard-address", "0.0.0.0:8787"], True)
    worker = spec("worker", [f"tcp://{name}-scheduler.{NS}.svc.cluster.local:8786",
                             "--name", "$(DASK_WORKER_NAME)", "--no-nanny", "--host", "0.0.0.0",
                             "--dashboard-address", "0.0.0.0:0", "--nthreads", "1",
                             "--memory-limit", "256MiB"], False)
    lbl = sn.labels(name, "scheduler", "x")
    cluster_labels = {k: v for k, v in lbl.items() if k not in ("clusterctl-role", "clusterctl-node",
                                                                "app.kubernetes.io/component")}
    return {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
            "metadata": {"name": name, "labels": cluster_labels,
                         "annotations": {"clusterctl-owner": "selfcheck"},
                         "ownerReferences": [owner]},
            "spec": {"scheduler": {"metadata": {"labels": {"clusterctl-role": "scheduler"}},
                                   "spec": sched,
                                   "service": {"type": "ClusterIP",
                                               "selector": {"dask.org/cluster-name": name,
                                                            "dask.org/component": "scheduler"},
                                               "ports": [{"name": "tcp-comm", "port": 8786,
                                                          "targetPort": "tcp-comm", "protocol": "TCP"},
                                                         {"name": "http-dashboard", "port": 8787,
                                                          "targetPort": "http-dashboard",
                                                          "protocol": "TCP"}]}},
                     "worker": {"replicas": 0, "metadata": {"labels": {"clusterctl-role": "worker"}},
                                "spec": worker}}}


def ours(work):
    """Pids of processes running in a pod directory under `work` (the kubelet's cwd for them)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(work + "/"):
                out.append(int(pid))
        except OSError:
            pass
    return out


def inside(keep):
    import selfcheck_node as sn
    from k8ssim import Sim
    from k8ssim.kubelet import Kubelet
    from k8ssim.operator import Operator
    from k8ssim.patch import MERGE
    from k8ssim.store import ApiError
    sn.DV = subprocess.run([sys.executable, "-c", "import distributed; print(distributed.__version__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="k8ssim-operator-")
    sim = Sim(work, specs_dir=SPECS, with_dask=True)
    sim.bootstrap()
    sim.kubelet = Kubelet(sim, sys.executable, work, backoff_scale=0.05)
    sim.kubelet.start()
    sim.operator = Operator(sim)
    sim.operator.start()
    store = sim.store
    errs = os.path.join(work, "sim-errors.jsonl")
    oplog = os.path.join(work, "sim-operator.log")
    try:
        root = store.create("ConfigMap", NS, {"metadata": {"name": "c1-root",
                                                           "labels": sn.labels("c1", "root", "root")}})
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c1-root",
                 "uid": root["metadata"]["uid"], "blockOwnerDeletion": True, "controller": False}
        store.create("Secret", NS, sn.secret("c1", {"clusterctl_ttl.py": sn.PRELOAD}))

        # 1. restartPolicy Never: the operator's Deployment is refused, nothing is made
        store.create("DaskCluster", NS, dask_cluster("c0", owner, restart="Never"))
        e = wait("the refused Deployment", lambda: os.path.exists(errs) and
                 [json.loads(x) for x in open(errs)], timeout=20)
        assert e[0]["kind"] == "rejected" and e[0]["detail"]["kind"] == "Deployment" and \
            'restartPolicy: Unsupported value: "Never"' in e[0]["detail"]["message"] and \
            "activeDeadlineSeconds in ReplicaSet is not Supported" in e[0]["detail"]["message"], e
        assert store.get("DaskCluster", NS, "c0")["status"]["phase"] == "Created"
        assert not store.list("Pod", NS) and store.get("Service", NS, "c0-scheduler") is None
        store.delete("DaskCluster", NS, "c0")
        os.rename(errs, errs + ".expected")

        # 2. the real cluster: scheduler and Service, phase Running
        dc = store.create("DaskCluster", NS, dask_cluster("c1", owner))
        assert dc["spec"]["idleTimeout"] == 0 and dc["spec"]["scheduler"]["spec"]["restartPolicy"] == "Always"
        wait("phase Running", lambda: (store.get("DaskCluster", NS, "c1").get("status") or {})
             .get("phase") == "Running", timeout=20)
        svc = store.get("Service", NS, "c1-scheduler")
        sp = wait("scheduler Ready", lambda: (lambda p: p and any(
            c["type"] == "Ready" and c["status"] == "True" for c in
            (p.get("status") or {}).get("conditions") or []) and p)(store.get("Pod", NS, "c1-scheduler")))
        for obj in (sp, svc):
            m = obj["metadata"]
            assert m["ownerReferences"][0]["kind"] == "DaskCluster" and \
                m["ownerReferences"][0]["blockOwnerDeletion"] is True, m
            assert m["labels"]["clusterctl-cluster"] == "c1" and \
                m["labels"]["dask.org/component"] == "scheduler" and \
                m["annotations"] == {"clusterctl-owner": "selfcheck"}, m
        assert sp["metadata"]["labels"]["clusterctl-role"] == "scheduler"
        api = f"http://{svc['spec']['clusterIP']}:8787/api/v1"

        def workers():
            # The scheduler pod may be Running before its HTTP server listens, or be restarted
            # by its Deployment: a refused connection means "not yet", not a failure.
            try:
                with urllib.request.urlopen(f"{api}/get_workers", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return {"num_workers": None}

        def worker_pods():
            return [p for p in store.list("Pod", NS, label_selector="dask.org/component=worker")
                    if not p["metadata"].get("deletionTimestamp")]

        # 3. 0 -> 2
        store.patch("DaskCluster", NS, "c1", MERGE, {"spec": {"worker": {"replicas": 2}}})
        wait("2 workers registered", lambda: workers()["num_workers"] == 2, timeout=180)
        pods = worker_pods()
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        names = {p["metadata"]["name"] for p in pods}
        assert {w["name"] for w in workers()["workers"]} == names, (workers(), names)
        m = pods[0]["metadata"]
        assert m["labels"]["clusterctl-role"] == "worker" and \
            m["labels"]["dask.org/workergroup-name"] == "c1-default" and \
            m["name"].startswith("c1-default-worker-"), m
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["DASK_WORKER_NAME"] == m["name"], env
        assert env["DASK_SCHEDULER_ADDRESS"] == "tcp://c1-scheduler.default.svc.cluster.local:8786"

        # 4. 2 -> 1: the scheduler retires one worker, the operator deletes that one's pod
        store.patch("DaskCluster", NS, "c1", MERGE, {"spec": {"worker": {"replicas": 1}}})
        wait("one worker pod left", lambda: len(worker_pods()) == 1, timeout=60)
        kept = worker_pods()[0]["metadata"]["name"]
        log = open(oplog).read()
        retired = [ln for ln in log.splitlines() if "Workers to close:" in ln]
        assert retired and "LIFO" not in log and "Retired workers" in log, log
        gone = (names - {kept}).pop()
        assert f"['{gone}']" in retired[-1], (retired, gone)
        wait("scheduler keeps 1 worker", lambda: workers()["num_workers"] == 1)
        assert [w["name"] for w in workers()["workers"]] == [kept]
        time.sleep(2)    # nothing replaces the retired worker
        assert [p["metadata"]["name"] for p in worker_pods()] == [kept]

        # 5. the root goes (Background, as clusterctl deletes it): the GC takes everything
        store.delete("ConfigMap", NS, "c1-root", propagation="Background")
        wait("DaskCluster gone", lambda: store.get("DaskCluster", NS, "c1") is None, timeout=30)
        wait("pods and Service gone", lambda: not store.list("Pod", NS) and
             store.get("Service", NS, "c1-scheduler") is None, timeout=90)
        bad = [ln for ln in open(oplog) if "[default/c1]" in ln and "[ERROR" in ln]
        assert not bad, bad
        lines = open(errs).read().splitlines() if os.path.exists(errs) else []
        assert not lines, lines
        print("selfcheck_operator: all checks passed", flush=True)
    finally:
        sim.operator.stop()
        for p in store.list("Pod"):
            try:
                store.delete("Pod", p["metadata"]["namespace"], p["metadata"]["name"], grace=0)
            except ApiError:
                pass
        time.sleep(1)
        sim.kubelet.stop()
        wait("no pod process left", lambda: not ours(work), timeout=30)
        if keep:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inside", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.inside:
        return inside(args.keep)
    assert os.geteuid() == 0, "needs root (unshare -n)"
    inner = f"exec {sys.executable} {os.path.abspath(__file__)} --inside" + (" --keep" if args.keep else "")
    rc = subprocess.call(["unshare", "-n", "sh", "-c",
                          f"ip link set lo up; ip addr add 10.0.0.0/8 dev lo; {inner}"])
    left = subprocess.run(["pgrep", "-f", "clusterctl-node"], capture_output=True,
                          text=True).stdout.split()
    assert not left, f"stray processes: {left}"
    sys.exit(rc)


if __name__ == "__main__":
    main()
