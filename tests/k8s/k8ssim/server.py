"""The HTTPS front of the simulated API server (tornado).

Owns: the CA + serving certificate for 127.0.0.1, the kubeconfig, bearer-token auth (401 Status
otherwise), the request log (WORKDIR/sim-requests.jsonl: method, path, query, status,
content-type; never bodies), API fault injection, discovery (/version, /api, /api/v1, /apis,
/apis/<group>/<version>, /healthz...), the admin routes (/_sim/faults, /_sim/objects,
/_sim/gate: the crash-point gate of tests/simkit/gate.py), the
port-forward route (portforward.PortForwardHandler after auth) and `serve()`, which wires the
Sim, the kubelet and the operator together. The REST verbs live in rest.py.
"""

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import secrets
import signal
import ssl
import sys
import time

import tornado.httpserver
import tornado.netutil
import tornado.web
import yaml

from . import Sim
from .store import RESOURCES, ApiError

VERSION = {"major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
           "minCompatibilityMajor": "1", "minCompatibilityMinor": "34",
           "gitVersion": "v1.35.0-sim", "gitCommit": "0000000000000000000000000000000000000000",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0",
           "compiler": "gc", "platform": "linux/amd64"}


# ----- TLS -----

def make_certs(workdir):
    """A fresh CA and a serving cert for 127.0.0.1/localhost; returns (ca_pem, cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s-sim-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = os.path.join(workdir, "sim-tls")
    os.makedirs(tls, exist_ok=True)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = os.path.join(tls, "server.crt"), os.path.join(tls, "server.key")
    with open(os.path.join(tls, "ca.crt"), "wb") as fh:
        fh.write(ca_pem)
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return ca_pem, cert_path, key_path


def write_kubeconfig(path, url, ca_pem, token, namespace):
    cfg = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "sim", "cluster": {
               "server": url, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "users": [{"name": "sim", "user": {"token": token}}],
           "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim",
                                                    "namespace": namespace}}],
           "current-context": "sim"}
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        yaml.safe_dump(cfg, fh, sort_keys=False)
    os.replace(tmp, path)


# ----- base handler -----

class BaseHandler(tornado.web.RequestHandler):
    """Auth, faults, JSON answers as Status objects, request logging."""

    def initialize(self, sim, token):
        self.sim, self.token = sim, token
        self._t0 = time.time()

    def check_xsrf_cookie(self):
        pass

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache, private")
        self.set_header("Audit-Id", secrets.token_hex(8))

    async def prepare(self):
        if not authorized(self.request, self.token):
            self.fail(ApiError(401, "Unauthorized", "Unauthorized"))
            return
        if not self.request.path.startswith("/_sim/"):
            admitted = await self.sim.gate.aenter(self.request.method, self.request.path)
            if admitted is False:   # held at a crash point, then dropped: nothing processed
                self._gate_dropped = True
                self.set_status(503)
                self.finish()
                return
            self._gate_admitted = bool(admitted)
            err = self.sim.faults.match_api(self.request.method, self.request.path)
            if err is not None:
                self.fail(err)

    def write_json(self, obj, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj, separators=(",", ":")))

    def status_obj(self, err):
        st = err.to_status()
        try:
            self.sim.admission.check_schema_output("io.k8s.apimachinery.pkg.apis.meta.v1.Status", st)
        except ApiError as bad:
            st = bad.to_status()
        return st

    def fail(self, err):
        if self._finished:
            return
        for k, v in err.headers.items():
            self.set_header(k, v)
        self.write_json(self.status_obj(err), err.status)

    def log_exception(self, typ, value, tb):
        if isinstance(value, (ApiError, tornado.web.HTTPError)):
            return      # an API answer, logged in sim-requests.jsonl
        super().log_exception(typ, value, tb)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            self.fail(exc)
            return
        if isinstance(exc, tornado.web.HTTPError):
            reason = {404: "NotFound", 405: "MethodNotAllowed", 400: "BadRequest"}.get(status_code, "InternalError")
            msg = "the server could not find the requested resource" if status_code == 404 else \
                (exc.log_message or "error")
            self.fail(ApiError(status_code, reason, msg))
            return
        self.sim.errors("server-exception", {"method": self.request.method, "path": self.request.path,
                                             "error": repr(exc)})
        self.fail(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}"))

    def on_finish(self):
        if getattr(self, "_gate_admitted", False):
            self.sim.gate.leave()
        if getattr(self, "_gate_dropped", False):
            return
        q = {k: [v.decode(errors="replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        self.sim.log_request({"time": round(self._t0, 3), "method": self.request.method,
                              "path": self.request.path, "query": q, "status": self.get_status(),
                              "content_type": self.request.headers.get("Content-Type"),
                              "accept": self.request.headers.get("Accept"),
                              "user_agent": self.request.headers.get("User-Agent"),
                              "ms": round((time.time() - self._t0) * 1000, 1)})


def authorized(request, token):
    got = request.headers.get("Authorization", "")
    return got.startswith("Bearer ") and secrets.compare_digest(got[7:].strip(), token)


# ----- discovery -----

def api_resource_list(group_version, resources):
    out = []
    for res in resources:
        out.append({"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced,
                    "kind": res.kind, "verbs": res.verbs, **({"shortNames": res.short} if res.short else {}),
                    **({"categories": res.categories} if res.categories else {}),
                    "storageVersionHash": base64.b64encode(res.plural.encode()).decode()[:11]})
        for sub in res.subresources:
            verbs = {"status": ["get", "patch", "update"], "log": ["get"],
                     "portforward": ["create", "get"], "finalize": ["update"]}[sub]
            out.append({"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced,
                        "kind": {"log": "Pod", "portforward": "PodPortForwardOptions"}.get(sub, res.kind),
                        "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": out}


def served(sim):
    return [r for r in RESOURCES.values() if r.kind != "DaskCluster" or sim.with_dask]


class DiscoveryHandler(BaseHandler):
    def get(self, *_):
        if self._finished:
            return
        path = self.request.path.rstrip("/")
        sim = self.sim
        if path == "/version":
            return self.write_json(VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            return self.finish("ok")
        if path == "/api":
            return self.write_json({"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [
                                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.request.host}]})
        if path == "/api/v1":
            body = api_resource_list("v1", [r for r in served(sim) if r.group == ""])
            sim.admission.check_schema_output("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", body)
            return self.write_json(body)
        if path == "/openapi/v3":
            return self.write_json({"paths": {"api/v1": {
                "serverRelativeURL": f"/openapi/v3/api/v1?hash={sim.admission.core_hash}"}}})
        if path == "/openapi/v3/api/v1":
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-cache, private")
            return self.finish(sim.admission.core_raw)
        groups = sorted({r.group for r in served(sim) if r.group})
        if path == "/apis":
            return self.write_json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in groups]})
        parts = path.split("/")
        if len(parts) == 3 and parts[2] in groups:
            g = parts[2]
            return self.write_json({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}})
        if len(parts) == 4 and parts[2] in groups and parts[3] == "v1":
            body = api_resource_list(f"{parts[2]}/v1", [r for r in served(sim) if r.group == parts[2]])
            sim.admission.check_schema_output("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", body)
            return self.write_json(body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


# ----- admin -----

class FaultsHandler(BaseHandler):
    def get(self):
        if not self._finished:
            self.write_json(self.sim.faults.snapshot())

    def post(self):
        if self._finished:
            return
        try:
            spec = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid JSON: {exc}")
        self.sim.faults.set(spec)
        self.write_json(self.sim.faults.snapshot())


class GateHandler(BaseHandler):
    """The crash-point gate of tests/simkit/gate.py (GET state, POST arm, DELETE disarm)."""

    def get(self):
        if not self._finished:
            self.write_json(self.sim.gate.state())

    def post(self):
        if self._finished:
            return
        try:
            self.write_json(self.sim.gate.arm(json.loads(self.request.body or b"{}")))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc))

    def delete(self):
        if not self._finished:
            self.write_json(self.sim.gate.disarm())


def load_gate():
    """tests/simkit/gate.py, loaded by path (the simkit package itself is not needed here)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "simkit", "gate.py")
    spec = importlib.util.spec_from_file_location("simkit_gate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Gate()


class ObjectsHandler(BaseHandler):
    def get(self):
        if self._finished:
            return
        sel = self.get_query_argument("labelSelector", None)
        from .selectors import SelectorError, match_labels
        out = {}
        try:
            for kind, obj in self.sim.store.all_objects():
                if sel and not match_labels(sel, obj["metadata"].get("labels")):
                    continue
                out.setdefault(kind, []).append(obj)
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc))
        self.write_json({"objects": out, "resourceVersion": self.sim.store.resource_version,
                         "requests": dict(self.sim.request_counts)})


