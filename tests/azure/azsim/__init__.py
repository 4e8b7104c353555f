"""azsim: the Azure Resource Manager + Entra ID simulator, built on tests/simkit, its VMs booted
by tests/vmboot.

Owns `start(workdir, python, **options)`: loads the bundled ARM specs (shared/specs/azure/
bundled, read at run time) into one `MultiSpec`, makes the TLS files, the VM runtime (the CA
made trusted by the nodes' processes: SSL_CERT_FILE / REQUESTS_CA_BUNDLE, as a VM trusts
Azure's public CA), the world, the app and the HTTPS server (ARM and the token endpoint on one
port), and the IMDS server (plain HTTP, 169.254.169.254:80 added to `lo` in the sandbox, else
`--imds-bind`); returns a running `Sim` whose `stop()` stops everything. Modules: catalog, world,
api (AzApp), ratelimit, rbac, identity (token endpoint, IMDS), lro, resources (subscription,
groups, listings, SKUs, usages, images), network (addresses, NSG verdicts), netres + ifaces
(VNets, subnets, NSGs, public IPs, NICs), compute + vmlife (VMs), inventory.
"""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
REPO = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

SPEC_FILES = ["resources.2024-07-01", "computeRPCommon.2024-07-01", "virtualMachine.2024-07-01",
              "networkSecurityGroup.2024-03-01", "virtualNetwork.2024-03-01",
              "publicIpAddress.2024-03-01", "networkInterface.2024-03-01",
              "authorization-RoleAssignmentsCalls.2022-04-01"]
IMDS_IP = "169.254.169.254"
DEFAULTS = {
    "port": 0, "bind": "127.0.0.1", "specs": None, "verbose": False,
    "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "client_secret": None,
    "subscription": "00000000-0000-4000-8000-00000000c1c7",
    "sp_object_id": "5e1f0000-aaaa-4bbb-8ccc-000000000001",
    "federated_token_file": None, "client_certificate": None, "token_lifetime": 3600,
    "default_location": "eastus", "retry_after": 1, "network_delay": 0.3,
    "vm_create_delay": 1.0, "vm_delete_delay": 0.5, "rg_delete_delay": 1.0, "list_lag": 0.0,
    "vcpu_quota": 100, "family_quota": 50, "spot_quota": 100, "no_capacity": (),
    "spot_no_capacity": (), "overconstrained": (), "rbac_delay": 1.0, "principal_lag": 2.0,
    "reads_bucket": 250, "writes_bucket": 200, "public_ports": (8786, 8787),
    "drop_hold": 120.0, "imds_bind": None, "ttl_minute": 60.0,
    "sp_roles": ("Owner",), "identity_header": None, "imds_host_identity": False, "host_identity_roles": ("Owner",),
    "host_identity_object_id": "5e1f0000-aaaa-4bbb-8ccc-0000000000a1",
    "host_identity_client_id": "7c1d0000-bbbb-4ccc-8ddd-0000000000a2",
}


def default_specs():
    return os.path.join(os.path.dirname(REPO), "shared", "specs")


@dataclass
class Sim:
    server: object
    imds_server: object
    app: object
    world: object
    tls: object
    sandbox: bool
    imds: str

    @property
    def url(self):
        return self.server.url

    def stop(self):
        self.server.stop()
        if self.imds_server is not None:
            self.imds_server.stop()
        self.world.shutdown(self.app.rt, self.app.fwd)


def make_runtime(python, workdir, ttl_minute):
    from vmboot import LOOPBACK, SANDBOX_10, Refusal, VmRuntime
    try:
        rt = VmRuntime(python=python, workdir=workdir, events=None,
                       networks=(LOOPBACK, SANDBOX_10), subject="vm", name="az-sim",
                       ttl_minute=ttl_minute)
        return rt, Refusal, True
    except RuntimeError as exc:
        if "sandbox" not in str(exc):
            raise
        print(f"az-sim: not in the sandbox network namespace; VMs (10.x addresses) cannot boot "
              f"here:\n{exc}", file=sys.stderr, flush=True)
        rt = VmRuntime(python=python, workdir=workdir, events=None, networks=(LOOPBACK,),
                       subject="vm", name="az-sim", ttl_minute=ttl_minute)
        return rt, Refusal, False


