"""The end-to-end half of selfcheck_node.py (run by it inside a throwaway network namespace).

An in-process Sim (store, Kubelet with NetProxy, and a tornado server routing the port-forward
handler) runs clusterctl-shaped pods as real Dask processes; plain asserts.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from k8ssim import Sim
from k8ssim.kubelet import Kubelet
from k8ssim.polling import wait
from k8ssim.portforward import PortForwardHandler
from k8ssim.store import ApiError
from selfcheck_node import PRELOAD, pod, scheduler_argv, secret, worker_argv, labels

NS = "default"
SPECS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "..", "shared", "specs", "kubernetes", "v1.35")




def cond(p, type_):
    return next((c for c in (p.get("status") or {}).get("conditions") or []
                 if c["type"] == type_), {})


def cstatus(p):
    return ((p.get("status") or {}).get("containerStatuses") or [{}])[0]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def serve_portforward(sim):
    """A tornado server on 127.0.0.1 with just the port-forward route, in its own thread."""
    box = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward",
                                        PortForwardHandler, {"sim": sim})])
        server = tornado.httpserver.HTTPServer(app)
        socks = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        server.add_sockets(socks)
        box["port"] = socks[0].getsockname()[1]
        box["loop"] = loop
        loop.run_forever()
    threading.Thread(target=run, daemon=True).start()
    wait("port-forward server", lambda: box.get("port"))
    return box


async def port_forward(port, pod, ports, send=b"", want=b"", timeout=10):
    """kube-rs's side of the protocol: offer v5+v4, expect v4, check the port prefixes, send
    `send` on the first port's data channel, collect data and error payloads."""
    q = "&".join(f"ports={p}" for p in ports.split("&"))
    req = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}/api/v1/namespaces/{NS}/pods/{pod}/portforward?{q}",
        headers={"Sec-WebSocket-Protocol": "v5.channel.k8s.io, v4.channel.k8s.io"})
    ws = await tornado.websocket.websocket_connect(req)
    assert ws.selected_subprotocol == "v4.channel.k8s.io", ws.selected_subprotocol
    nums = [int(x) for x in ports.replace("&", ",").split(",")]
    seen_init, data, errors = set(), {}, {}
    if send:
        await ws.write_message(b"\x00" + send, binary=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        if msg is None:
            break
        ch, payload = msg[0], msg[1:]
        if ch not in seen_init:
            assert len(payload) == 2 and int.from_bytes(payload, "little") == nums[ch // 2]
            seen_init.add(ch)
            continue
        (errors if ch % 2 else data).setdefault(ch // 2, b"")
        if ch % 2:
            errors[ch // 2] += payload
        else:
            data[ch // 2] += payload
        if want and want in data.get(0, b""):
            break
    ws.close()
    return seen_init, data, errors


def e2e(dv, keep):
    import selfcheck_node
    selfcheck_node.DV = dv
    work = tempfile.mkdtemp(prefix="k8ssim-node-")
    sim = Sim(work, specs_dir=os.path.normpath(SPECS))
    sim.bootstrap()
    kubelet = Kubelet(sim, sys.executable, work, backoff_scale=0.05)
    sim.kubelet = kubelet
    kubelet.start()
    store = sim.store
    pf = serve_portforward(sim)
    try:
        run_checks(sim, store, kubelet, pf, dv)
        print("e2e checks: ok", flush=True)
    finally:
        for p in store.list("Pod"):
            try:
                store.delete("Pod", p["metadata"]["namespace"], p["metadata"]["name"], grace=0)
            except ApiError:
                pass
        time.sleep(1)
        kubelet.stop()
        pf["loop"].call_soon_threadsafe(pf["loop"].stop)
        if keep:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_checks(sim, store, kubelet, pf, dv):
    get = lambda name: store.get("Pod", NS, name)  # noqa: E731
    store.create("Secret", NS, secret("c1", {"clusterctl_ttl.py": PRELOAD}))
    store.create("Pod", NS, pod("c1", "scheduler", "scheduler", scheduler_argv()))
    svc = store.create("Service", NS, {"metadata": {"name": "c1-scheduler",
                                                    "labels": labels("c1", "scheduler", "svc")},
                                       "spec": {"selector": {"clusterctl-cluster": "c1",
                                                             "clusterctl-role": "scheduler"},
                                                "ports": [{"name": "dask", "port": 8786,
                                                           "targetPort": "dask"},
                                                          {"name": "dashboard", "port": 8787,
                                                           "targetPort": 8787}]}})
    cip = svc["spec"]["clusterIP"]
    addr = f"tcp://{cip}:8786"
    for n in range(2):   # worker-0 dials the Service by its cluster DNS name
        a = addr if n else f"tcp://c1-scheduler.{NS}.svc.cluster.local:8786"
        store.create("Pod", NS, pod("c1", "worker", f"worker-{n}", worker_argv(a, n),
                                    probe=False))
    p = wait("scheduler Ready", lambda: cond(get("c1-scheduler"), "Ready").get("status") == "True"
             and get("c1-scheduler"), timeout=90)
    st = p["status"]
    assert st["phase"] == "Running" and st["podIP"].startswith("10.244.0.") and st["hostIP"] == \
        "10.0.0.1" and st["qosClass"] == "Guaranteed", st
    cs = cstatus(p)
    assert cs["ready"] and cs["started"] and "running" in cs["state"] and \
        cs["containerID"].startswith("containerd://") and cs["imageID"], cs
    assert [c["type"] for c in st["conditions"]] == ["PodReadyToStartContainers", "Initialized",
                                                     "Ready", "ContainersReady", "PodScheduled"]
    reasons = [e["reason"] for e in store.list("Event", NS)
               if e["involvedObject"]["name"] == "c1-scheduler"]
    for r in ("Scheduled", "Pulling", "Pulled", "Created", "Started"):
        assert r in reasons, reasons
    run = json.load(open(os.path.join(sim.workdir, "pods", "default_c1-scheduler", "run.json")))
    assert run["argv"][1:4] == ["-m", "dask", "scheduler"] and "PATH" in run["env_names"]
    ep = wait("endpoints", lambda: [x for x in (store.get("Endpoints", NS, "c1-scheduler")
                                                or {}).get("subsets") or [] if "addresses" in x])
    assert ep[0]["addresses"][0]["ip"] == st["podIP"] and \
        sorted(x["port"] for x in ep[0]["ports"]) == [8786, 8787], ep
    # kube-proxy programs a Service's endpoints after they are written, so wait (as for LB)
    assert wait("clusterIP /health", lambda: _try(f"http://{cip}:8787/health")) == (200, "ok")

    seen, data, errors = asyncio.run(port_forward(
        pf["port"], "c1-scheduler", "8787",
        send=b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want=b"\r\n\r\nok"))
    assert seen == {0, 1} and b"200 OK" in data[0] and data[0].endswith(b"ok"), (seen, data)
    seen, data, errors = asyncio.run(port_forward(pf["port"], "c1-scheduler", "8786,9",
                                                  timeout=5))
    assert seen == {0, 1, 2, 3}, seen
    assert b"error forwarding port 9 to pod" in errors[1] and \
        errors[1].endswith(b"connect: connection refused"), errors

    wait("2 workers running", lambda: all(cstatus(get(f"c1-worker-{n}")).get("ready")
                                          for n in range(2)), timeout=60)
    out = subprocess.run([sys.executable, "-c",
                          "from distributed import Client\n"
                          f"c = Client('{addr}', timeout=30)\n"
                          "c.wait_for_workers(2, timeout=60)\n"
                          "print(c.submit(lambda x: x + 1, 1).result())\nc.close()"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2", out
    run = json.load(open(os.path.join(sim.workdir, "pods", "default_c1-worker-0", "run.json")))
    assert run["argv"][4] == addr and run["dns"][0]["answer"] == cip and \
        run["dns"][0]["source"] == "Service default/c1-scheduler", run

    log = kubelet.read_log(NS, "c1-scheduler", "dask")
    assert "Scheduler at" in log and "clusterctl preload loaded" in log, log[-2000:]
    assert len(kubelet.read_log(NS, "c1-scheduler", "dask", tail_lines=2).splitlines()) == 2
    assert kubelet.read_log(NS, "c1-scheduler", None, timestamps=True).startswith("20")
    for kw, text in ((dict(previous=True), "previous terminated container"),
                     (dict(container="x"), "container x is not valid")):
        try:
            kubelet.read_log(NS, "c1-scheduler", **{"container": "dask", **kw})
            raise AssertionError("no error")
        except ApiError as e:
            assert e.status == 400 and text in e.message, e

    # LoadBalancer and NodePort frontends
    lb = store.create("Service", NS, {"metadata": {"name": "c1-lb"}, "spec": {
        "type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/32", "127.0.0.0/8"],
        "selector": {"clusterctl-cluster": "c1", "clusterctl-role": "scheduler"},
        "ports": [{"name": "dashboard", "port": 8787, "targetPort": "dashboard"}]}})
    ing = wait("LB ingress", lambda: ((store.get("Service", NS, "c1-lb").get("status") or {})
                                      .get("loadBalancer") or {}).get("ingress"))
    assert ing[0]["ipMode"] == "VIP" and ing[0]["ip"].startswith("10.100.0."), ing
    assert wait("LB /health", lambda: _try(f"http://{ing[0]['ip']}:8787/health")) == (200, "ok")
    node_port = lb["spec"]["ports"][0]["nodePort"]
    assert _try(f"http://10.0.0.1:{node_port}/health") == (200, "ok")
    s = socket.socket()
    s.bind(("10.50.0.1", 0))
    s.settimeout(2)
    s.connect((ing[0]["ip"], 8787))
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    try:
        got = s.recv(100)
        raise AssertionError(f"a peer outside loadBalancerSourceRanges got {got!r}")
    except socket.timeout:
        pass
    s.close()
    store.delete("Service", NS, "c1-lb")
    wait("LB service gone", lambda: store.get("Service", NS, "c1-lb") is None)

    # graceful deletion of a worker
    store.delete("Pod", NS, "c1-worker-1")
    t0 = time.monotonic()
    wait("worker-1 removed", lambda: get("c1-worker-1") is None, timeout=15)
    print(f"worker-1 graceful deletion took {time.monotonic() - t0:.1f}s", flush=True)
    assert any(e["reason"] == "Killing" and e["involvedObject"]["name"] == "c1-worker-1"
               for e in store.list("Event", NS))

    # deadline, faults, an unschedulable request
    sim.faults.set({"pods": [{"name": "f-img-.*", "mode": "image_pull"},
                             {"name": "f-crash-.*", "mode": "crash"},
                             {"name": "f-unsched-.*", "mode": "unschedulable"}]})
    store.create("Secret", NS, secret("f", {"clusterctl_ttl.py": PRELOAD}))
    store.create("Pod", NS, pod("f", "worker", "deadline", worker_argv(addr, 7), probe=False,
                                deadline=4))
    for n in ("img", "crash", "unsched"):
        store.create("Secret", NS, secret(f"f-{n}", {"clusterctl_ttl.py": PRELOAD}))
        store.create("Pod", NS, pod(f"f-{n}", "worker", "w", worker_argv(addr, 9), probe=False,
                                    restart="Always"))
    store.create("Pod", NS, pod("f", "worker", "big", worker_argv(addr, 8), probe=False,
                                cpu="100"))
    p = wait("ImagePullBackOff", lambda: cstatus(get("f-img-w")).get("state", {}).get(
        "waiting", {}).get("reason") == "ImagePullBackOff" and get("f-img-w"), timeout=20)
    assert "not found" in " ".join(e["message"] for e in store.list("Event", NS)
                                   if e["involvedObject"]["name"] == "f-img-w")
    p = wait("CrashLoopBackOff", lambda: cstatus(get("f-crash-w")).get("restartCount", 0) >= 2
             and cstatus(get("f-crash-w"))["state"].get("waiting", {}).get("reason")
             == "CrashLoopBackOff" and get("f-crash-w"), timeout=30)
    assert p["status"]["phase"] == "Running" and \
        cstatus(p)["lastState"]["terminated"]["exitCode"] == 1
    assert "fault injection: crash" in kubelet.read_log(NS, "f-crash-w", "dask", previous=True)
    p = wait("unschedulable", lambda: cond(get("f-unsched-w"), "PodScheduled").get("reason")
             == "Unschedulable" and get("f-unsched-w"), timeout=10)
    p = wait("insufficient cpu", lambda: "Insufficient cpu" in cond(get("f-big"), "PodScheduled")
             .get("message", ""), timeout=10)
    assert any(e["reason"] == "FailedScheduling" and e["source"]["component"] ==
               "default-scheduler" for e in store.list("Event", NS))
    p = wait("deadline", lambda: (get("f-deadline").get("status") or {}).get("reason")
             == "DeadlineExceeded" and get("f-deadline"), timeout=30)
    assert p["status"]["phase"] == "Failed" and "longer than the specified deadline" in \
        p["status"]["message"], p["status"]
    wait("deadline pod's container terminated", lambda: "terminated" in cstatus(
        get("f-deadline"))["state"], timeout=15)
    assert any(e["reason"] == "DeadlineExceeded" for e in store.list("Event", NS))
    errs = os.path.join(sim.workdir, "sim-errors.jsonl")
    lines = open(errs).read().splitlines() if os.path.exists(errs) else []
    assert not lines, lines


def _try(url):
    try:
        return http_get(url, timeout=3)
    except OSError:
        return None
