#!/usr/bin/env python3
"""Command line of the Kubernetes API simulator (tests/k8s/README.md): serve, inspect, faults.

`serve` runs the HTTPS API server + kubelet (+ DaskCluster operator) and prints one JSON
`{"ready": true, ...}` line once listening; `inspect` prints every stored object grouped by kind
(GET /_sim/objects); `faults` replaces the fault rules (POST /_sim/faults). The last two read the
server address, CA and token from the kubeconfig that `serve` wrote.
"""

import argparse
import asyncio
import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _client(kubeconfig):
    import yaml
    with open(kubeconfig) as fh:
        cfg = yaml.safe_load(fh)
    ctx_name = cfg["current-context"]
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    sslctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return cluster["server"], user["token"], sslctx


def _call(kubeconfig, method, path, body=None):
    server, token, sslctx = _client(kubeconfig)
    req = urllib.request.Request(server + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=sslctx, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        sys.stderr.write(exc.read().decode(errors="replace") + "\n")
        sys.exit(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the simulated API server and kubelet")
    s.add_argument("--workdir", required=True)
    s.add_argument("--python", required=True, help="interpreter that runs the pods' Dask processes")
    s.add_argument("--specs", default=None, help="directory with the Kubernetes OpenAPI v3 files")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--namespace", default="default")
    s.add_argument("--node-cpu", default="4")
    s.add_argument("--node-memory", default="8Gi")
    s.add_argument("--with-dask-operator", action="store_true")
    s.add_argument("--kubeconfig-out", default=None)
    s.add_argument("--backoff-scale", type=float, default=1.0,
                   help="multiply the kubelet's restart/image-pull back-off times")
    i = sub.add_parser("inspect", help="print every stored object as JSON")
    i.add_argument("--kubeconfig", required=True)
    i.add_argument("--selector", default=None)
    f = sub.add_parser("faults", help="replace the fault injection rules")
    f.add_argument("--kubeconfig", required=True)
    f.add_argument("--set", default=None, help='JSON {"api": [...], "pods": [...]}; omit to show')
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        from k8ssim.server import serve
        asyncio.run(serve(args))
        return 0
    if args.cmd == "inspect":
        q = "?" + urllib.parse.urlencode({"labelSelector": args.selector}) if args.selector else ""
        print(json.dumps(_call(args.kubeconfig, "GET", "/_sim/objects" + q), indent=1))
        return 0
    if args.set is None:
        print(json.dumps(_call(args.kubeconfig, "GET", "/_sim/faults"), indent=1))
    else:
        print(json.dumps(_call(args.kubeconfig, "POST", "/_sim/faults", json.loads(args.set)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