# ----- app -----

def make_app(sim, token):
    from .rest import ResourceHandler
    if getattr(sim, "gate", None) is None:
        sim.gate = load_gate()
    args = {"sim": sim, "token": token}
    routes = [
        (r"/(version|healthz|readyz|livez)/?", DiscoveryHandler, args),
        (r"/api/?", DiscoveryHandler, args),
        (r"/api/v1/?", DiscoveryHandler, args),
        (r"/apis/?", DiscoveryHandler, args),
        (r"/openapi/v3(/api/v1)?", DiscoveryHandler, args),
        (r"/apis/([^/]+)/?", DiscoveryHandler, args),
        (r"/apis/([^/]+)/([^/]+)/?", DiscoveryHandler, args),
        (r"/_sim/faults", FaultsHandler, args),
        (r"/_sim/objects", ObjectsHandler, args),
        (r"/_sim/gate", GateHandler, args),
    ]
    try:
        from .portforward import PortForwardHandler
    except ImportError:
        PortForwardHandler = None
    if PortForwardHandler is not None:
        class AuthedPortForward(PortForwardHandler):
            def prepare(self):
                if not authorized(self.request, token):
                    self.set_status(401)
                    self.set_header("Content-Type", "application/json")
                    self.finish(json.dumps(ApiError(401, "Unauthorized", "Unauthorized").to_status()))
                    return None
                return super().prepare()
        routes.append((r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward", AuthedPortForward,
                       {"sim": sim}))
    routes.append((r"/(api|apis)/.*", ResourceHandler, args))
    return tornado.web.Application(routes, default_handler_class=DiscoveryHandler,
                                   default_handler_args=args, compress_response=False,
                                   log_function=lambda handler: None)


