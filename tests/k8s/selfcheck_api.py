#!/usr/bin/env python3
"""Self-check of the simulator's API server half (plain asserts, no pytest; ~30 s).

Starts `k8s_sim.py serve` (with the DaskCluster operator) in a temp dir and covers: auth,
discovery, create/get/list (label and field selectors, paging)/watch (events, selectors,
bookmarks, 410)/update conflicts/patch (merge, JSON, strategic, apply → 415)/status
subresource/delete (Status vs object, preconditions, 404), generateName and dryRun, 422 on
unknown fields and bad names (and their sim-errors entries), garbage collection (Background,
Foreground, Orphan, dangling owners), namespace deletion, faults, the DaskCluster operator,
and a kubectl get/describe/delete round trip. Pods are made unschedulable with a pod fault, so
this checks the API half only and runs outside the sandbox too.

    ~/.cache/clusterctl-test/venv-2026.8.0/bin/python tests/k8s/selfcheck_api.py [--keep] [--sandbox]

`--sandbox` (root) re-runs everything inside `unshare -n` and adds a real pod (kubelet): Ready,
Endpoints, logs through the API and kubectl, graceful deletion.
"""

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
KUBECTLS = ["/usr/bin/kubectl", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"]


class Client:
    def __init__(self, url, token, ca_pem):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.ctx = ssl.create_default_context(cadata=ca_pem)

    def conn(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def req(self, method, path, body=None, ctype="application/json", auth=True, accept=None):
        c = self.conn()
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        if accept:
            headers["Accept"] = accept
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            out = json.loads(raw)
        except ValueError:
            out = raw.decode(errors="replace")
        return r.status, out, dict(r.getheaders())

    def watch(self, path, events, stop_after):
        """Collect watch events (dicts) into `events` until `stop_after` of them arrived."""
        c = self.conn(timeout=20)
        c.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        r = c.getresponse()
        assert r.status == 200, r.status
        buf = b""
        while len(events) < stop_after:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    events.append(json.loads(line))
        c.close()


def wait_for(fn, timeout=10, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


LABELS = {"app.kubernetes.io/managed-by": "clusterctl", "clusterctl-cluster": "c1",
          "clusterctl-managed": "true"}


def pod(name, owner=None, **extra):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "labels": dict(LABELS, **{"clusterctl-role": extra.pop("role", "worker")})},
         "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 600,
                  "automountServiceAccountToken": False, "enableServiceLinks": False,
                  "containers": [{"name": "dask", "image": "ghcr.io/dask/dask:2026.8.0-py3.12",
                                  "command": ["sh", "-c", "true"],
                                  "ports": [{"name": "dask", "containerPort": 8786},
                                            {"name": "dashboard", "containerPort": 8787}],
                                  "readinessProbe": {"httpGet": {"path": "/health", "port": "dashboard"}},
                                  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                                "limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    if owner:
        p["metadata"]["ownerReferences"] = [owner]
    p["spec"].update(extra)
    return p


def owner_ref(obj, kind="ConfigMap"):
    return {"apiVersion": "v1", "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "blockOwnerDeletion": True}


def main():
    keep = "--keep" in sys.argv
    if "--sandbox" in sys.argv:
        # re-run inside a throwaway network namespace (root): lo up holding 10.0.0.0/8
        args = [a for a in sys.argv[1:] if a != "--sandbox"] + ["--inside"]
        inner = " ".join([f"exec {sys.executable} {os.path.abspath(__file__)}"] + args)
        r = subprocess.run(["unshare", "-n", "bash", "-c",
                            f"ip link set lo up && ip addr add 10.0.0.0/8 dev lo && {inner}"])
        sys.exit(r.returncode)
    py = sys.executable
    work = tempfile.mkdtemp(prefix="k8s-selfcheck-")
    proc = subprocess.Popen([py, os.path.join(HERE, "k8s_sim.py"), "serve", "--workdir", work,
                             "--python", py, "--with-dask-operator"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "stderr.log"), "w"),
                            text=True, env=dict(os.environ, K8S_SIM_WATCH_HISTORY="300"))
    try:
        line = proc.stdout.readline()
        ready = json.loads(line)
        assert ready["ready"] is True
        run_checks(ready, work)
        print("selfcheck_api: all checks passed")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("workdir kept:", work)


def run_checks(ready, work):
    import yaml
    with open(ready["kubeconfig"]) as fh:
        kc = yaml.safe_load(fh)
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = kc["users"][0]["user"]["token"]
    assert kc["current-context"] == "sim" and kc["contexts"][0]["context"]["namespace"] == "default"
    api = Client(ready["url"], token, ca)
    N = "/api/v1/namespaces/default"

    # --- auth and discovery ---
    st, body, _ = api.req("GET", "/api/v1/pods", auth=False)
    assert st == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized", body
    st, body, _ = api.req("GET", "/api/v1")
    pods_res = next(r for r in body["resources"] if r["name"] == "pods")
    assert pods_res["shortNames"] == ["po"] and "watch" in pods_res["verbs"]
    assert {"pods/log", "pods/status", "pods/portforward", "services/status"} <= {r["name"] for r in body["resources"]}
    st, body, _ = api.req("GET", "/apis")
    assert [g["name"] for g in body["groups"]] == ["kubernetes.dask.org"], body
    st, body, _ = api.req("GET", "/version")
    assert body["major"] == "1"
    st, node, _ = api.req("GET", "/api/v1/nodes/sim-node-1")
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.1"}

    # every pod of this check stays unschedulable (API half only)
    st, body, _ = api.req("POST", "/_sim/faults", {"pods": [{"name": ".*", "mode": "unschedulable"}]})
    assert st == 200, body

    # --- create / get / errors ---
    st, root, _ = api.req("POST", f"{N}/configmaps?fieldManager=clusterctl",
                          {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "c1-cluster", "labels": LABELS}, "data": {"a": "b"}})
    assert st == 201 and root["metadata"]["uid"] and root["metadata"]["resourceVersion"], root
    st, body, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "c1-cluster"}})
    assert st == 409 and body["reason"] == "AlreadyExists" and body["message"] == 'configmaps "c1-cluster" already exists', body
    st, body, _ = api.req("GET", f"{N}/pods/nope")
    assert st == 404 and body["message"] == 'pods "nope" not found' and body["details"]["kind"] == "pods", body
    st, body, _ = api.req("DELETE", f"{N}/pods/nope")
    assert st == 404 and body["reason"] == "NotFound"
    ref = owner_ref(root)
    secret = {"metadata": {"name": "c1-files", "labels": LABELS, "ownerReferences": [ref]},
              "type": "Opaque", "immutable": True, "data": {"ca.pem": base64.b64encode(b"x").decode()}}
    st, sec, _ = api.req("POST", f"{N}/secrets", secret)
    assert st == 201, sec
    st, p1, _ = api.req("POST", f"{N}/pods", pod("c1-worker-0", ref))
    assert st == 201 and p1["status"] == {"phase": "Pending", "qosClass": "Burstable"}, p1
    spec = p1["spec"]
    assert spec["dnsPolicy"] == "ClusterFirst" and spec["schedulerName"] == "default-scheduler"
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert len(spec["tolerations"]) == 2 and spec["priority"] == 0
    st, p2, _ = api.req("POST", f"{N}/pods", pod("c1-scheduler", ref, role="scheduler"))
    assert st == 201
    svc = {"metadata": {"name": "c1-scheduler", "labels": LABELS, "ownerReferences": [ref]},
           "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["127.0.0.0/8"],
                    "selector": {"clusterctl-cluster": "c1", "clusterctl-role": "scheduler"},
                    "ports": [{"name": "dask", "port": 8786, "targetPort": "dask"},
                              {"name": "dashboard", "port": 8787, "targetPort": 8787}]}}
    st, s1, _ = api.req("POST", f"{N}/services", svc)
    assert st == 201, s1
    assert s1["spec"]["clusterIP"].startswith("10.96.0.") and s1["spec"]["clusterIPs"] == [s1["spec"]["clusterIP"]]
    assert all(30000 <= p["nodePort"] <= 32767 for p in s1["spec"]["ports"])
    assert s1["spec"]["ipFamilies"] == ["IPv4"] and s1["spec"]["sessionAffinity"] == "None"

    # generateName and dryRun
    st, g, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"generateName": "gen-"}})
    assert st == 201 and g["metadata"]["name"].startswith("gen-") and len(g["metadata"]["name"]) == 9
    st, d, _ = api.req("POST", f"{N}/configmaps?dryRun=All", {"metadata": {"name": "dry"}})
    assert st == 201 and api.req("GET", f"{N}/configmaps/dry")[0] == 404

    # --- validation: 422 / 400 and sim-errors entries ---
    errs_path = os.path.join(work, "sim-errors.jsonl")
    before = _count(errs_path)
    bad = pod("c1-bad")
    bad["spec"]["foo"] = 1
    st, body, _ = api.req("POST", f"{N}/pods", bad)
    assert st == 422 and body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "spec.foo", body
    st, body, _ = api.req("POST", f"{N}/pods?fieldValidation=Strict", bad)
    assert st == 400 and 'unknown field "spec.foo"' in body["message"], body
    st, body, _ = api.req("POST", f"{N}/pods", pod("Bad_Name"))
    assert st == 422 and body["details"]["causes"][0]["field"] == "metadata.name", body
    assert body["message"].startswith('Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    bad = pod("c1-bad")
    c = bad["spec"]["containers"][0]
    c["ports"][1]["name"] = "dashboard-port-xx"
    c["resources"]["requests"]["cpu"] = "2"
    c["env"] = [{"name": "1X", "value": "v"}]
    bad["spec"]["restartPolicy"] = "Sometimes"
    st, body, _ = api.req("POST", f"{N}/pods", bad)
    fields = {x["field"] for x in body["details"]["causes"]}
    assert st == 422 and {"spec.containers[0].ports[1].name", "spec.containers[0].readinessProbe.httpGet.port",
                          "spec.containers[0].resources.requests", "spec.containers[0].env[0].name",
                          "spec.restartPolicy"} <= fields, body
    bad_svc = {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}, {"port": 81}],
                                                     "loadBalancerSourceRanges": ["nope"]}}
    st, body, _ = api.req("POST", f"{N}/services", bad_svc)
    fields = {x["field"] for x in body["details"]["causes"]}
    assert st == 422 and {"metadata.name", "spec.ports[0].name", "spec.loadBalancerSourceRanges"} <= fields, body
    st, body, _ = api.req("POST", f"{N}/secrets", {"metadata": {"name": "s2"}, "data": {"bad key": "!!"}})
    assert st in (400, 422), body
    st, body, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "x", "ownerReferences": [
        dict(ref, controller=True), dict(ref, name="y", controller=True)]}})
    assert st == 422 and body["details"]["causes"][0]["field"] == "metadata.ownerReferences", body
    st, body, _ = api.req("POST", "/api/v1/namespaces/nons/configmaps", {"metadata": {"name": "x"}})
    assert st == 404 and body["message"] == 'namespaces "nons" not found', body
    assert _count(errs_path) - before >= 8, "every rejection is logged in sim-errors.jsonl"

    # --- immutability and update conflicts ---
    st, body, _ = api.req("PATCH", f"{N}/secrets/c1-files", {"data": {"ca.pem": "eQ=="}},
                          "application/merge-patch+json")
    assert st == 422 and "immutable" in body["message"], body
    st, body, _ = api.req("PATCH", f"{N}/pods/c1-worker-0", {"spec": {"restartPolicy": "Always"}},
                          "application/merge-patch+json")
    assert st == 422 and "pod updates may not change fields" in body["message"], body
    stale = json.loads(json.dumps(root))
    st, root2, _ = api.req("PUT", f"{N}/configmaps/c1-cluster", dict(root, data={"a": "c"}))
    assert st == 200 and root2["metadata"]["resourceVersion"] != root["metadata"]["resourceVersion"]
    st, body, _ = api.req("PUT", f"{N}/configmaps/c1-cluster", dict(stale, data={"a": "d"}))
    assert st == 409 and body["reason"] == "Conflict" and "the object has been modified" in body["message"], body

    # --- patches ---
    st, p, _ = api.req("PATCH", f"{N}/pods/c1-worker-0", {"metadata": {"labels": {"x": "y"}, "finalizers": ["a.b/c"]}},
                       "application/strategic-merge-patch+json")
    assert st == 200 and p["metadata"]["labels"]["x"] == "y" and p["metadata"]["labels"]["clusterctl-cluster"] == "c1"
    st, p, _ = api.req("PATCH", f"{N}/pods/c1-worker-0", {"spec": {"containers": [{"name": "dask", "image": "ghcr.io/dask/dask:2026.8.0"}]}},
                       "application/strategic-merge-patch+json")
    assert st == 200 and p["spec"]["containers"][0]["image"] == "ghcr.io/dask/dask:2026.8.0" and p["spec"]["containers"][0]["ports"], p
    st, p, _ = api.req("PATCH", f"{N}/pods/c1-worker-0", [{"op": "remove", "path": "/metadata/finalizers"},
                                                        {"op": "replace", "path": "/metadata/labels/x", "value": "z"}],
                       "application/json-patch+json")
    assert st == 200 and p["metadata"]["labels"]["x"] == "z" and "finalizers" not in p["metadata"], p
    st, body, _ = api.req("PATCH", f"{N}/pods/c1-worker-0", b"a: b", "application/apply-patch+yaml")
    assert st == 415 and body["kind"] == "Status", body
    st, s2, _ = api.req("PATCH", f"{N}/services/c1-scheduler/status",
                        {"status": {"loadBalancer": {"ingress": [{"ip": "10.100.0.1"}]}}},
                        "application/merge-patch+json")
    assert st == 200 and s2["status"]["loadBalancer"]["ingress"][0]["ip"] == "10.100.0.1", s2
    st, s3, _ = api.req("PATCH", f"{N}/services/c1-scheduler", {"status": {"loadBalancer": {}}},
                        "application/merge-patch+json")
    assert st == 200 and s3["status"]["loadBalancer"]["ingress"], "main resource ignores status"
    st, body, _ = api.req("PATCH", f"{N}/services/c1-scheduler", {"spec": {"clusterIP": "10.96.9.9"}},
                          "application/merge-patch+json")
    assert st == 422, body

    # --- list: selectors, paging ---
    def names(q, kind="pods"):
        st, body, _ = api.req("GET", f"{N}/{kind}?{q}")
        assert st == 200, body
        assert body["kind"].endswith("List") and body["metadata"]["resourceVersion"]
        return sorted(i["metadata"]["name"] for i in body["items"])
    assert names("labelSelector=" + urllib.parse.quote("clusterctl-role in (scheduler)")) == ["c1-scheduler"]
    assert names("labelSelector=" + urllib.parse.quote("clusterctl-role notin (scheduler)")) == ["c1-worker-0"]
    assert names("labelSelector=" + urllib.parse.quote("!x")) == ["c1-scheduler"]
    assert names("labelSelector=x") == ["c1-worker-0"]
    assert names("labelSelector=" + urllib.parse.quote("clusterctl-cluster==c1,clusterctl-role!=worker")) == ["c1-scheduler"]
    assert names("fieldSelector=metadata.name%3Dc1-worker-0") == ["c1-worker-0"]
    assert names("fieldSelector=status.phase%3DPending") == ["c1-scheduler", "c1-worker-0"]
    st, body, _ = api.req("GET", f"{N}/pods?fieldSelector=spec.bogus%3Dx")
    assert st == 400 and "field label not supported" in body["message"], body
    st, page, _ = api.req("GET", f"{N}/pods?limit=1")
    assert len(page["items"]) == 1 and page["metadata"]["continue"] and page["metadata"]["remainingItemCount"] == 1
    st, page2, _ = api.req("GET", f"{N}/pods?limit=1&continue=" + page["metadata"]["continue"])
    assert len(page2["items"]) == 1 and "continue" not in page2["metadata"]
    assert page["items"][0]["metadata"]["name"] != page2["items"][0]["metadata"]["name"]
    st, allpods, _ = api.req("GET", "/api/v1/pods")
    assert len(allpods["items"]) == 2
    st, evs, _ = api.req("GET", f"{N}/events?fieldSelector=" + urllib.parse.quote(
        "involvedObject.name=c1-worker-0,involvedObject.kind=Pod,reason=FailedScheduling"))
    assert st == 200, evs

    # --- watch ---
    st, lst, _ = api.req("GET", f"{N}/configmaps")
    rv = lst["metadata"]["resourceVersion"]
    events = []
    th = threading.Thread(target=api.watch, args=(
        f"{N}/configmaps?watch=true&resourceVersion={rv}&labelSelector=w%3D1&timeoutSeconds=10", events, 4))
    th.start()
    time.sleep(0.3)
    api.req("POST", f"{N}/configmaps", {"metadata": {"name": "w1", "labels": {"w": "1"}}})
    api.req("POST", f"{N}/configmaps", {"metadata": {"name": "w2"}})
    api.req("PATCH", f"{N}/configmaps/w1", {"data": {"k": "v"}}, "application/merge-patch+json")
    api.req("PATCH", f"{N}/configmaps/w2", {"metadata": {"labels": {"w": "1"}}}, "application/merge-patch+json")
    api.req("DELETE", f"{N}/configmaps/w1")
    th.join(15)
    got = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert got == [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")], got
    events = []
    api.watch(f"{N}/configmaps?watch=1&fieldSelector=metadata.name%3Dw2&timeoutSeconds=1", events, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "w2")], events
    events = []
    api.watch(f"{N}/pods?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", events, 3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"], events
    assert events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"

    # --- watch from a compacted resourceVersion: ERROR 410 Expired; stale continue: 410 ---
    st, lst, _ = api.req("GET", f"{N}/configmaps?limit=1")
    old_rv, old_cont = lst["metadata"]["resourceVersion"], lst["metadata"]["continue"]
    for i in range(160):
        api.req("POST", f"{N}/configmaps", {"metadata": {"name": f"churn-{i}"}})
        api.req("DELETE", f"{N}/configmaps/churn-{i}")
    events = []
    api.watch(f"{N}/configmaps?watch=1&resourceVersion={old_rv}", events, 1)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410, events
    assert events[0]["object"]["reason"] == "Expired" and "too old resource version" in events[0]["object"]["message"]
    st, body, _ = api.req("GET", f"{N}/configmaps?limit=1&continue={old_cont}")
    assert st == 410 and body["reason"] == "Expired", body

    # --- delete semantics + GC ---
    st, body, _ = api.req("DELETE", f"{N}/configmaps/w2", {"preconditions": {"uid": "nope"}})
    assert st == 409 and "Precondition failed" in body["message"], body
    st, body, _ = api.req("DELETE", f"{N}/configmaps/w2")
    assert st == 200 and body["kind"] == "Status" and body["status"] == "Success", body
    st, body, _ = api.req("DELETE", f"{N}/configmaps/w2", {"bogus": 1})
    assert st == 400, body
    # dangling owner at create: collected
    st, dang, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "dangling", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-0000-0000-0000-000000000000"}]}})
    assert st == 201
    wait_for(lambda: api.req("GET", f"{N}/configmaps/dangling")[0] == 404, what="dangling owner GC")
    # orphan
    st, o1, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "o-owner"}})
    st, _, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "o-dep", "ownerReferences": [owner_ref(o1)]}})
    st, body, _ = api.req("DELETE", f"{N}/configmaps/o-owner", {"propagationPolicy": "Orphan"})
    assert st == 200
    wait_for(lambda: api.req("GET", f"{N}/configmaps/o-owner")[0] == 404, what="orphan owner removal")
    st, dep, _ = api.req("GET", f"{N}/configmaps/o-dep")
    assert st == 200 and "ownerReferences" not in dep["metadata"], dep
    # foreground on the root: dependents (pods, service, secret) go first
    st, body, _ = api.req("DELETE", f"{N}/configmaps/c1-cluster", {"propagationPolicy": "Foreground"})
    assert st == 200 and body["metadata"]["deletionTimestamp"] and "foregroundDeletion" in body["metadata"]["finalizers"], body
    wait_for(lambda: api.req("GET", f"{N}/configmaps/c1-cluster")[0] == 404, what="foreground root removal")
    for path in ("pods/c1-worker-0", "pods/c1-scheduler", "services/c1-scheduler", "secrets/c1-files"):
        assert api.req("GET", f"{N}/{path}")[0] == 404, path
    # background
    st, r2, _ = api.req("POST", f"{N}/configmaps", {"metadata": {"name": "bg"}})
    api.req("POST", f"{N}/pods", pod("bg-pod", owner_ref(r2)))
    st, body, _ = api.req("DELETE", f"{N}/configmaps/bg")
    assert st == 200 and body["kind"] == "Status"
    wait_for(lambda: api.req("GET", f"{N}/pods/bg-pod")[0] == 404, what="background GC of a pod")

    # --- namespace deletion ---
    st, ns, _ = api.req("POST", "/api/v1/namespaces", {"metadata": {"name": "tmp-ns"}})
    assert st == 201 and ns["status"]["phase"] == "Active" and ns["spec"]["finalizers"] == ["kubernetes"]
    api.req("POST", "/api/v1/namespaces/tmp-ns/configmaps", {"metadata": {"name": "a"}})
    api.req("POST", "/api/v1/namespaces/tmp-ns/pods", pod("p"))
    st, ns, _ = api.req("DELETE", "/api/v1/namespaces/tmp-ns")
    assert st == 200 and ns["status"]["phase"] == "Terminating", ns
    wait_for(lambda: api.req("GET", "/api/v1/namespaces/tmp-ns")[0] == 404, what="namespace removal")
    assert api.req("GET", "/api/v1/namespaces/tmp-ns/configmaps/a")[0] == 404

    # --- faults ---
    st, body, _ = api.req("POST", "/_sim/faults", {"api": [{"method": "GET", "path": "/configmaps$", "status": 429, "count": 1, "retry_after": 2}],
                                                   "pods": [{"name": ".*", "mode": "unschedulable"}]})
    st, body, hdrs = api.req("GET", f"{N}/configmaps")
    assert st == 429 and body["reason"] == "TooManyRequests" and hdrs.get("Retry-After") == "2", (st, body, hdrs)
    assert api.req("GET", f"{N}/configmaps")[0] == 200
    st, body, _ = api.req("GET", "/_sim/faults")
    assert body["api"][0]["hits"] == 1 and body["api"][0]["remaining"] == 0, body
    api.req("POST", "/_sim/faults", {"api": [{"path": "/secrets", "status": 503, "count": 1}], "pods": [{"name": ".*", "mode": "unschedulable"}]})
    st, body, _ = api.req("GET", f"{N}/secrets")
    assert st == 503 and body["reason"] == "ServiceUnavailable", body
    st, objs, _ = api.req("GET", "/_sim/objects")
    assert "Node" in objs["objects"] and objs["requests"], objs.keys()
    # a ResourceQuota refusal: 403 Forbidden with the admission plugin's words; a quota name
    # without status 403 is refused
    st, body, _ = api.req("POST", "/_sim/faults", {"api": [{"method": "POST", "path": "/pods$", "status": 503, "quota": "q"}]})
    assert st == 400, (st, body)
    api.req("POST", "/_sim/faults", {"api": [{"method": "POST", "path": "/pods$", "status": 403, "quota": "compute"}],
                                     "pods": [{"name": ".*", "mode": "unschedulable"}]})
    st, body, _ = api.req("POST", f"{N}/pods", {"metadata": {"name": "q1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert st == 403 and body["reason"] == "Forbidden" and "exceeded quota: compute" in body["message"], body
    assert api.req("GET", f"{N}/pods/q1")[0] == 404, "nothing was created"
    api.req("POST", "/_sim/faults", {"pods": [{"name": ".*", "mode": "unschedulable"}]})

    # --- DaskCluster operator ---
    dc = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "metadata": {"name": "dk"},
          "spec": {"worker": {"replicas": 2, "spec": {"containers": [{"name": "worker", "image": "ghcr.io/dask/dask:2026.8.0-py3.12",
                                                                      "args": ["dask", "worker", "--name", "$(DASK_WORKER_NAME)"]}]}},
                   "scheduler": {"spec": {"containers": [{"name": "scheduler", "image": "ghcr.io/dask/dask:2026.8.0-py3.12",
                                                          "args": ["dask", "scheduler"],
                                                          "ports": [{"name": "tcp-comm", "containerPort": 8786}]}]},
                                 "service": {"type": "ClusterIP", "selector": {"dask.org/cluster-name": "dk", "dask.org/component": "scheduler"},
                                             "ports": [{"name": "tcp-comm", "port": 8786, "targetPort": "tcp-comm"},
                                                       {"name": "http-dashboard", "port": 8787, "targetPort": 8787}]}}}}
    DC = "/apis/kubernetes.dask.org/v1/namespaces/default/daskclusters"
    bad = json.loads(json.dumps(dc))
    bad["spec"]["worker"]["bogus"] = 1
    st, body, _ = api.req("POST", DC, bad)
    assert st == 422, body
    st, body, _ = api.req("POST", DC, dc)
    assert st == 201, body
    wait_for(lambda: len(api.req("GET", f"{N}/pods?labelSelector=dask.org%2Fcluster-name%3Ddk")[1]["items"]) == 3, what="operator pods")
    assert api.req("GET", f"{N}/services/dk-scheduler")[0] == 200
    st, wp, _ = api.req("GET", f"{N}/pods?labelSelector=dask.org%2Fcomponent%3Dworker")
    env = {e["name"]: e.get("value") for e in wp["items"][0]["spec"]["containers"][0]["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"] == "tcp://dk-scheduler.default.svc.cluster.local:8786", env
    assert wp["items"][0]["metadata"]["ownerReferences"][0]["controller"] is True
    wait_for(lambda: (api.req("GET", f"{DC}/dk")[1].get("status") or {}).get("phase") == "Running", what="DaskCluster status")
    assert api.req("GET", f"{DC}/dk/status")[0] == 404   # the CRD has no status subresource
    workers = lambda: api.req("GET", f"{N}/pods?labelSelector=dask.org%2Fcomponent%3Dworker")[1]["items"]  # noqa: E731
    api.req("PATCH", f"{DC}/dk", {"spec": {"worker": {"replicas": 3}}}, "application/merge-patch+json")
    wait_for(lambda: len(workers()) == 3, what="scale up")
    # scale down asks the scheduler first; it is unreachable here, so the handler is retried
    api.req("PATCH", f"{DC}/dk", {"spec": {"worker": {"replicas": 1}}}, "application/merge-patch+json")
    oplog = os.path.join(work, "sim-operator.log")
    wait_for(lambda: os.path.exists(oplog) and "'daskworkergroup_replica_update' failed with an exception. Will retry."
             in open(oplog).read(), what="scale-down retry")
    assert len(workers()) == 3
    st, body, _ = api.req("DELETE", f"{DC}/dk")
    assert st == 200
    wait_for(lambda: not api.req("GET", f"{N}/pods?labelSelector=dask.org%2Fcluster-name%3Ddk")[1]["items"], what="DaskCluster GC")

    # --- kubectl round trip ---
    api.req("POST", f"{N}/configmaps", {"metadata": {"name": "kc-root", "labels": LABELS}})
    api.req("POST", f"{N}/pods", pod("kc-pod"))
    api.req("POST", f"{N}/services", {"metadata": {"name": "kc-svc"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}})
    for kubectl in KUBECTLS:
        if not os.path.exists(kubectl):
            continue
        env = dict(os.environ, KUBECONFIG=ready["kubeconfig"])

        def k(*args, ok=True):
            r = subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=60)
            assert (r.returncode == 0) == ok, (kubectl, args, r.stdout, r.stderr)
            return r.stdout
        out = k("get", "pods,svc,secrets,cm", "-o", "wide")
        assert "kc-pod" in out and "kc-svc" in out and "10.96.0." in out and "kc-root" in out, out
        out = k("get", "pods", "-l", "clusterctl-cluster=c1", "-o", "json")
        assert json.loads(out)["items"][0]["metadata"]["name"] == "kc-pod"
        out = k("describe", "pod", "kc-pod")
        assert "Name:" in out and "kc-pod" in out and "Events:" in out, out
        out = k("describe", "svc", "kc-svc")
        assert "10.96.0." in out, out
        k("get", "events")
        k("get", "nodes", "-o", "wide")
        k("get", "ns")
    for kubectl in KUBECTLS[:1]:
        env = dict(os.environ, KUBECONFIG=ready["kubeconfig"])
        r = subprocess.run([kubectl, "delete", "pod", "kc-pod"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and 'pod "kc-pod" deleted' in r.stdout, (r.stdout, r.stderr)

    # --- endpoints controller ---
    st, ep, _ = api.req("GET", f"{N}/endpoints/kc-svc")
    assert st == 200 and "subsets" not in ep, ep
    from k8ssim.endpoints import desired_subsets
    fake = pod("ep-pod")
    fake["metadata"].update(namespace="default", uid="u")
    fake["status"] = {"podIP": "10.244.0.9", "phase": "Running",
                      "conditions": [{"type": "Ready", "status": "True"}]}
    subs = desired_subsets({"spec": {"ports": [{"name": "d", "port": 1, "targetPort": "dashboard"}]}}, [fake])
    assert subs == [{"addresses": [{"ip": "10.244.0.9", "nodeName": "sim-node-1", "targetRef": {
        "kind": "Pod", "namespace": "default", "name": "ep-pod", "uid": "u"}}],
        "ports": [{"port": 8787, "protocol": "TCP", "name": "d"}]}], subs

    if "--inside" in sys.argv:
        real_pods(api, N, ready)

    # --- nothing the simulator itself produced was invalid ---
    bad_kinds = [e for e in _entries(errs_path) if e["kind"] not in ("rejected", "validation")]
    assert not bad_kinds, bad_kinds[:5]


def real_pods(api, N, ready):
    """Inside the sandbox: a clusterctl-shaped scheduler pod really runs (kubelet), is Ready,
    gets Endpoints, serves logs (API and kubectl) and goes through graceful deletion."""
    import distributed
    import selfcheck_node as sn
    sn.DV = distributed.__version__
    api.req("POST", "/_sim/faults", {})
    st, body, _ = api.req("POST", f"{N}/secrets", sn.secret("c2", {"clusterctl_ttl.py": sn.PRELOAD}))
    assert st == 201, body
    p = sn.pod("c2", "scheduler", "scheduler", sn.scheduler_argv())
    st, body, _ = api.req("POST", f"{N}/pods", p)
    assert st == 201, body
    st, body, _ = api.req("POST", f"{N}/services", {"metadata": {"name": "c2-scheduler"}, "spec": {
        "selector": {"clusterctl-cluster": "c2", "clusterctl-role": "scheduler"},
        "ports": [{"name": "dask", "port": 8786, "targetPort": "dask"},
                  {"name": "dashboard", "port": 8787, "targetPort": "dashboard"}]}})
    assert st == 201, body

    def is_ready():
        got = api.req("GET", f"{N}/pods/c2-scheduler")[1]
        conds = {c["type"]: c["status"] for c in (got.get("status") or {}).get("conditions") or []}
        return got if conds.get("Ready") == "True" else None
    got = wait_for(is_ready, timeout=60, what="scheduler pod Ready")
    assert got["status"]["phase"] == "Running" and got["status"]["podIP"].startswith("10.244.0.")
    ip = got["status"]["podIP"]
    ep = wait_for(lambda: api.req("GET", f"{N}/endpoints/c2-scheduler")[1].get("subsets"), what="endpoints")
    assert ep[0]["addresses"][0]["ip"] == ip and {x["port"] for x in ep[0]["ports"]} == {8786, 8787}, ep
    logs = wait_for(lambda: "Scheduler at" in (api.req("GET", f"{N}/pods/c2-scheduler/log?tailLines=50")[1] or "")
                    and api.req("GET", f"{N}/pods/c2-scheduler/log")[1], timeout=30, what="scheduler log")
    assert isinstance(logs, str) and ip in logs, logs[-500:]
    env = dict(os.environ, KUBECONFIG=ready["kubeconfig"])
    r = subprocess.run([KUBECTLS[0], "logs", "c2-scheduler", "--tail=5"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout, (r.stdout, r.stderr)
    r = subprocess.run([KUBECTLS[0], "describe", "pod", "c2-scheduler"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Started" in r.stdout and ip in r.stdout, r.stdout
    st, body, _ = api.req("DELETE", f"{N}/pods/c2-scheduler")
    assert st == 200 and body["metadata"]["deletionTimestamp"] and body["metadata"]["deletionGracePeriodSeconds"] == 5, body
    wait_for(lambda: api.req("GET", f"{N}/pods/c2-scheduler")[0] == 404, timeout=15, what="graceful deletion")
    wait_for(lambda: not api.req("GET", f"{N}/endpoints/c2-scheduler")[1].get("subsets"), what="endpoints emptied")
    print("real pod checks: ok", flush=True)


def _entries(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(x) for x in fh if x.strip()]


def _count(path):
    return len(_entries(path))


if __name__ == "__main__":
    main()
