"""dosim: the DigitalOcean API v2 simulator, built on tests/simkit and booted by tests/vmboot.

Owns `start(options)`: wires the pieces together and returns a running `Sim` (the HTTPS server,
the DoApp, the World, the TLS files); `Sim.stop()` stops the server, the forwarders and every
droplet's processes. Modules: catalog (regions, sizes, images, VPCs, account), world (state,
droplet life, billing), network (addresses, firewall verdicts), ratelimit, api (DoApp: auth,
limits, error shapes, pagination), resources / droplets / firewalls (the handlers).
The command line is tests/digitalocean/do_sim.py; README.md there describes the behaviour.
"""

import os
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
REPO = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

SPEC_FILE = os.path.join("digitalocean", "DigitalOcean-public.v2.subset.bundled.json")
DEFAULTS = {"port": 0, "bind": "127.0.0.1", "boot_delay": 1.0, "ip_delay": 0.5,
            "list_lag": 1.0, "droplet_limit": 25, "rate_per_minute": 250,
            "keys_list_per_minute": 10, "public_ip_lag": 0.5, "firewall_delay": 0.5,
            "action_delay": 0.5, "public_ports": (8786, 8787), "drop_hold": 120.0,
            "specs": None, "verbose": False}


def default_specs():
    """../shared/specs relative to the repository root."""
    return os.path.join(os.path.dirname(REPO), "shared", "specs")


@dataclass
class Sim:
    server: object
    app: object
    world: object
    tls: object
    sandbox: bool

    @property
    def url(self):
        return self.server.url

    def stop(self):
        self.server.stop()
        self.world.shutdown()


def make_runtime(python, workdir):
    """vmboot's VmRuntime for droplets; (runtime, Refusal, in_sandbox). 10.0.0.0/8 addresses
    need the sandbox namespace: elsewhere the runtime takes loopback only, so a droplet with
    user_data is refused there (agent-errors.jsonl) and its public address cannot be served."""
    from vmboot import LOOPBACK, SANDBOX_10, Refusal, VmRuntime
    try:
        rt = VmRuntime(python=python, workdir=workdir, events=None,
                       networks=(LOOPBACK, SANDBOX_10), subject="droplet", name="do-sim")
        return rt, Refusal, True
    except RuntimeError as exc:
        if "sandbox" not in str(exc):
            raise
        print(f"do-sim: not in the sandbox network namespace; droplets (10.x addresses) "
              f"cannot boot here:\n{exc}", file=sys.stderr, flush=True)
        rt = VmRuntime(python=python, workdir=workdir, events=None, networks=(LOOPBACK,),
                       subject="droplet", name="do-sim")
        return rt, Refusal, False


def start(workdir, python, token, **options):
    from simkit import SimServer, TcpForwarder, make_tls, server_context
    from . import api
    from .ratelimit import RateLimiter
    from .world import World

    opts = dict(DEFAULTS, **{k: v for k, v in options.items() if v is not None})
    opts["public_ports"] = tuple(int(p) for p in opts["public_ports"])
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    spec_path = os.path.join(opts["specs"] or default_specs(), SPEC_FILE)
    rt, refusal, sandbox = make_runtime(python, workdir)
    fwd = TcpForwarder(drop_hold=opts["drop_hold"])
    world = World(opts, rt, refusal, fwd, errors=None)
    limiter = RateLimiter(per_minute=opts["rate_per_minute"],
                          keys_list_per_minute=opts["keys_list_per_minute"])
    app = api.build(workdir, spec_path, token, world, limiter, opts)
    world.errors = app.errors
    opts["sandbox"] = sandbox
    tls = make_tls(workdir, hosts=[opts["bind"]], name="do-sim")
    server = SimServer(app, opts["bind"], opts["port"], server_context(tls),
                       verbose=opts["verbose"]).start()
    app.base_url = server.url
    world.start()
    return Sim(server, app, world, tls, sandbox)
