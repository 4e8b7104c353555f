"""Google Cloud's API front: `GceApp`, the simkit pipeline with Google's hooks.

Owns: bearer auth on every API (self-signed service-account JWTs and `ya29.` tokens, auth.py;
401 UNAUTHENTICATED in Google's words; scopes: Compute wants cloud-platform or compute —
compute.readonly for reads — Secret Manager and IAM want cloud-platform; 403
ACCESS_TOKEN_SCOPE_INSUFFICIENT otherwise), project checks (unknown project → 404; a principal
that owns nothing, e.g. an instance's service account, → 403 with the permission named), rate
limits (403 `rateLimitExceeded` per project and minute, as Compute answers — not 429), Google's
error body, how spec refusals are answered (ESF's "Invalid JSON payload received. Unknown name
…", Compute's "Invalid value for field …"), list helpers (filter, maxResults/pageToken,
aggregatedList with NO_RESULTS_ON_PAGE warnings), the token routes (`POST /token`,
`POST /v1/token`) and the `/_sim/` additions.
"""

import base64
import collections
import json
import threading
import time

from simkit import ApiError, NO_BODY, Response, SimApp

from . import catalog
from .auth import AuthError, parse_form
from .federation import GENERATE_PATH
from .errors import body as err_body, error_info, gerr, not_found, REASON
from .filters import compile_filter

TOKEN_ROUTES = ("/token", "/v1/token", "/_github/idtoken")
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


class RateLimiter:
    def __init__(self, reads, writes):
        self.lock = threading.Lock()
        self.limits = {"read": reads, "write": writes}
        self.hits = collections.defaultdict(collections.deque)
        self.refused = 0

    def take(self, project, kind):
        now = time.monotonic()
        with self.lock:
            q = self.hits[(project, kind)]
            while q and q[0] < now - 60:
                q.popleft()
            if len(q) >= self.limits[kind]:
                self.refused += 1
                return False
            q.append(now)
            return True


