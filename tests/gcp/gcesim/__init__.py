"""gcesim: the Google Compute Engine simulator (plus OAuth, metadata server, Secret Manager and
IAM), built on tests/simkit and booted by tests/vmboot.

Owns `start(workdir, python, **options)`: loads the three discovery documents (compute v1,
secretmanager v1, iam v1; read at run time from ../shared/specs/gcp) into one
`MultiDiscovery`, makes the vmboot runtime (10.0.0.0/8 in the tests' sandbox namespace), the
World, the keys (auth.py), the HTTPS API server and the metadata server, and returns a running
`Sim`; `Sim.stop()` stops everything and every instance's processes. Modules: catalog, world,
operations, plan, instances, vms, filters, firewalls, network, resources, auth, metadata,
secrets, iam, errors, api. The command line is tests/gcp/gce_sim.py; README.md there describes
the behaviour.
"""

import os
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
REPO = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

SPEC_FILES = ("gcp/compute/v1/compute.v1.json", "gcp/secretmanager/v1/secretmanager.v1.json",
              "gcp/iam/v1/iam.v1.json")
DEFAULTS = {"port": 0, "bind": "127.0.0.1", "projects": ("clusterctl-sim",),
            "op_pending": 0.3, "op_delay": 1.0, "delete_delay": 1.0, "firewall_delay": 0.5,
            "wait_max": 120.0, "run_duration_scale": 1.0, "reads_per_minute": 1500,
            "writes_per_minute": 1500, "public_ports": (8786, 8787), "drop_hold": 120.0,
            "sa_propagation": 3.0, "iam_propagation": 1.0, "secret_latest_lag": 2.0,
            "metadata_bind": "169.254.169.254:80", "allow_anonymous": False,
            "stockouts": (), "quota": (), "service_accounts": (), "networks": (), "specs": None,
            "verbose": False}
ERRATA = []   # none needed so far: every finding is a client or simulator bug


def default_specs():
    return os.path.join(os.path.dirname(REPO), "shared", "specs")


@dataclass
class Sim:
    server: object
    app: object
    world: object
    tls: object
    auth: object
    metadata: object
    sandbox: bool

    @property
    def url(self):
        return self.server.url

    def stop(self):
        self.server.stop()
        self.metadata.stop()
        self.world.shutdown()


def make_runtime(python, workdir):
    from vmboot import LOOPBACK, SANDBOX_10, Refusal, VmRuntime
    try:
        rt = VmRuntime(python=python, workdir=workdir, events=None,
                       networks=(LOOPBACK, SANDBOX_10), subject="instance", name="gce-sim")
        return rt, Refusal, True
    except RuntimeError as exc:
        if "sandbox" not in str(exc):
            raise
        print(f"gce-sim: not in the sandbox network namespace; instances (10.x addresses) "
              f"cannot boot here:\n{exc}", file=sys.stderr, flush=True)
        rt = VmRuntime(python=python, workdir=workdir, events=None, networks=(LOOPBACK,),
                       subject="instance", name="gce-sim")
        return rt, Refusal, False


def start(workdir, python, **options):
    from simkit import SimServer, make_tls, server_context
    from simkit.spec.discovery import Discovery, MultiDiscovery
    from . import api
    from .auth import Auth
    from .federation import Federation
    from .firewalls import default_rules
    from .metadata import MetadataServer
    from .operations import Operations
    from .vms import Vms
    from .world import World

    opts = dict(DEFAULTS, **{k: v for k, v in options.items() if v is not None})
    opts["public_ports"] = tuple(int(p) for p in opts["public_ports"])
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    specs = opts["specs"] or default_specs()
    spec = MultiDiscovery([Discovery(os.path.join(specs, f), errata=ERRATA)
                           for f in SPEC_FILES])
    rt, refusal, sandbox = make_runtime(python, workdir)
    opts["sandbox"] = sandbox
    world = World(opts)
    world.operations = Operations(world)
    tls = make_tls(workdir, hosts=[opts["bind"]], name="gce-sim")
    world.vms = Vms(world, rt, refusal, sandbox, tls.ca_file, opts)
    for p in world.projects:
        for name, rule in default_rules(p).items():
            world.firewalls[(p, name)] = rule
    # the server's URL (port) is needed for token_uri: bind first, then build the app
    holder = {}

    class Late:
        def dispatch(self, req):
            return holder["app"].dispatch(req)
    server = SimServer(Late(), opts["bind"], opts["port"], server_context(tls),
                       verbose=opts["verbose"])
    project = opts["projects"][0]
    auth = Auth(workdir, server.url, project, f"clusterctl-tests@{project}.iam.gserviceaccount.com")
    federation = Federation(auth, workdir, server.url, project, world.number(project))
    app = api.build(workdir, spec, world, auth, federation, opts)
    world.errors = app.errors
    holder["app"] = app
    server.httpd.app = app
    app.base_url = server.url
    md = MetadataServer(world, auth, opts["metadata_bind"], sandbox)
    app.metadata = md
    world.vms.metadata = md
    from .iam import existing_account
    for account in opts["service_accounts"]:
        existing_account(world, project, account)
    server.start()
    world.start()
    return Sim(server, app, world, tls, auth, md, sandbox)
