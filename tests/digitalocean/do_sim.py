#!/usr/bin/env python3
"""The DigitalOcean API v2 simulator's command line (the package is dosim/, next to this file).

    $PY tests/digitalocean/do_sim.py serve --workdir DIR --python PY --token TOKEN
        [--port 0] [--bind 127.0.0.1] [--boot-delay 1.0] [--ip-delay 0.5] [--list-lag 1.0]
        [--droplet-limit 25] [--rate-per-minute 250] [--keys-list-per-minute 10]
        [--public-ip-lag 0.5] [--firewall-delay 0.5] [--action-delay 0.5]
        [--public-ports 8786,8787] [--drop-hold 120] [--specs DIR] [--verbose]

Prints one line on stdout once listening — {"ready": true, "url": "https://127.0.0.1:PORT",
"ca_file": "DIR/ca.pem"} — and runs until SIGTERM/SIGINT, then stops every droplet's processes
and exits 0. Its own logging goes to stderr. Clients call {url}/v2/... with
`Authorization: Bearer TOKEN`; the control API is {url}/_sim/... (see README.md).
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="do_sim.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the simulated API until SIGTERM/SIGINT")
    s.add_argument("--workdir", required=True)
    s.add_argument("--python", required=True, help="the droplets' Python (with distributed)")
    s.add_argument("--token", required=True, help="the one valid bearer token")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--bind", default="127.0.0.1")
    s.add_argument("--boot-delay", type=float, default=1.0,
                   help="seconds from create to `active` (and the boot)")
    s.add_argument("--ip-delay", type=float, default=0.5,
                   help="seconds from create to the private IPv4 showing")
    s.add_argument("--public-ip-lag", type=float, default=0.5,
                   help="seconds from `active` to the public IPv4 showing")
    s.add_argument("--list-lag", type=float, default=1.0,
                   help="seconds a new droplet is left out of GET /v2/droplets")
    s.add_argument("--droplet-limit", type=int, default=25)
    s.add_argument("--rate-per-minute", type=int, default=250)
    s.add_argument("--keys-list-per-minute", type=int, default=10)
    s.add_argument("--firewall-delay", type=float, default=0.5,
                   help="seconds a firewall (change) stays `waiting`")
    s.add_argument("--action-delay", type=float, default=0.5,
                   help="seconds a power action takes")
    s.add_argument("--public-ports", default="8786,8787",
                   help="ports forwarded from each public IPv4 to the private one")
    s.add_argument("--drop-hold", type=float, default=120.0,
                   help="seconds a firewall-dropped connection is held unanswered")
    s.add_argument("--specs", default=None, help="default: ../shared/specs from the repo root")
    s.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    for name in ("boot_delay", "ip_delay", "public_ip_lag", "list_lag", "firewall_delay",
                 "action_delay", "drop_hold"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    try:
        ports = tuple(int(x) for x in args.public_ports.split(",") if x.strip())
    except ValueError:
        p.error("--public-ports: a comma-separated list of ports")
    return serve(args, ports)


def serve(args, ports):
    import dosim
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sim = dosim.start(args.workdir, args.python, args.token, port=args.port, bind=args.bind,
                          boot_delay=args.boot_delay, ip_delay=args.ip_delay,
                          public_ip_lag=args.public_ip_lag, list_lag=args.list_lag,
                          droplet_limit=args.droplet_limit, rate_per_minute=args.rate_per_minute,
                          keys_list_per_minute=args.keys_list_per_minute,
                          firewall_delay=args.firewall_delay, action_delay=args.action_delay,
                          public_ports=ports, drop_hold=args.drop_hold, specs=args.specs,
                          verbose=args.verbose)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"do-sim: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps({"ready": True, "url": sim.url, "ca_file": sim.tls.ca_file}), flush=True)
    print(f"do-sim: listening on {sim.url} (workdir {os.path.abspath(args.workdir)}, "
          f"sandbox: {sim.sandbox})", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    print("do-sim: stopping", file=sys.stderr, flush=True)
    sim.stop()
    print("do-sim: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
