"""ARM's front: `AzApp`, the simkit pipeline with Azure Resource Manager's hooks.

Owns: bearer-token authentication (401 `AuthenticationFailed` without a token, with ARM's
`WWW-Authenticate`; `InvalidAuthenticationToken`, `ExpiredAuthenticationToken`,
`InvalidAuthenticationTokenAudience`; 404 `SubscriptionNotFound` for another subscription),
the subscription's throttling buckets (ratelimit.py) and RBAC for managed identities (rbac.py)
in `admit`, ARM's error body `{"error": {"code", "message", "target"?}}`, how a request the spec
refuses is answered (api-version: `MissingApiVersionParameter` / `InvalidApiVersionParameter` /
`NoRegisteredProviderFound`; unknown or read-only member: `InvalidRequestContent`; Compute:
`InvalidParameter` with `target`; Network: `InvalidRequestFormat`; resource group name:
`InvalidResourceGroup`), ARM's headers on every answer (`x-ms-request-id`,
`x-ms-correlation-request-id`, `x-ms-ratelimit-remaining-subscription-*`), routes outside the
specs with their own answer schemas (`route`), the spec errata, and `build()`.
"""

import re
import time
import uuid

import jsonschema

from simkit import ApiError, NO_BODY, Problem, Response, SimApp

ERRATA = [
    {"where": "body", "kind": "enum", "pointer": r"/properties/hardwareProfile/vmSize",
     "why": "HardwareProfile.vmSize: the spec's enum is a 2017 list (no v5 sizes); ARM checks "
            "sizes against the resource SKUs of the location instead (SkuNotAvailable)"},
    {"where": "response", "kind": "enum", "pointer": r"(/value/\d+)?/properties/hardwareProfile/vmSize",
     "why": "HardwareProfile.vmSize: the spec's enum is a 2017 list (no v5 sizes)"},
]
FAULTS = {400: ("BadRequest", "Bad request."), 401: ("InvalidAuthenticationToken",
                                                   "The access token is invalid."),
          403: ("AuthorizationFailed", "The client does not have authorization."),
          404: ("ResourceNotFound", "The resource was not found."),
          409: ("Conflict", "The request conflicts with the current state."),
          429: ("TooManyRequests", "The request is being throttled."),
          500: ("InternalServerError", "Encountered internal server error. Please try again."),
          502: ("BadGateway", "Bad gateway."),
          503: ("ServiceUnavailable", "The service is unavailable. Please try again later."),
          504: ("GatewayTimeout", "The gateway did not receive a response within the specified "
                                  "time period.")}
ERROR_SCHEMA = {"type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                                         "additionalProperties": False, "properties": {
                                             "code": {"type": "string"},
                                             "message": {"type": "string"},
                                             "target": {"type": "string"},
                                             "details": {"type": "array"},
                                             "innererror": {"type": "object"}}}}}
_PROVIDER = re.compile(r"/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)", re.I)


def cloud_error(code, message, target=None):
    err = {"code": code, "message": message}
    if target:
        err["target"] = target
    return {"error": err}


