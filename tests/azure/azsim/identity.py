"""Entra ID's token endpoint and the VMs' Instance Metadata Service (IMDS).

Owns:
- `POST {authority}/{tenant}/oauth2/v2.0/token` (form-encoded, as azure_identity 1.x sends it):
  `grant_type=client_credentials`, `client_id`, `scope` (one `<resource>/.default`), and either
  `client_secret` (ClientSecretCredential) or `client_assertion` +
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
  (ClientAssertionCredential / WorkloadIdentityCredential: the assertion must equal the content
  of `--federated-token-file`; ClientCertificateCredential: a JWT signed with the key of
  `--client-certificate`, `aud` = this endpoint, `iss` = `sub` = the client id, unexpired).
  Success: `{token_type, expires_in (number), ext_expires_in, access_token}`; failures: Entra's
  `{error, error_description "AADSTSnnnn: ...", error_codes, timestamp, trace_id,
  correlation_id, error_uri}` (unknown tenant 400 AADSTS90002, unknown client 400 AADSTS700016,
  wrong secret 401 AADSTS7000215, bad assertion 401 AADSTS700211/700027, bad scope 400
  AADSTS70011, other grant 400 AADSTS70003). Access tokens are opaque random strings that ARM
  looks up (world.tokens), expiring after `--token-lifetime`.
- IMDS (plain HTTP, `ImdsApp`, bound on 169.254.169.254:80 in the sandbox): the VM is the one
  whose NIC's private IP the connection comes from. `GET /metadata/identity/oauth2/token
  ?api-version=...&resource=https://management.azure.com[/]` with `Metadata: true` gives the
  VM's system-assigned identity a token (`expires_in`/`expires_on` as strings); without the
  header 400 `bad_request_102`; a VM without an identity 400 "Identity not found".
  `GET /metadata/instance` (compute name, resourceGroupName, subscriptionId, location, vmId,
  vmSize, tags, tagsList; network; never customData) and `/metadata/instance/compute/userData`
  (base64 userData, readable by any process on the VM).
"""

import base64
import hmac
import json
import os
import secrets
import time
import urllib.parse
import uuid

from simkit import ApiError, NO_BODY, Response, SimApp

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ARM_AUDIENCES = {"https://management.azure.com": "https://management.azure.com/",
                 "https://management.azure.com/": "https://management.azure.com/",
                 "https://management.core.windows.net": "https://management.core.windows.net/",
                 "https://management.core.windows.net/": "https://management.core.windows.net/"}
OTHER_AUDIENCES = {"https://vault.azure.net", "https://storage.azure.com",
                   "https://graph.microsoft.com"}
TOKEN_SCHEMA = {"type": "object", "additionalProperties": False,
                "required": ["token_type", "expires_in", "ext_expires_in", "access_token"],
                "properties": {"token_type": {"enum": ["Bearer"]},
                               "expires_in": {"type": "integer"},
                               "ext_expires_in": {"type": "integer"},
                               "access_token": {"type": "string"}}}
IMDS_TOKEN_SCHEMA = {"type": "object", "additionalProperties": False,
                     "required": ["access_token", "client_id", "expires_in", "expires_on",
                                  "ext_expires_in", "not_before", "resource", "token_type"],
                     "properties": {k: {"type": "string"} for k in (
                         "access_token", "client_id", "expires_in", "expires_on",
                         "ext_expires_in", "not_before", "resource", "token_type")}}
IMDS_VERSIONS = {"2017-08-01", "2017-12-01", "2018-02-01", "2018-04-02", "2018-10-01",
                 "2019-02-01", "2019-03-11", "2019-06-01", "2019-06-04", "2019-08-01",
                 "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01",
                 "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
                 "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
                 "2022-02-01", "2022-03-01", "2023-07-01"}


def issue(world, principal, kind, aud, lifetime, **extra):
    token = "azsim." + secrets.token_urlsafe(40)
    exp = time.time() + lifetime
    with world.lock:
        now = time.time()
        for t in [t for t, i in world.tokens.items() if i["exp"] < now - 3600]:
            world.tokens.pop(t, None)
        world.tokens[token] = {"principal": principal, "kind": kind, "exp": exp, "aud": aud,
                               "issued": time.time(), **extra}
    return token, exp