class GceApp(SimApp):
    name = "gce-sim"
    json_content_type = "application/json; charset=UTF-8"

    def __init__(self, workdir, spec, world, auth, opts):
        super().__init__(workdir, spec)
        self.world, self.auth, self.opts = world, auth, opts
        self.limiter = RateLimiter(opts["reads_per_minute"], opts["writes_per_minute"])

    # ----- auth -----
    def authenticate(self, req):
        if req.path in TOKEN_ROUTES and req.match is None:
            return
        header = req.headers.get("authorization") or ""
        if not header:
            if self.opts["allow_anonymous"]:
                req.ctx["principal"] = "serviceAccount:" + self.auth.owner_email
                req.ctx["scopes"] = {catalog.SCOPE_CLOUD}
                return
            raise gerr(401, "required", "Request is missing required authentication credential."
                       " Expected OAuth 2 access token, login cookie or other valid "
                       "authentication credential. See https://developers.google.com/identity/"
                       "sign-in/web/devconsole-project.", status="UNAUTHENTICATED",
                       extra={"locationType": "header", "location": "Authorization"})
        if header[:7].lower() != "bearer ":
            raise self._bad_token()
        try:
            who = self.auth.identify(header[7:].strip())
        except AuthError:
            raise self._bad_token()
        req.ctx["principal"], req.ctx["scopes"] = who["principal"], who["scopes"]
        if req.match is not None:
            api = req.match.op.id.split(".")[0]
            if api == "compute":
                ok = catalog.COMPUTE_READ_SCOPES if req.method == "GET" else \
                    catalog.COMPUTE_SCOPES
                ok = ok | {"aud:https://compute.googleapis.com/"}
            else:
                ok = {catalog.SCOPE_CLOUD, f"aud:https://{api}.googleapis.com/"}
            if not (who["scopes"] & ok):
                raise gerr(403, "insufficientPermissions",
                           "Request had insufficient authentication scopes.",
                           details=[error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                                               "googleapis.com",
                                               {"service": f"{api}.googleapis.com",
                                                "method": req.match.op.id})])

    @staticmethod
    def _bad_token():
        return gerr(401, "authError", "Request had invalid authentication credentials. Expected"
                    " OAuth 2 access token, login cookie or other valid authentication "
                    "credential. See https://developers.google.com/identity/sign-in/web/"
                    "devconsole-project.", status="UNAUTHENTICATED",
                    extra={"locationType": "header", "location": "Authorization"},
                    details=[error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED", "googleapis.com")])

    def admit(self, req):
        if req.match is None:
            return
        pp = req.match.path_params
        project = pp.get("project") or pp.get("projectsId") or "-"
        kind = "write" if req.method in MUTATING else "read"
        if not self.limiter.take(project, kind):
            what = "Write" if kind == "write" else "Read"
            raise gerr(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits",
                       details=[error_info("RATE_LIMIT_EXCEEDED", "googleapis.com",
                                           {"quota_limit": f"{what}RequestsPerMinutePerProject",
                                            "consumer": f"projects/{project}",
                                            "service": "compute.googleapis.com"})])

    # ----- shapes -----
    def error_body(self, req, status, code, message):
        return err_body(status, code if code and code[0].islower() else
                        REASON.get(status, "backendError"), message)

    def fault_code(self, status):
        return {429: ("rateLimitExceeded", "Too many requests, please try again later."),
                503: ("backendError", "The service is currently unavailable."),
                500: ("backendError", "Internal error. Please try again or contact Google "
                                      "Support."),
                403: ("rateLimitExceeded", "Rate Limit Exceeded")}.get(
            status, (REASON.get(status, "backendError"), f"injected fault: HTTP {status}"))

    def decorate(self, req, resp):
        if resp.status == 204 and "content-type" not in resp.headers:
            resp.headers["content-type"] = self.json_content_type
        resp.headers.setdefault("vary", "Origin, X-Origin, Referer")
        resp.headers.setdefault("server", "ESF")

    def no_route(self, req, allowed):
        if allowed:
            raise gerr(405, "methodNotAllowed", f"Method {req.method} is not allowed for "
                       f"{req.path}", headers={"Allow": ", ".join(allowed)})
        raise gerr(404, "notFound", f"The requested URL {req.path} was not found on this "
                   "server.")

    def bad_json(self, req, exc):
        if req.match is None and req.path in TOKEN_ROUTES:
            return          # form-encoded: auth.parse_form reads the raw body
        raise gerr(400, "parseError", f"Invalid JSON payload received. {exc}")

    @staticmethod
    def scrub(req):
        """Secret Manager payloads never reach requests.jsonl or sim-errors.jsonl."""
        body = req.body
        if isinstance(body, dict) and isinstance(body.get("payload"), dict) and \
                "data" in body["payload"]:
            body["payload"]["data"] = f"<redacted: {len(str(body['payload']['data']))} chars>"

    def _finish(self, req, resp):
        self.scrub(req)
        super()._finish(req, resp)

    def on_invalid_request(self, req, problems):
        self.scrub(req)
        p = problems[0]
        field = "resource" + p.pointer.replace("/", ".") if p.where == "body" else p.pointer
        field = field.rstrip(".")
        if p.where == "query" and p.kind == "unknown":
            raise gerr(400, "badRequest", f"Invalid JSON payload received. Unknown name "
                       f"\"{p.pointer}\": Cannot bind query parameter. Field '{p.pointer}' could"
                       " not be found in request message.")
        if p.kind == "unknown":
            parent, _, name = p.pointer.rpartition("/")
            at = "resource" + parent.replace("/", ".") if parent else "resource"
            raise gerr(400, "badRequest", f"Invalid JSON payload received. Unknown name "
                       f"\"{name}\" at '{at}': Cannot find field.")
        if p.kind == "read-only":
            raise gerr(400, "invalid", f"simulator: field {p.pointer} is output only; the real "
                       "API ignores it, but a client that sends it has a bug")
        if p.kind == "required":
            raise gerr(400, "required", f"Required field '{field}' not specified")
        if p.where == "path":
            raise gerr(400, "invalidParameter", f"Invalid value for field '{p.pointer}': "
                       f"'{req.match.path_params.get(p.pointer, '')}'. {p.message}")
        if p.kind == "content-type":
            raise gerr(400, "badContent", "Unsupported content with type: "
                       f"{req.headers.get('content-type')}")
        value = _at(req.body, p.pointer) if p.where == "body" else req.q(p.pointer)
        raise gerr(400, "invalid", f"Invalid value for field '{field}': "
                   f"'{_short(value)}'. {p.message}")

    def check_unmatched(self, req, resp):
        return []

    def inventory(self):
        out = self.world.inventory()
        out["auth"] = self.auth.snapshot()
        out["federation"] = self.federation.snapshot()
        out["rate_limits"] = {"limits": dict(self.limiter.limits),
                              "refused": self.limiter.refused}
        out["spec_errata_hits"] = self.spec.errata_hits
        out["options"] = {k: v for k, v in self.opts.items() if k not in ("stockouts",)}
        return out

    # ----- helpers for handlers -----
    def principal(self, req):
        return req.ctx.get("principal")

    def require_project(self, req, permission=None):
        p = req.p("project") or req.p("projectsId")
        if self.world.number(p) is None:
            raise not_found(f"projects/{p}")
        who = self.principal(req)
        if not self.auth.is_owner(who):
            perm = permission or _permission(req.match.op.id)
            raise gerr(403, "forbidden", f"Required '{perm}' permission for 'projects/{p}'",
                       details=[error_info("IAM_PERMISSION_DENIED", "compute.googleapis.com",
                                           {"permission": perm})])
        return p

    def require_auth_only(self, req):
        return self.principal(req)

    def require_zone(self, req):
        z = req.p("zone")
        if z not in catalog.ZONES:
            raise not_found(f"projects/{req.p('project')}/zones/{z}")
        return z

    def require_region(self, req):
        r = req.p("region")
        if r not in catalog.REGIONS:
            raise not_found(f"projects/{req.p('project')}/regions/{r}")
        return r

    def filtered(self, req, items):
        pred = compile_filter(req.q("filter"))
        return [i for i in items if pred(i)]

    def page(self, req, kind, self_link, items, key="items"):
        start = _page_start(req)
        size = req.q("maxResults")
        size = 500 if size is None else max(0, min(int(size), 500))
        out = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[-1],
               "selfLink": self_link}
        chunk = items[start:start + size] if size else items[start:start + 500]
        if chunk:
            out[key] = chunk
        if start + len(chunk) < len(items):
            out["nextPageToken"] = _token(start + len(chunk))
        return out

    def aggregated(self, req, kind, key, self_link, per_scope):
        out = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[-1], "items": {},
               "selfLink": self_link}
        for scope, items in per_scope.items():
            if items:
                out["items"][scope] = {key: items}
            else:
                out["items"][scope] = {"warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}]}}
        return out


def _page_start(req):
    tok = req.q("pageToken")
    if not tok:
        return 0
    try:
        return int(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)).decode().split(":")[1])
    except (ValueError, IndexError):
        raise gerr(400, "invalid", f"Invalid value for field 'pageToken': '{tok}'. Invalid "
                   "page token.")