def _imds_address(opts, sandbox):
    """(host, port) to serve IMDS on; adds 169.254.169.254/32 to `lo` inside the sandbox."""
    if opts["imds_bind"]:
        host, _, port = opts["imds_bind"].rpartition(":")
        return host, int(port)
    if not sandbox:
        return "127.0.0.1", 0
    have = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True,
                          text=True, timeout=10).stdout
    if f" {IMDS_IP}/" not in have:
        subprocess.run(["ip", "addr", "add", f"{IMDS_IP}/32", "dev", "lo"], check=True,
                       capture_output=True, timeout=10)
    return IMDS_IP, 80


def start(workdir, python, **options):
    from simkit import SimServer, TcpForwarder, make_tls, server_context
    from simkit.spec.swagger2 import MultiSpec
    from . import api, catalog
    from .identity import ImdsApp
    from .network import Addresses
    from .ratelimit import Limiter
    from .rbac import Rbac
    from .world import World

    opts = dict(DEFAULTS, **{k: v for k, v in options.items() if v is not None})
    opts["public_ports"] = tuple(int(p) for p in opts["public_ports"])
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    bundled = os.path.join(opts["specs"] or default_specs(), "azure", "bundled")
    paths = [os.path.join(bundled, f + ".bundled.json") for f in SPEC_FILES]
    for p in paths:
        if not os.path.exists(p):
            raise RuntimeError(f"spec file missing: {p}")
    spec = MultiSpec(paths, errata=api.ERRATA + [
        {"where": "query", "kind": "unknown", "pointer": r"\$skiptoken",
         "why": "nextLink URLs carry $skiptoken, which ARM specs do not declare (clients follow "
                "x-ms-pageable nextLink verbatim)"}])
    rt, refusal, sandbox = make_runtime(python, workdir, opts["ttl_minute"])
    tls = make_tls(workdir, hosts=[opts["bind"]], name="az-sim")
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        rt.base_env[k] = tls.ca_file          # the nodes trust "Azure's" CA, as a VM does
    opts["blob_key"] = secrets.token_bytes(32)
    world = World(opts)
    app = api.build(workdir, spec, world, opts, Limiter(opts["reads_bucket"],
                                                        opts["writes_bucket"]),
                    Rbac(world, opts))
    world.errors = app.errors
    app.rt, app.Refusal = rt, refusal
    app.fwd = TcpForwarder(drop_hold=opts["drop_hold"])
    app.addresses = Addresses()
    world.new_principal("service_principal")
    world.principals[opts["sp_object_id"]] = world.principals.popitem()[1]
    for key in ("sp_roles", "host_identity_roles"):
        unknown = [r for r in opts[key] if catalog.role_by_name(r) is None]
        if unknown:
            raise ValueError(f"--{key.replace('_', '-')}: no built-in role {unknown}")
    if opts["identity_header"] or opts["imds_host_identity"]:
        world.new_principal("host_identity")
        world.principals[opts["host_identity_object_id"]] = world.principals.popitem()[1]
    server = SimServer(app, opts["bind"], opts["port"], server_context(tls),
                       verbose=opts["verbose"]).start()
    app.base_url = server.url
    opts["authority"] = server.url
    host, port = _imds_address(opts, sandbox)
    imds_app = ImdsApp(workdir, app)
    imds_server = SimServer(imds_app, host, port, None, verbose=opts["verbose"]).start()
    opts["imds"] = imds_server.url
    opts["sandbox"] = sandbox
    world.start()
    return Sim(server, imds_server, app, world, tls, sandbox, imds_server.url)
