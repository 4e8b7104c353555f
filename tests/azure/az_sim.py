#!/usr/bin/env python3
"""The Azure Resource Manager + Entra ID simulator's command line (the package is azsim/).

    $PY tests/azure/az_sim.py serve --workdir DIR --python PY
        [--client-secret S | --token S] [--tenant T] [--client-id C] [--subscription S]
        [--federated-token-file F] [--client-certificate PEM] [--port 0] [--bind 127.0.0.1]
        [--imds-bind HOST:PORT] [--specs DIR] [--sp-roles R,..] [--identity-header S]
        [delays, quotas, capacity: see --help]
    $PY tests/azure/az_sim.py make-cert --out F.pem [--pkcs1] [--key-from OTHER.pem]

Prints one line on stdout once listening — {"ready": true, "url": "https://127.0.0.1:PORT",
"ca_file": "DIR/ca.pem", "authority": "https://127.0.0.1:PORT", "imds":
"http://169.254.169.254:80"} — and runs until SIGTERM/SIGINT, then stops every VM's processes
and exits 0 (2 if it cannot start). ARM is {url}/subscriptions/...; the token endpoint is
{authority}/{tenant}/oauth2/v2.0/token; the control API is {url}/_sim/... (see README.md).
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _list(text):
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def main(argv=None):
    p = argparse.ArgumentParser(prog="az_sim.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve ARM, the token endpoint and IMDS until SIGTERM")
    s.add_argument("--workdir", required=True)
    s.add_argument("--python", required=True, help="the VMs' Python (with distributed)")
    s.add_argument("--client-secret", help="the service principal's secret")
    s.add_argument("--token", help="alias of --client-secret (the harness passes --token)")
    s.add_argument("--tenant")
    s.add_argument("--client-id")
    s.add_argument("--subscription")
    s.add_argument("--sp-object-id", help="the service principal's object id")
    s.add_argument("--federated-token-file",
                   help="a client_assertion equal to this file's content is accepted")
    s.add_argument("--client-certificate",
                   help="PEM certificate whose key signs accepted client_assertion JWTs")
    s.add_argument("--token-lifetime", type=int, help="seconds (default 3600)")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--bind", default="127.0.0.1")
    s.add_argument("--imds-bind", help="HOST:PORT for IMDS (default 169.254.169.254:80 in the "
                                       "sandbox, else 127.0.0.1:0)")
    s.add_argument("--retry-after", type=int, help="Retry-After seconds on LROs (default 1)")
    s.add_argument("--network-delay", type=float, help="Network PUT/DELETE seconds (0.3)")
    s.add_argument("--vm-create-delay", type=float, help="VM create seconds (1.0)")
    s.add_argument("--vm-delete-delay", type=float, help="VM delete seconds (0.5)")
    s.add_argument("--rg-delete-delay", type=float, help="resource group delete seconds (1.0)")
    s.add_argument("--list-lag", type=float, help="seconds a new resource is left out of "
                                                  "resource listings (0)")
    s.add_argument("--vcpu-quota", type=int, help="Total Regional vCPUs (100)")
    s.add_argument("--family-quota", type=int, help="vCPUs per size family (50)")
    s.add_argument("--spot-quota", type=int, help="Low-priority vCPUs (100)")
    s.add_argument("--no-capacity", help="sizes whose allocation fails (comma-separated)")
    s.add_argument("--spot-no-capacity", help="sizes whose Spot allocation fails")
    s.add_argument("--overconstrained", help="sizes failing OverconstrainedAllocationRequest")
    s.add_argument("--rbac-delay", type=float, help="seconds before a role assignment applies")
    s.add_argument("--principal-lag", type=float,
                   help="seconds before a new identity is known to role assignments (2)")
    s.add_argument("--reads-bucket", type=int, help="ARM read bucket (250)")
    s.add_argument("--writes-bucket", type=int, help="ARM write/delete bucket (200)")
    s.add_argument("--public-ports", default="8786,8787")
    s.add_argument("--drop-hold", type=float, help="seconds an NSG-dropped connection is held")
    s.add_argument("--ttl-minute", type=float,
                   help="seconds per minute of the nodes' `shutdown -P +N` (60)")
    s.add_argument("--sp-roles", help="built-in roles of the service principal at the "
                                      "subscription, comma-separated (default Owner)")
    s.add_argument("--identity-header",
                   help="serve App Service's identity endpoint {url}/msi/token for the host's "
                        "managed identity, with this X-IDENTITY-HEADER secret")
    s.add_argument("--imds-host-identity", action="store_true",
                   help="IMDS gives a connection from no VM's address the host's identity")
    s.add_argument("--host-identity-roles", help="roles of that identity (default Owner)")
    s.add_argument("--specs", default=None, help="default: ../shared/specs from the repo root")
    s.add_argument("--verbose", action="store_true")
    c = sub.add_parser("make-cert", help="write a self-signed client certificate and its RSA "
                                         "key in one PEM file (for --client-certificate)")
    c.add_argument("--out", required=True)
    c.add_argument("--pkcs1", action="store_true", help="the key as `RSA PRIVATE KEY`")
    c.add_argument("--key-from", help="reuse the key of this PEM file (another certificate "
                                      "of the same key)")
    c.add_argument("--from", dest="from_", help="re-encode this PEM file's certificate and "
                                                "key (e.g. with --pkcs1)")
    c.add_argument("--cn", default="clusterctl-test")
    args = p.parse_args(argv)
    if args.cmd == "make-cert":
        return make_cert(args)
    secret = args.client_secret or args.token
    if not secret and not args.federated_token_file and not args.client_certificate:
        p.error("give --client-secret (or --token), --federated-token-file or "
                "--client-certificate")
    try:
        ports = tuple(int(x) for x in _list(args.public_ports))
    except ValueError:
        p.error("--public-ports: a comma-separated list of ports")
    opts = {k: getattr(args, k) for k in (
        "tenant", "client_id", "subscription", "sp_object_id", "federated_token_file",
        "client_certificate", "token_lifetime", "port", "bind", "imds_bind", "retry_after",
        "network_delay", "vm_create_delay", "vm_delete_delay", "rg_delete_delay", "list_lag",
        "vcpu_quota", "family_quota", "spot_quota", "rbac_delay", "principal_lag",
        "reads_bucket", "writes_bucket", "drop_hold", "ttl_minute", "specs", "verbose")}
    for k in ("no_capacity", "spot_no_capacity", "overconstrained", "sp_roles",
              "host_identity_roles"):
        opts[k] = _list(getattr(args, k)) if getattr(args, k) else None
    opts["identity_header"] = args.identity_header
    opts["imds_host_identity"] = args.imds_host_identity
    for k, v in opts.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            p.error(f"--{k.replace('_', '-')} must not be negative")
    opts["client_secret"], opts["public_ports"] = secret, ports
    return serve(args, opts)


def make_cert(args):
    """A self-signed RSA-2048 certificate valid for a day, and its key, in one PEM file."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    if args.from_:
        with open(args.from_, "rb") as fh:
            raw = fh.read()
        key = serialization.load_pem_private_key(raw, password=None)
        cert = x509.load_pem_x509_certificate(raw)
        return _write_cert(args, cert, key)
    if args.key_from:
        with open(args.key_from, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return _write_cert(args, cert, key)


def _write_cert(args, cert, key):
    from cryptography.hazmat.primitives import serialization
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if args.pkcs1
           else serialization.PrivateFormat.PKCS8)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return 0


def serve(args, opts):
    import azsim
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sim = azsim.start(args.workdir, args.python, **opts)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        print(f"az-sim: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:      # e.g. `ip addr add` failing
        print(f"az-sim: cannot start: {exc!r}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps({"ready": True, "url": sim.url, "ca_file": sim.tls.ca_file,
                      "authority": sim.url, "imds": sim.imds}), flush=True)
    o = sim.app.opts
    print(f"az-sim: listening on {sim.url} (tenant {o['tenant']}, client {o['client_id']}, "
          f"subscription {o['subscription']}, IMDS {sim.imds}, workdir "
          f"{os.path.abspath(args.workdir)}, sandbox: {sim.sandbox})", file=sys.stderr,
          flush=True)
    while not stop.wait(1.0):
        pass
    print("az-sim: stopping", file=sys.stderr, flush=True)
    sim.stop()
    print("az-sim: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
