"""DigitalOcean's API front: `DoApp`, the simkit pipeline with DigitalOcean's hooks.

Owns: bearer-token auth (401 `unauthorized` "Unable to authenticate you."), the rate limits
(ratelimit.py) and their headers on every answer, DigitalOcean's error body `{id, message,
request_id}` (and the tags API's other shape `{error, messages, root_causes}` where the spec
declares it), how a request the spec refuses is answered (bad path parameter → 404; droplet
name → 422 "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"; bad tag →
400 with root causes; unknown or read-only body field → 422; `per_page` over 200 is tolerated
and clamped, as the real API does, but still logged), pagination (`links.pages` with absolute
first/prev/next/last URLs, `meta.total`; `links: {}` on a single page), the spec's errata, and
the `/_sim/` additions (console). Handlers live in resources.py, droplets.py and firewalls.py.
"""

import hmac
import math
import re
import urllib.parse

import jsonschema

from simkit import ApiError, NO_BODY, Problem, Response, SimApp

NOT_FOUND = "The resource you were accessing could not be found."
HOSTNAME_MSG = "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
ERROR_IDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
             405: "method_not_allowed", 409: "conflict", 413: "request_entity_too_large",
             415: "unsupported_media_type", 422: "unprocessable_entity",
             429: "too_many_requests", 500: "server_error", 501: "not_implemented",
             502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}
FAULT_MESSAGES = {429: "API Rate limit exceeded.", 401: "Unable to authenticate you.",
                  404: NOT_FOUND, 500: "Server was unable to give you a response.",
                  503: "Service is temporarily unavailable."}

# Known mistakes of the spec (each a real field the real API returns that the spec misnames).
ERRATA = [
    {"where": "response", "kind": "unknown", "pointer": r"/tags?(/\d+)?/resources/images",
     "why": "tags.resources: the spec spells `images` as `imgages`; the API and the spec's own "
            "examples say `images`"},
]

# GET /v2/account is not in the spec subset: its shape per shared/notes/digitalocean.md §9.
ACCOUNT_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["account"],
    "properties": {"account": {
        "type": "object", "additionalProperties": False,
        "required": ["droplet_limit", "floating_ip_limit", "email", "uuid", "email_verified",
                     "status", "status_message", "team"],
        "properties": {
            "droplet_limit": {"type": "integer"}, "floating_ip_limit": {"type": "integer"},
            "email": {"type": "string"}, "name": {"type": "string"}, "uuid": {"type": "string"},
            "email_verified": {"type": "boolean"},
            "status": {"enum": ["active", "warning", "locked"]},
            "status_message": {"type": "string"},
            "team": {"type": "object", "additionalProperties": False,
                     "required": ["uuid", "name"],
                     "properties": {"uuid": {"type": "string"}, "name": {"type": "string"}}}}}}}
_NAME_PTR = re.compile(r"^/names?(/\d+)?$")