def _entra_error(app, status, error, code, text):
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace = str(uuid.uuid4())
    body = {"error": error, "error_description":
            f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {trace} Timestamp: {now}",
            "error_codes": [code], "timestamp": now, "trace_id": trace,
            "correlation_id": trace, "error_uri": f"{app.opts['authority']}/error?code={code}"}
    return ApiError(status, error, text, body=body)


def _b64url(data):
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _verify_certificate_assertion(app, assertion, client_id, tenant):
    """Problems of a certificate JWT (None when valid)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    try:
        head, payload, sig = assertion.split(".")
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(payload))
        with open(app.opts["client_certificate"], "rb") as fh:
            pem = fh.read()
        cert = x509.load_pem_x509_certificate(pem)
        key, signed, signature = cert.public_key(), f"{head}.{payload}".encode(), _b64url(sig)
        alg = header.get("alg")
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                      padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        else:
            return f"unsupported alg {alg!r} for this certificate"
    except Exception as exc:
        return f"Client assertion contains an invalid signature. ({exc.__class__.__name__})"
    aud = f"{app.opts['authority']}/{tenant}/oauth2/v2.0/token"
    if claims.get("aud") not in (aud, aud.replace("/oauth2/v2.0/token", "/v2.0")):
        return f"The audience '{claims.get('aud')}' is invalid (expected '{aud}')."
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "The client assertion's iss and sub must be the client id."
    if float(claims.get("exp", 0)) < time.time():
        return "The provided client assertion is expired."
    return None


def token_endpoint(app, req, tenant):
    o = app.opts
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    form = {k: v[-1] for k, v in urllib.parse.parse_qs(req.raw_body.decode("utf-8", "replace"),
                                                       keep_blank_values=True).items()} \
        if ctype == "application/x-www-form-urlencoded" else {}
    if tenant.lower() not in (o["tenant"].lower(), "organizations"):
        raise _entra_error(app, 400, "invalid_request", 90002,
                           f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                           "tenant ID and are signing into the correct cloud.")
    if "grant_type" not in form:
        raise _entra_error(app, 400, "invalid_request", 900144,
                           "The request body must contain the following parameter: "
                           "'grant_type'.")
    if form["grant_type"] != "client_credentials":
        raise _entra_error(app, 400, "unsupported_grant_type", 70003,
                           "The app requested an unsupported grant type "
                           f"'{form['grant_type']}'.")
    client_id = form.get("client_id", "")
    if client_id != o["client_id"]:
        raise _entra_error(app, 400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{o['tenant']}'.")
    scope = form.get("scope", "")
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise _entra_error(app, 400, "invalid_scope", 1002012,
                           f"The provided value for scope {scope} is not valid. Client "
                           "credential flows must have a scope value with /.default suffixed "
                           "to the resource identifier (application ID URI).")
    resource = scopes[0][: -len("/.default")]
    aud = ARM_AUDIENCES.get(resource) or (resource if resource in OTHER_AUDIENCES else None)
    if aud is None:
        raise _entra_error(app, 400, "invalid_resource", 500011,
                           f"The resource principal named {resource} was not found in the "
                           f"tenant named {o['tenant']}.")
    if "client_secret" in form:
        if not o.get("client_secret") or not hmac.compare_digest(
                form["client_secret"].encode(), o["client_secret"].encode()):
            raise _entra_error(app, 401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in "
                               "the request is the client secret value, not the client secret "
                               f"ID, for a secret added to app '{client_id}'.")
        how = "client_secret"
    elif "client_assertion" in form:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _entra_error(app, 400, "invalid_request", 90014,
                               "The request body must contain the following parameter: "
                               "'client_assertion_type'.")
        assertion = form["client_assertion"]
        how, problem = None, "No matching federated identity record found for presented " \
                             "assertion."
        fed = o.get("federated_token_file")
        if fed and os.path.exists(fed):
            with open(fed, encoding="utf-8") as fh:
                if hmac.compare_digest(fh.read().strip().encode(), assertion.strip().encode()):
                    how, problem = "federated_token", None
        if how is None and o.get("client_certificate"):
            problem = _verify_certificate_assertion(app, assertion, client_id, tenant)
            how = "client_certificate" if problem is None else None
        if how is None:
            raise _entra_error(app, 401, "invalid_client", 700211 if fed else 700027, problem)
    else:
        raise _entra_error(app, 401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: "
                           "'client_assertion' or 'client_secret'.")
    token, exp = issue(app.world, o["sp_object_id"], "service_principal", aud,
                       o["token_lifetime"], credential=how)
    app.world.event("token-issued", principal=o["sp_object_id"], credential=how, aud=aud)
    life = int(exp - time.time())
    return Response(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                          "access_token": token}, headers={"Cache-Control": "no-store, no-cache"})


def register(app):
    app.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token",
              lambda req: token_endpoint(app, req, req.ctx["route_params"]["tenant"]),
              "entra: token", schema=TOKEN_SCHEMA, public=True)
    orig = app.bad_json

    def bad_json(req, exc):
        route = app._find_route(req)
        if route is not None and route[1].startswith("entra"):
            return None           # a form body: the handler reads raw_body
        return orig(req, exc)
    app.bad_json = bad_json


# ----- IMDS -----

class ImdsApp(SimApp):
    name = "az-sim-imds"

    def __init__(self, workdir, arm):
        super().__init__(workdir, None)
        self.arm, self.world = arm, arm.world
        self.requests, self.errors = arm.requests, arm.errors
        self.add_route("GET", r"/metadata/identity/oauth2/token", self.token, "imds: token")
        self.add_route("GET", r"/metadata/instance", self.instance, "imds: instance")
        self.add_route("GET", r"/metadata/instance/compute/userData", self.user_data,
                       "imds: userData")

    def error_body(self, req, status, code, message):
        return {"error": code, "error_description": message}

    def bad_json(self, req, exc):
        return None

    def no_route(self, req, allowed):
        raise ApiError(404, "not_found", "Not found")

    def check_unmatched(self, req, resp):
        if req.ctx.get("route") == "imds: token" and resp.status == 200:
            import jsonschema
            v = jsonschema.Draft4Validator(IMDS_TOKEN_SCHEMA)
            from simkit import Problem
            return [Problem("response", "/" + "/".join(map(str, e.absolute_path)), "schema",
                            e.message) for e in v.iter_errors(resp.body)]
        return []

    def _vm(self, req, version_required=True):
        if (req.headers.get("metadata") or "").lower() != "true":
            raise ApiError(400, "bad_request_102", "Required metadata header not specified")
        if req.headers.get("x-forwarded-for"):
            raise ApiError(400, "bad_request", "Request contains forwarded header")
        ver = req.q("api-version")
        if version_required and ver not in IMDS_VERSIONS:
            raise ApiError(400, "bad_request", "Invalid or bad request. api-version is invalid"
                           " or was not specified in the request.")
        from .compute import vm_by_private_ip
        with self.world.lock:
            vm = vm_by_private_ip(self.world, req.client[0] if req.client else "")
        if vm is None:
            raise ApiError(400, "invalid_request", f"no VM has the private address "
                           f"{req.client[0] if req.client else '?'} (the connection's source)")
        return vm

    def token(self, req):
        vm = self._vm(req)
        resource = req.q("resource") or ""
        aud = ARM_AUDIENCES.get(resource) or (resource.rstrip("/") if resource.rstrip("/") in
                                              OTHER_AUDIENCES else None)
        if aud is None:
            raise ApiError(400, "invalid_resource", f"AADSTS500011: The resource principal "
                           f"named {resource} was not found in the tenant.")
        pid = (vm.get("_identity") or {}).get("principalId")
        if not pid:
            raise ApiError(400, "invalid_request", "Identity not found")
        life = self.arm.opts["token_lifetime"]
        token, exp = issue(self.world, pid, "managed_identity", aud, life, vm=vm["id"])
        self.world.event("imds-token", vm=vm["id"], principal=pid, aud=aud)
        now = int(time.time())
        return Response(200, {"access_token": token, "client_id": vm["_identity"]["clientId"],
                              "expires_in": str(int(exp) - now), "expires_on": str(int(exp)),
                              "ext_expires_in": str(int(exp) - now), "not_before": str(now),
                              "resource": resource, "token_type": "Bearer"})

    def instance(self, req):
        vm = self._vm(req)
        from .compute import imds_instance
        with self.world.lock:
            return Response(200, imds_instance(self.world, vm))

    def user_data(self, req):
        vm = self._vm(req)
        text = vm.get("_user_data") or ""
        return Response(200, NO_BODY, raw=text.encode(), content_type="text/plain")
