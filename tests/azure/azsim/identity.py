"""Entra ID's token endpoint and the VMs' Instance Metadata Service (IMDS).

Owns:
- `POST {authority}/{tenant}/oauth2/v2.0/token` (form-encoded, as azure_identity 1.x sends it):
  `grant_type=client_credentials`, `client_id`, `scope` (one `<resource>/.default`), and either
  `client_secret` (ClientSecretCredential) or `client_assertion` +
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
  (ClientAssertionCredential / WorkloadIdentityCredential: the assertion must equal the content
  of `--federated-token-file`; ClientCertificateCredential: a JWT naming the certificate of
  `--client-certificate` by `x5t` (SHA-1) or `x5t#S256`, signed RS256/PS256 with its key, `aud` =
  this endpoint, `iss` = `sub` = the client id, a `jti`, now within `nbf`..`exp` (5 min skew),
  and an `x5c` chain, when sent, starting with that certificate: see
  `_verify_certificate_assertion`).
  Success: `{token_type, expires_in (number), ext_expires_in, access_token}`; failures: Entra's
  `{error, error_description "AADSTSnnnn: ...", error_codes, timestamp, trace_id,
  correlation_id, error_uri}` (unknown tenant 400 AADSTS90002, unknown client 400 AADSTS700016,
  wrong secret 401 AADSTS7000215, bad assertion 401 AADSTS700211 (federated) / 700027
  (certificate: key not registered, signature, claims) / 700024 (time range), bad scope 400
  AADSTS70011, other grant 400 AADSTS70003). Access tokens are opaque random strings that ARM
  looks up (world.tokens), expiring after `--token-lifetime`.
- App Service / Container Apps' identity endpoint `GET {url}/msi/token?api-version=2019-08-01
  &resource=...` with `X-IDENTITY-HEADER` (`--identity-header`): tokens of the host's managed
  identity (`app_service_token`).
- IMDS (plain HTTP, `ImdsApp`, bound on 169.254.169.254:80 in the sandbox): the VM is the one
  whose NIC's private IP the connection comes from. `GET /metadata/identity/oauth2/token
  ?api-version=...&resource=https://management.azure.com[/]` with `Metadata: true` gives the
  VM's system-assigned identity a token (`expires_in`/`expires_on` as strings); without the
  header 400 `bad_request_102`; a VM without an identity 400 "Identity not found".
  With `--imds-host-identity`, a connection from no VM's address gets the host's managed
  identity instead (clusterctl itself on an Azure VM, reached through
  `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
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


CLOCK_SKEW = 300      # seconds Entra ID tolerates on nbf/exp


def _thumbprints(der):
    import hashlib
    b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()  # noqa: E731
    return b64(hashlib.sha1(der).digest()), b64(hashlib.sha256(der).digest())


def _verify_certificate_assertion(app, assertion, client_id, tenant):
    """(AADSTS code, problem) of a certificate client assertion, or None when Entra ID would
    accept it: a JWT whose header names the registered certificate (`x5t` = base64url SHA-1 of
    its DER, or `x5t#S256`), signed RS256 or PS256 by that certificate's key, with `aud` = the
    tenant's token endpoint, `iss` = `sub` = the client id, a `jti`, and now within
    [`nbf`, `exp`] (5 min skew). Codes: 700027 (key not registered, signature, claims), 700024
    (time range)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    try:
        head, payload, sig = assertion.split(".")
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(payload))
        signature = _b64url(sig)
    except Exception as exc:
        return 700027, f"Client assertion is not a well-formed JWT. ({exc.__class__.__name__})"
    with open(app.opts["client_certificate"], "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    sha1, sha256 = _thumbprints(cert.public_bytes(serialization.Encoding.DER))
    used = header.get("x5t") or header.get("x5t#S256")
    if header.get("x5t") != sha1 and header.get("x5t#S256") != sha256:
        return 700027, ("The certificate with identifier used to sign the client assertion is "
                        "not registered on application. [Reason - The key was not found., "
                        f"Thumbprint of key used by client: '{used}', Please visit the Azure "
                        f"Portal to see configured keys for app Id '{client_id}'.]")
    chain = header.get("x5c")
    if chain is not None and (not isinstance(chain, list) or not chain or base64.b64decode(
            chain[0]) != cert.public_bytes(serialization.Encoding.DER)):
        return 700027, ("The certificate chain (x5c) does not start with the certificate the "
                        "assertion names.")
    key, signed = cert.public_key(), f"{head}.{payload}".encode()
    alg = header.get("alg")
    try:
        if not isinstance(key, rsa.RSAPublicKey):
            return 700027, "The registered certificate's key is not RSA."
        if alg == "RS256":
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            key.verify(signature, signed, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                      padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        else:
            return 700027, f"Client assertion uses an unsupported algorithm '{alg}'."
    except Exception as exc:
        return 700027, ("Client assertion failed signature validation. [Reason - The provided "
                        f"signature value did not match the expected signature value.] "
                        f"({exc.__class__.__name__})")
    aud = f"{app.opts['authority']}/{tenant}/oauth2/v2.0/token"
    if claims.get("aud") not in (aud, aud.replace("/oauth2/v2.0/token", "/v2.0")):
        return 700027, (f"Client assertion audience claim does not match Realm issuer. "
                        f"Review the documentation. (aud '{claims.get('aud')}', expected "
                        f"'{aud}')")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return 700027, ("Client assertion contains an invalid issuer or subject: both must be "
                        f"the client id '{client_id}'.")
    if not claims.get("jti"):
        return 700027, "Client assertion has no 'jti' claim."
    now = time.time()
    nbf, exp = float(claims.get("nbf", 0)), float(claims.get("exp", 0))
    if not exp or now > exp + CLOCK_SKEW or now + CLOCK_SKEW < nbf:
        return 700024, (f"Client assertion is not within its valid time range. Current time: "
                        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}, assertion "
                        f"valid from {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(nbf))}, "
                        f"expiry time of assertion "
                        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))}.")
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
        code = 700211
        if how is None and o.get("client_certificate"):
            found = _verify_certificate_assertion(app, assertion, client_id, tenant)
            if found is None:
                how = "client_certificate"
            else:
                code, problem = found
        if how is None:
            app.world.event("token-refused", credential="client_assertion", code=code)
            raise _entra_error(app, 401, "invalid_client", code, problem)
    else:
        raise _entra_error(app, 401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: "
                           "'client_assertion' or 'client_secret'.")
    chain = how == "client_certificate" and "x5c" in json.loads(
        _b64url(form["client_assertion"].split(".")[0]))
    token, exp = issue(app.world, o["sp_object_id"], "service_principal", aud,
                       o["token_lifetime"], credential=how)
    app.world.event("token-issued", principal=o["sp_object_id"], credential=how, aud=aud,
                    x5c=chain)
    life = int(exp - time.time())
    return Response(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                          "access_token": token}, headers={"Cache-Control": "no-store, no-cache"})


