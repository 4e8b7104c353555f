#!/usr/bin/env python3
"""The Google Compute Engine simulator's command line (the package is gcesim/, next to this file).

    $PY tests/gcp/gce_sim.py serve --workdir DIR --python PY [--port 0] [--bind 127.0.0.1]
        [--project ID ...] [--op-pending 0.3] [--op-delay 1.0] [--delete-delay 1.0]
        [--firewall-delay 0.5] [--wait-max 120] [--run-duration-scale 1.0]
        [--reads-per-minute 1500] [--writes-per-minute 1500] [--public-ports 8786,8787]
        [--drop-hold 120] [--sa-propagation 3] [--iam-propagation 1] [--secret-latest-lag 2]
        [--metadata-bind 169.254.169.254:80] [--stockout ZONE[:TYPE[:MODEL]]] ...
        [--quota METRIC=LIMIT] ... [--service-account ACCOUNT_ID] ...
        [--network NETWORK:SUBNET:REGION:CIDR] ... [--allow-anonymous]
        [--specs DIR] [--verbose]

Prints one line on stdout once listening — {"ready": true, "url": "https://127.0.0.1:PORT",
"ca_file": "DIR/ca.pem", "credentials_file": "DIR/credentials.json", "token_uri":
"https://127.0.0.1:PORT/token", "metadata": "http://169.254.169.254"} — and runs until
SIGTERM/SIGINT, then stops every instance's processes and exits 0 (2 if it cannot start).
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="gce_sim.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the simulated APIs until SIGTERM/SIGINT")
    s.add_argument("--workdir", required=True)
    s.add_argument("--python", required=True, help="the instances' Python (with distributed)")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--bind", default="127.0.0.1")
    s.add_argument("--project", action="append", dest="projects",
                   help="a project id the simulator knows (repeatable; default clusterctl-sim)")
    for name, default, what in (
            ("op-pending", 0.3, "seconds an operation stays PENDING"),
            ("op-delay", 1.0, "seconds until an insert/bulkInsert operation is DONE"),
            ("delete-delay", 1.0, "seconds until a delete operation is DONE"),
            ("firewall-delay", 0.5, "seconds until a firewall operation is DONE"),
            ("wait-max", 120.0, "seconds operations.wait blocks at most"),
            ("run-duration-scale", 1.0, "real seconds per maxRunDuration second"),
            ("drop-hold", 120.0, "seconds a firewall-dropped connection is held"),
            ("sa-propagation", 3.0, "seconds a new service account is not yet usable"),
            ("iam-propagation", 1.0, "seconds a new IAM binding takes to apply"),
            ("secret-latest-lag", 2.0, "seconds before a new version is `latest`")):
        s.add_argument("--" + name, type=float, default=default, help=what)
    s.add_argument("--reads-per-minute", type=int, default=1500)
    s.add_argument("--writes-per-minute", type=int, default=1500)
    s.add_argument("--public-ports", default="8786,8787")
    s.add_argument("--metadata-bind", default="169.254.169.254:80")
    s.add_argument("--stockout", action="append", default=[],
                   help="ZONE[:MACHINE_TYPE[:SPOT|STANDARD]] whose inserts fail "
                        "ZONE_RESOURCE_POOL_EXHAUSTED (repeatable)")
    s.add_argument("--quota", action="append", default=[], help="METRIC=LIMIT per region")
    s.add_argument("--network", dest="networks", action="append", default=[],
                   help="a custom-mode network NETWORK:SUBNET:REGION:CIDR (repeatable)")
    s.add_argument("--service-account", dest="service_accounts", action="append", default=[],
                   help="an existing (propagated) service account ACCOUNT_ID of the first project")
    s.add_argument("--allow-anonymous", action="store_true",
                   help="treat requests without Authorization as the test's service account")
    s.add_argument("--specs", default=None, help="default: ../shared/specs from the repo root")
    s.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        ports = tuple(int(x) for x in args.public_ports.split(",") if x.strip())
    except ValueError:
        p.error("--public-ports: a comma-separated list of ports")
    stockouts = []
    for spec in args.stockout:
        parts = spec.split(":")
        rule = {"zone": parts[0] or None}
        if len(parts) > 1 and parts[1]:
            rule["machineType"] = parts[1]
        if len(parts) > 2 and parts[2]:
            rule["provisioningModel"] = parts[2]
        stockouts.append(rule)
    return serve(args, ports, stockouts)


def serve(args, ports, stockouts):
    import gcesim
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    opts = {k: getattr(args, k) for k in (
        "port", "bind", "op_pending", "op_delay", "delete_delay", "firewall_delay", "wait_max",
        "run_duration_scale", "drop_hold", "sa_propagation", "iam_propagation",
        "secret_latest_lag", "reads_per_minute", "writes_per_minute", "metadata_bind",
        "allow_anonymous", "quota", "specs", "verbose", "service_accounts", "networks")}
    opts.update(public_ports=ports, stockouts=stockouts,
                projects=tuple(args.projects or ("clusterctl-sim",)))
    try:
        sim = gcesim.start(args.workdir, args.python, **opts)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"gce-sim: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps({"ready": True, "url": sim.url, "ca_file": sim.tls.ca_file,
                      "credentials_file": sim.auth.credentials_file,
                      "token_uri": sim.auth.token_uri, "metadata": sim.metadata.url}),
          flush=True)
    print(f"gce-sim: listening on {sim.url} (workdir {os.path.abspath(args.workdir)}, "
          f"metadata {sim.metadata.url}, sandbox: {sim.sandbox})", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    print("gce-sim: stopping", file=sys.stderr, flush=True)
    sim.stop()
    print("gce-sim: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