class DoApp(SimApp):
    name = "do-sim"

    def __init__(self, workdir, spec, token, world, limiter, opts):
        super().__init__(workdir, spec)
        self.token, self.world, self.limiter, self.opts = token, world, limiter, opts
        self.rt = world.rt

    # ----- hooks -----
    def authenticate(self, req):
        auth = req.headers.get("authorization") or ""
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise ApiError(401, "unauthorized", "Unable to authenticate you.")
        req.ctx["token"] = given

    def admit(self, req):
        refused, headers = self.limiter.take(req.ctx["token"], req.op_id == "sshKeys_list")
        req.ctx["ratelimit"] = headers
        if refused:
            kind, retry = refused
            raise ApiError(429, "too_many_requests", "API Rate limit exceeded.",
                           headers={"retry-after": str(retry)} if retry else {})

    def error_body(self, req, status, code, message):
        return {"id": code, "message": message, "request_id": req.id}

    def fault_code(self, status):
        return ERROR_IDS.get(status, "server_error"), FAULT_MESSAGES.get(
            status, f"injected fault: HTTP {status}")

    def decorate(self, req, resp):
        rl = req.ctx.get("ratelimit") or self.limiter.peek(req.ctx.get("token") or "anonymous")
        for k, v in rl.items():
            if k not in resp.headers:
                resp.headers[k] = v
        if "x-request-id" not in resp.headers:
            resp.headers["x-request-id"] = req.id
        if resp.status == 204 and "content-type" not in resp.headers:
            resp.headers["content-type"] = self.json_content_type

    def no_route(self, req, allowed):
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}",
                           headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, "not_found", NOT_FOUND)

    def bad_json(self, req, exc):
        raise ApiError(400, "bad_request", f"Unable to parse the request body as JSON: {exc}")

    def on_invalid_request(self, req, problems):
        serious = [p for p in problems if not (p.where == "query" and p.pointer == "per_page"
                                               and p.kind == "limit"
                                               and str(req.q("per_page", "")).lstrip("-").isdigit()
                                               and int(req.q("per_page")) > 200)]
        if not serious:
            return None          # DigitalOcean clamps per_page to 200 (see paginate)
        first = serious[0]
        if first.where == "path":
            raise ApiError(404, "not_found", NOT_FOUND)
        if req.op_id == "tags_create" and first.where == "body":
            name = req.body.get("name") if isinstance(req.body, dict) else None
            if first.pointer == "/name" and first.kind == "pattern":
                msg = f'Error validating resource tag: "tag-name \\"{name}\\" contains invalid characters"'
            elif first.pointer == "/name" and first.kind == "limit":
                msg = f'Error validating resource tag: "tag-name \\"{name}\\" is too long"'
            else:
                msg = f"Error validating resource tag: {first.message}"
            raise ApiError(400, "bad_request", msg, body={
                "error": msg, "messages": None,
                "root_causes": [f"rpc error: code = InvalidArgument desc = {msg}"]})
        if (req.op_id == "droplets_create" and first.where == "body"
                and _NAME_PTR.match(first.pointer) and first.kind in ("pattern", "limit", "type")):
            raise ApiError(422, "unprocessable_entity", HOSTNAME_MSG)
        if first.where == "query":
            raise ApiError(400, "bad_request", f"invalid query: {first.message}")
        if first.where == "header":
            raise ApiError(415, "unsupported_media_type", first.message)
        if first.kind in ("unknown", "read-only"):
            raise ApiError(422, "unprocessable_entity",
                           "simulator: " + "; ".join(p.message for p in serious[:5]) +
                           " (DigitalOcean ignores such fields; clusterctl must not send them)")
        raise ApiError(422, "unprocessable_entity",
                       "; ".join(f"{p.pointer or 'body'}: {p.message}" for p in serious[:3]))

    def check_unmatched(self, req, resp):
        body = resp.body
        if resp.status >= 400:
            return self.spec.check_schema("error", body) if body is not NO_BODY else []
        if req.ctx.get("route") == "GET /v2/account":
            v = jsonschema.Draft4Validator(ACCOUNT_SCHEMA)
            return [Problem("response", "/" + "/".join(map(str, e.absolute_path)), "schema",
                            e.message) for e in v.iter_errors(body)]
        return []

    def inventory(self):
        inv = self.world.inventory()
        inv["rate_limits"] = self.limiter.snapshot()
        inv["faults"] = self.faults.snapshot()
        inv["sim_errors"] = len(self.errors.entries())
        inv["spec_errata_hits"] = dict(self.spec.errata_hits)
        inv["options"] = {k: v for k, v in self.opts.items() if k != "token"}
        return inv

    # ----- helpers for handlers -----
    def ok(self, status, body=NO_BODY):
        return Response(status, body)

    def paginate(self, req, items, key, path, extra=None):
        """DigitalOcean's list envelope for a page of items."""
        raw_pp = req.q("per_page")
        per_page = min(200, max(1, int(raw_pp))) if raw_pp is not None else 20
        page = int(req.q("page") or 1)
        total = len(items)
        last = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        keep = [(k, req.query[k][0]) for k in ("tag_name", "name", "type", "private")
                if k in req.query]

        def url(n):
            params = [("page", n), ("per_page", raw_pp if raw_pp is not None else per_page)] + keep
            return f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        pages = {}
        if page > 1:
            pages["first"], pages["prev"] = url(1), url(min(page - 1, last))
        if page < last:
            pages["last"], pages["next"] = url(last), url(page + 1)
        body = {key: chunk, "links": {"pages": pages} if pages else {}, "meta": {"total": total}}
        if extra:
            body.update(extra)
        return Response(200, body)

    def not_found(self):
        return ApiError(404, "not_found", NOT_FOUND)

    def unprocessable(self, message):
        return ApiError(422, "unprocessable_entity", message)


def build(workdir, spec_path, token, world, limiter, opts):
    from simkit import OpenApi30
    from . import droplets, firewalls, resources
    spec = OpenApi30(spec_path, uri="urn:simkit:digitalocean", errata=ERRATA,
                     require_response_headers=("ratelimit-limit", "ratelimit-remaining",
                                               "ratelimit-reset"))
    app = DoApp(workdir, spec, token, world, limiter, opts)
    resources.register(app)
    droplets.register(app)
    firewalls.register(app)
    app.add_control("GET", r"/_sim/console/(?P<did>\d+)", lambda req, did: console(app, did))
    app.add_control("POST", r"/_sim/droplets/(?P<did>\d+)/power_off",
                    lambda req, did: sim_power_off(app, did))
    return app


def console(app, did):
    try:
        text = app.rt.console(str(did))
    except Exception as exc:
        return Response(404, {"error": f"no console for {did}: {exc!r}"}, validate=False)
    return Response(200, NO_BODY, raw=(text or "").encode(), content_type="text/plain; charset=utf-8",
                    validate=False)


def sim_power_off(app, did):
    """Test hook: the machine powers itself off (as the run script would), status `off`."""
    if not app.world.guest_power_off(int(did), "/_sim power_off"):
        return Response(404, {"error": f"no droplet {did}"}, validate=False)
    return {"id": int(did), "status": "off"}