def _token(offset):
    return base64.urlsafe_b64encode(f"sim:{offset}".encode()).decode().rstrip("=")


def _permission(op_id):
    parts = op_id.split(".")
    verb = {"insert": "create", "bulkInsert": "create", "aggregatedList": "list",
            "getSerialPortOutput": "getSerialPortOutput"}.get(parts[-1], parts[-1])
    return f"compute.{parts[1]}.{verb}" if len(parts) > 2 else op_id


def _at(doc, pointer):
    cur = doc
    for tok in [t for t in pointer.split("/") if t]:
        tok = tok.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, list):
            try:
                cur = cur[int(tok)]
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            cur = cur.get(tok)
        else:
            return None
    return cur


def _short(v):
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= 200 else s[:200] + "…"


def build(workdir, spec, world, auth, federation, opts):
    from . import firewalls, iam, instances, network, operations, resources, secrets
    app = GceApp(workdir, spec, world, auth, opts)
    app.federation = federation

    def token(req):
        form = parse_form(req)
        if form is None:
            return Response(400, {"error": "invalid_request",
                                  "error_description": "unparsable body"})
        status, body = auth.token_grant(form)
        return Response(status, body, headers={"cache-control": "no-store"})

    def sts(req):
        form = parse_form(req)
        if form is None:
            return Response(400, {"error": "invalid_request"})
        status, body = federation.sts_exchange(form)
        return Response(status, body, headers={"cache-control": "no-store"})

    def github_idtoken(req):
        status, body = federation.github_idtoken(req.headers, req.query)
        return Response(status, body)

    def generate_access_token(req):
        caller = {"principal": req.ctx.get("principal"), "scopes": req.ctx.get("scopes") or set()}
        body = req.body if req.body is not NO_BODY else None
        status, answer = federation.generate_access_token(
            caller, req.ctx["route_params"]["account"], body)
        return Response(status, answer)

    app.add_route("POST", "/token", token, name="oauth2.token")
    app.add_route("POST", "/v1/token", sts, name="sts.token")
    app.add_route("GET", "/_github/idtoken", github_idtoken, name="github.idtoken")
    app.add_route("POST", GENERATE_PATH, generate_access_token,
                  name="iamcredentials.generateAccessToken")
    resources.register(app, world)
    network.register(app, world)
    operations.register(app, world)
    instances.register(app, world)
    firewalls.register(app, world)
    iam.register(app, world)
    secrets.register(app, world)

    def stockout_add(req):
        rule = json.loads(req.raw_body or b"{}")
        if not isinstance(rule, dict):
            raise ValueError("a stockout rule is an object")
        with world.lock:
            world.stockouts.append(rule)
        return {"stockouts": world.stockouts}

    def stockout_clear(req):
        with world.lock:
            world.stockouts.clear()
        return Response(204, NO_BODY, validate=False)

    def ratelimit(req):
        body = json.loads(req.raw_body or b"{}")
        for k in ("read", "write"):
            if k in body:
                app.limiter.limits[k] = int(body[k])
        return {"limits": dict(app.limiter.limits)}

    def quota(req):
        body = json.loads(req.raw_body or b"{}")
        with world.lock:
            for p in world.projects:
                for r in catalog.REGIONS:
                    if body.get("region") in (None, r):
                        world.quotas[(p, r, body["metric"])] = float(body["limit"])
        return {"ok": True}

    app.add_control("POST", "/_sim/stockouts", stockout_add)
    app.add_control("DELETE", "/_sim/stockouts", stockout_clear)
    app.add_control("POST", "/_sim/ratelimit", ratelimit)
    app.add_control("POST", "/_sim/quota", quota)

    def steal_ips(req):
        body = json.loads(req.raw_body or b"{}")
        with world.vms.addresses.lock:
            world.vms.addresses.steal = int(body.get("count", 1))
        return {"steal": world.vms.addresses.steal}

    app.add_control("POST", "/_sim/steal-ips", steal_ips)
    app.add_control("GET", r"/_sim/console/(?P<project>[^/]+)/(?P<zone>[^/]+)/(?P<name>[^/]+)",
                    lambda req, project, zone, name: Response(
                        200, raw=world.vms.console((project, zone, name)).encode(),
                        content_type="text/plain; charset=utf-8", validate=False))
    return app


__all__ = ["build", "GceApp", "ApiError"]