class AzApp(SimApp):
    name = "az-sim"

    def __init__(self, workdir, spec, world, opts, limiter, rbac):
        super().__init__(workdir, spec)
        self.world, self.opts, self.limiter, self.rbac = world, opts, limiter, rbac
        self.rt = None
        self.schemas = {}       # route name -> JSON schema of its 2xx answers
        self.public = set()     # route names that need no ARM token
        spec.claimed = lambda method, path: self._claims(method, path)

    # ----- routes outside the specs -----
    def route(self, method, pattern, fn, name, schema=None, public=False):
        self.add_route(method, pattern, fn, name)
        if schema is not None:
            self.schemas[name] = schema
        if public:
            self.public.add(name)

    def _claims(self, method, path):
        return any(m == method.upper() and rx.match(path) for m, rx, _, _ in self._routes)

    # ----- hooks -----
    def authenticate(self, req):
        route = None if req.match else self._find_route(req)
        if route is not None and route[1] in self.public:
            return
        auth = req.headers.get("authorization") or ""
        if not auth:
            raise ApiError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is missing.",
                           headers={"WWW-Authenticate": self._challenge(
                               "The authentication failed because of missing 'Authorization' "
                               "header.")})
        if auth[:7].lower() != "bearer ":
            raise ApiError(401, "AuthenticationFailed", "Authentication failed. The "
                           "'Authorization' header is provided in an invalid format.",
                           headers={"WWW-Authenticate": self._challenge(
                               "The authentication scheme of Basic is not supported.")})
        token = auth[7:].strip()
        with self.world.lock:
            info = self.world.tokens.get(token)
        if info is None:
            raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.",
                           headers={"WWW-Authenticate": self._challenge(
                               "The access token is invalid.")})
        now = time.time()
        if info["exp"] <= now:
            raise ApiError(401, "ExpiredAuthenticationToken",
                           f"The access token expiry UTC time '{_utc(info['exp'])}' is earlier "
                           f"than current UTC time '{_utc(now)}'.",
                           headers={"WWW-Authenticate": self._challenge(
                               "The access token has expired.")})
        if info["aud"] not in ("https://management.azure.com/",
                               "https://management.core.windows.net/"):
            raise ApiError(401, "InvalidAuthenticationTokenAudience",
                           f"The access token has been obtained for wrong audience or resource "
                           f"'{info['aud']}'. It should exactly match with one of the allowed "
                           f"audiences 'https://management.core.windows.net/',"
                           f"'https://management.azure.com/'.")
        req.ctx["principal"] = info["principal"]
        req.ctx["principal_kind"] = info["kind"]
        m = re.match(r"^/subscriptions/([^/]+)", req.path, re.I)
        if m and m.group(1).lower() != self.world.sub.lower():
            raise ApiError(404, "SubscriptionNotFound",
                           f"The subscription '{m.group(1)}' could not be found.")

    def _challenge(self, why):
        return (f'Bearer authorization_uri="{self.opts["authority"]}/{self.opts["tenant"]}", '
                f'error="invalid_token", error_description="{why}"')

    def admit(self, req):
        if "principal" not in req.ctx:
            return
        refused, headers = self.limiter.take(req.ctx["principal"], req.method)
        req.ctx["ratelimit"] = headers
        if refused:
            kind, retry = refused
            raise ApiError(429, "SubscriptionRequestsThrottled",
                           f"Number of '{kind}' requests for subscription '{self.world.sub}' "
                           f"actor '{req.ctx['principal']}' exceeded. Please try again after "
                           f"'{retry}' seconds after the last request. Please see "
                           "https://aka.ms/ARMThrottling for more information.",
                           headers={"Retry-After": str(retry)})
        self.rbac.authorize(req)

    def error_body(self, req, status, code, message):
        if (req.ctx.get("route") or "").startswith("msi"):
            return {"statusCode": status, "message": message,
                    "correlationId": str(uuid.uuid4())}
        return cloud_error(code, message)

    def fault_code(self, status):
        return FAULTS.get(status, ("InternalServerError", f"injected fault: HTTP {status}"))

    def decorate(self, req, resp):
        rid = resp.headers.get("x-ms-request-id") or req.id
        resp.headers["x-ms-request-id"] = rid
        if "x-ms-correlation-request-id" not in resp.headers:
            resp.headers["x-ms-correlation-request-id"] = req.headers.get(
                "x-ms-correlation-request-id") or req.id
        for k, v in (req.ctx.get("ratelimit") or {}).items():
            resp.headers.setdefault(k, v)
        if req.method == "HEAD" and resp.body is not NO_BODY and resp.status < 400:
            resp.body = NO_BODY

    def no_route(self, req, allowed):
        if allowed:
            raise ApiError(405, "HttpMethodNotAllowed",
                           f"The requested resource does not support http method "
                           f"'{req.method}'.", headers={"Allow": ", ".join(allowed)})
        m = None
        for m in _PROVIDER.finditer(req.path):
            pass
        if m is not None:
            raise ApiError(400, "InvalidResourceType",
                           f"The resource type '{m.group('type')}' could not be found in the "
                           f"namespace '{m.group('ns')}' for api version "
                           f"'{req.q('api-version', '')}'.")
        raise ApiError(404, "NotFound", f"The requested path '{req.path}' was not found.")

    def bad_json(self, req, exc):
        raise ApiError(400, "InvalidRequestContent",
                       f"The request content was invalid and could not be deserialized: '{exc}'.")

    def on_invalid_request(self, req, problems):
        op = req.match.op
        ver = [p for p in problems if p.pointer == "api-version"]
        if ver:
            given = req.q("api-version")
            if given is None or ver[0].kind == "required":
                raise ApiError(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required for "
                               "all requests.")
            supported = ", ".join(self.spec.versions_for(req.method, req.path))
            if op.id.startswith("ResourceGroups_") or op.id.startswith("Resources_"):
                raise ApiError(400, "InvalidApiVersionParameter",
                               f"The api-version '{given}' is invalid. The supported versions "
                               f"are '{supported}'.")
            m = None
            for m in _PROVIDER.finditer(req.path):
                pass
            rtype = m.group("type") if m else "resourceGroups"
            raise ApiError(400, "NoRegisteredProviderFound",
                           f"No registered resource provider found for location "
                           f"'{self.opts['default_location']}' and API version '{given}' for "
                           f"type '{rtype}'. The supported api-versions are '{supported}'. The "
                           f"supported locations are '{', '.join(_locations())}'.")
        first = problems[0]
        if first.where == "path":
            if first.pointer == "resourceGroupName":
                raise ApiError(400, "InvalidResourceGroup",
                               f"The provided resource group name "
                               f"'{req.match.path_params.get('resourceGroupName')}' has these "
                               "invalid characters or is too long. The name can only be a "
                               "letter, digit, '-', '.', '(', ')' or '_', at most 90 "
                               "characters, and cannot end with '.'.")
            raise ApiError(400, "InvalidParameter", first.message, headers={})
        if first.where == "header" and first.pointer == "content-type":
            raise ApiError(415, "UnsupportedMediaType",
                           f"The content media type '{req.headers.get('content-type')}' is not "
                           "supported. Only 'application/json' is supported.")
        unknown = [p for p in problems if p.kind in ("unknown", "read-only")]
        if unknown:
            p = unknown[0]
            path = ".".join(x for x in p.pointer.strip("/").split("/") if x)
            what = ("Could not find member '{}'".format(path.rsplit(".", 1)[-1])
                    if p.kind == "unknown" else f"Member '{path}' is read-only")
            raise ApiError(400, "InvalidRequestContent",
                           f"The request content was invalid and could not be deserialized: "
                           f"'{what} on object of type '{op.id.split('_')[0]}'. Path "
                           f"'{path}'.' (simulator: {p.message})")
        target = ".".join(x for x in first.pointer.strip("/").split("/") if x) or None
        if first.kind == "required" and first.where == "body":
            prop = re.findall(r"'([^']+)' is a required property", first.message)
            target = ".".join(x for x in [target, prop[0] if prop else None] if x)
        if "Microsoft.Compute" in op.template or op.id.startswith("VirtualMachines_"):
            msg = (f"Required parameter '{target}' is missing (null)." if first.kind == "required"
                   else f"The value of parameter {target} is invalid. ({first.message})")
            raise ApiError(400, "InvalidParameter", msg, body=cloud_error(
                "InvalidParameter", msg, target))
        if "Microsoft.Network" in op.template:
            raise ApiError(400, "InvalidRequestFormat",
                           f"Cannot parse the request. ({target}: {first.message})")
        if first.where == "query":
            raise ApiError(400, "InvalidParameter", first.message)
        raise ApiError(400, "InvalidRequestContent",
                       f"The request content was invalid and could not be deserialized: "
                       f"'{first.message}'.")

    def check_unmatched(self, req, resp):
        name = req.ctx.get("route")
        if resp.status >= 400:
            if name and name.startswith(("entra", "imds", "blob", "msi")):
                return []
            schema = ERROR_SCHEMA
        else:
            schema = self.schemas.get(name)
        if schema is None or resp.body is NO_BODY:
            return []
        v = jsonschema.Draft4Validator(schema)
        return [Problem("response", "/" + "/".join(map(str, e.absolute_path)), "schema",
                        e.message) for e in v.iter_errors(resp.body)]

    def inventory(self):
        from .inventory import build_inventory
        inv = build_inventory(self)
        inv["rate_limits"] = self.limiter.snapshot()
        inv["faults"] = self.faults.snapshot()
        inv["sim_errors"] = len(self.errors.entries())
        inv["spec_errata_hits"] = dict(self.spec.errata_hits)
        inv["options"] = {k: (sorted(v) if isinstance(v, (set, tuple)) else v)
                          for k, v in self.opts.items()
                          if "secret" not in k and k not in ("token", "blob_key")}
        return inv

    # ----- helpers for handlers -----
    def rg_or_404(self, req, name=None, writing=False):
        name = name or req.p("resourceGroupName")
        g = self.world.groups.get(str(name).lower())
        if g is None:
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be "
                           "found.")
        if writing and g["state"] == "Deleting":
            raise ApiError(409, "ResourceGroupBeingDeleted",
                           f"The resource group '{g['name']}' is in deprovisioning state and "
                           "cannot perform this operation.")
        return g

    def not_found(self, rtype, name, rg):
        return ApiError(404, "ResourceNotFound",
                        f"The Resource '{rtype}/{name}' under resource group '{rg}' was not "
                        "found. For more details please go to "
                        "https://aka.ms/ARMResourceNotFoundFix")

    def url(self, path):
        return self.base_url + path


def _utc(t):
    return time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(t))


def _locations():
    from . import catalog
    return list(catalog.LOCATIONS)


def new_id():
    return str(uuid.uuid4())


def build(workdir, spec, world, opts, limiter, rbac):
    from . import identity, ifaces, lro, rbac as rbac_mod, resources, vmlife
    app = AzApp(workdir, spec, world, opts, limiter, rbac)
    identity.register(app)
    lro.register(app)
    resources.register(app)
    ifaces.register(app)
    vmlife.register(app)
    rbac_mod.register(app)
    return app