async def serve(args):
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    sim = Sim(workdir, specs_dir=args.specs, with_dask=args.with_dask_operator,
              namespace=args.namespace, node_cpu=args.node_cpu, node_memory=args.node_memory,
              python=args.python)
    sim.bootstrap()
    token = secrets.token_urlsafe(32)
    token_file = os.path.join(workdir, "sim-token")
    with open(token_file, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(token)
    ca_pem, cert, key = make_certs(workdir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    app = make_app(sim, token)
    server = tornado.httpserver.HTTPServer(app, ssl_options=ctx, idle_connection_timeout=3600,
                                           body_timeout=300, max_body_size=16 * 1024 * 1024)
    socks = tornado.netutil.bind_sockets(args.port, address="127.0.0.1")
    server.add_sockets(socks)
    port = socks[0].getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    kubeconfig = os.path.abspath(args.kubeconfig_out or os.path.join(workdir, "kubeconfig"))
    write_kubeconfig(kubeconfig, url, ca_pem, token, args.namespace)
    from .kubelet import Kubelet
    sim.kubelet = Kubelet(sim, args.python, workdir,
                          backoff_scale=getattr(args, "backoff_scale", 1.0))
    sim.kubelet.start()
    if args.with_dask_operator:
        from .operator import Operator
        sim.operator = Operator(sim)
        sim.operator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ready": True, "url": url, "kubeconfig": kubeconfig, "token_file": token_file,
                      "workdir": workdir, "pid": os.getpid()}), flush=True)
    await stop.wait()
    server.stop()
    try:
        sim.kubelet.stop()
    finally:
        if sim.operator is not None:
            sim.operator.stop()
        sim.gc.stop()
        sim.endpoints.stop()
    sys.stdout.flush()