APP_SERVICE_SCHEMA = {"type": "object", "additionalProperties": False,
                      "required": ["access_token", "expires_on", "resource", "token_type",
                                   "client_id"],
                      "properties": {k: {"type": "string"} for k in (
                          "access_token", "expires_on", "resource", "token_type",
                          "client_id")}}


def app_service_token(app, req):
    """App Service / Container Apps' identity endpoint (`IDENTITY_ENDPOINT`, api-version
    2019-08-01): the header `X-IDENTITY-HEADER` must equal `IDENTITY_HEADER` (the sim's
    `--identity-header`), `resource` an audience; `client_id` (or `principal_id`/`mi_res_id`)
    selects a user-assigned identity, here only the host's own. Answer: `access_token`,
    `expires_on` (epoch seconds, a string), `resource`, `token_type`, `client_id`. Errors are
    `{"statusCode", "message", "correlationId"}`."""
    o = app.opts
    if not o.get("identity_header"):
        raise ApiError(404, "NotFound", "no managed identity on this host")
    given = req.headers.get("x-identity-header") or ""
    if not hmac.compare_digest(given.encode(), o["identity_header"].encode()):
        raise ApiError(401, "Unauthorized", "The X-IDENTITY-HEADER header is missing or wrong.")
    if req.q("api-version") != "2019-08-01":
        raise ApiError(400, "BadRequest", "api-version 2019-08-01 is the one supported.")
    resource = req.q("resource") or ""
    aud = ARM_AUDIENCES.get(resource) or (resource.rstrip("/") if resource.rstrip("/") in
                                          OTHER_AUDIENCES else None)
    if aud is None:
        raise ApiError(400, "BadRequest", f"AADSTS500011: The resource principal named "
                       f"{resource} was not found in the tenant.")
    cid = req.q("client_id")
    if cid and cid != o["host_identity_client_id"]:
        raise ApiError(400, "BadRequest", f"No user-assigned identity with client id {cid}.")
    pid = o["host_identity_object_id"]
    token, exp = issue(app.world, pid, "host_identity", aud, o["token_lifetime"])
    app.world.event("app-service-token", principal=pid, aud=aud)
    return Response(200, {"access_token": token, "expires_on": str(int(exp)),
                          "resource": resource, "token_type": "Bearer",
                          "client_id": o["host_identity_client_id"]})


def register(app):
    app.route("GET", r"/msi/token", lambda req: app_service_token(app, req),
              "msi: app service token", schema=APP_SERVICE_SCHEMA, public=True)
    app.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token",
              lambda req: token_endpoint(app, req, req.ctx["route_params"]["tenant"]),
              "entra: token", schema=TOKEN_SCHEMA, public=True)
    orig = app.bad_json

    def bad_json(req, exc):
        route = app._find_route(req)
        if route is not None and route[1].startswith(("entra", "msi")):
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
        if vm is None and self.arm.opts.get("imds_host_identity"):
            return None           # the host's own managed identity (`--imds-host-identity`)
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
        if vm is None:
            o = self.arm.opts
            token, exp = issue(self.world, o["host_identity_object_id"], "host_identity", aud,
                               o["token_lifetime"])
            self.world.event("imds-host-token", principal=o["host_identity_object_id"],
                             aud=aud)
            now = int(time.time())
            return Response(200, {"access_token": token,
                                  "client_id": o["host_identity_client_id"],
                                  "expires_in": str(int(exp) - now),
                                  "expires_on": str(int(exp)),
                                  "ext_expires_in": str(int(exp) - now),
                                  "not_before": str(now), "resource": resource,
                                  "token_type": "Bearer"})
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
        if vm is None:
            raise ApiError(400, "invalid_request", "the host's identity has no instance data")
        from .compute import imds_instance
        with self.world.lock:
            return Response(200, imds_instance(self.world, vm))

    def user_data(self, req):
        vm = self._vm(req)
        if vm is None:
            raise ApiError(400, "invalid_request", "the host's identity has no instance data")
        text = vm.get("_user_data") or ""
        return Response(200, NO_BODY, raw=text.encode(), content_type="text/plain")
