"""OpenAPI 3.0 validation of requests and responses (DigitalOcean, Kubernetes-style specs).

Owns `OpenApi30(SpecValidator)`: loads one standalone OpenAPI 3.0 document (JSON or YAML), turns
every local `$ref` into an absolute one under a private URI so any sub-schema can be validated on
its own through a `referencing` registry, resolves (method, path) to the operation (literal path
segments beat templated ones), coerces and validates path/query/header parameters (types, enums,
patterns, required, unknown query parameters), validates request bodies against the operation's
requestBody schema (openapi-schema-validator's OAS30WriteValidator, so readOnly-required fields are
not demanded) plus the strict walker of walk.py, and responses against the declared response for
the status (exact, `NXX`, then `default`; OAS30ReadValidator + walker). `errata` suppresses
findings that are known mistakes of the spec itself (each must say why); suppressed findings are
counted in `errata_hits`.
"""

import json
import re

import referencing
import referencing.jsonschema
from openapi_schema_validator import (OAS30ReadValidator, OAS30WriteValidator,
                                      oas30_format_checker)

from .base import NO_BODY, Match, Operation, PathTemplates, Problem, SpecValidator
from .walk import StrictWalker, escape

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_KIND = {"type": "type", "required": "required", "enum": "enum", "pattern": "pattern",
         "format": "format", "maxLength": "limit", "minLength": "limit", "maximum": "limit",
         "minimum": "limit", "maxItems": "limit", "minItems": "limit", "multipleOf": "limit",
         "exclusiveMaximum": "limit", "exclusiveMinimum": "limit", "nullable": "type",
         "maxProperties": "limit", "minProperties": "limit", "uniqueItems": "limit"}
_INT = re.compile(r"^-?\d+$")
_NUM = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _media(content, ctype):
    """The media type object for a content type: exact, then `type/*`, then `*/*`."""
    if ctype in content:
        return content[ctype]
    major = ctype.split("/")[0]
    return content.get(f"{major}/*") or content.get("*/*")


def _pointer(path):
    return "".join("/" + escape(p) for p in path)


class OpenApi30(SpecValidator):
    def __init__(self, path, uri="urn:simkit:spec", errata=(), require_response_headers=()):
        """path: the document; errata: [{"where", "kind", "pointer" (regex, full match),
        "operation" (optional regex on the operation id), "why"}]."""
        with open(path, "rb") as fh:
            raw = fh.read()
        if path.endswith((".yaml", ".yml")):
            import yaml
            doc = yaml.safe_load(raw)
        else:
            doc = json.loads(raw)
        if not str(doc.get("openapi", "")).startswith("3.0"):
            raise ValueError(f"{path}: not an OpenAPI 3.0 document")
        self.name = f"OpenAPI {doc.get('openapi')} {doc.get('info', {}).get('title', '')}".strip()
        self.uri = uri
        self.doc = self._absolutize(doc)
        resource = referencing.Resource.from_contents(
            self.doc, default_specification=referencing.jsonschema.DRAFT4)
        self.registry = referencing.Registry().with_resource(uri, resource)
        self._validators = {}
        self.walker = StrictWalker(self._deref, self.is_valid)
        self.errata = [dict(e, _rx=re.compile(e["pointer"]),
                            _op=re.compile(e.get("operation", ".*"))) for e in errata]
        self.errata_hits = {}
        self.require_response_headers = {h.lower() for h in require_response_headers}
        self.templates = PathTemplates()
        self._ops = []
        for template, item in (self.doc.get("paths") or {}).items():
            item = self._deref(item)
            shared = item.get("parameters") or []
            for method in METHODS:
                raw_op = item.get(method)
                if not isinstance(raw_op, dict):
                    continue
                raw_op = self._deref(raw_op)
                params = {}
                for p in list(shared) + list(raw_op.get("parameters") or []):
                    p = self._deref(p)
                    params[(p.get("in"), p.get("name"))] = p
                op = Operation(raw_op.get("operationId") or f"{method.upper()} {template}",
                               method.upper(), template, raw_op, list(params.values()))
                self.templates.add(template, method, op)
                self._ops.append(op)

    # ----- references -----
    def _absolutize(self, node):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str) and v.startswith("#"):
                    out[k] = self.uri + v
                elif k == "discriminator" and isinstance(v, dict) and \
                        isinstance(v.get("mapping"), dict):
                    out[k] = dict(v, mapping={m: (self.uri + r if str(r).startswith("#") else r)
                                              for m, r in v["mapping"].items()})
                else:
                    out[k] = self._absolutize(v)
            return out
        if isinstance(node, list):
            return [self._absolutize(v) for v in node]
        return node

    def _deref(self, node):
        for _ in range(64):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            ref = node["$ref"]
            if not ref.startswith(self.uri + "#"):
                raise ValueError(f"external $ref not supported: {ref}")
            target = self.doc
            for tok in ref[len(self.uri) + 1:].split("/")[1:]:
                tok = tok.replace("~1", "/").replace("~0", "~")
                target = target[int(tok)] if isinstance(target, list) else target[tok]
            node = target
        return node

    # ----- schema validation -----
    def _validator(self, schema, direction):
        key = (id(schema), direction)
        v = self._validators.get(key)
        if v is None:
            cls = OAS30WriteValidator if direction == "request" else OAS30ReadValidator
            v = cls(schema, registry=self.registry, format_checker=oas30_format_checker)
            self._validators[key] = (v, schema)   # keep schema alive so id() stays unique
            return v
        return v[0]

    def is_valid(self, schema, value):
        try:
            return self._validator(schema, "response").is_valid(value)
        except Exception:       # a schema the validator cannot compile counts as not matching
            return False

    def _leaves(self, err, depth=0):
        if err.validator in ("oneOf", "anyOf") and err.context and depth < 16:
            branches = {}
            for c in err.context:
                branches.setdefault(c.relative_schema_path[0], []).append(c)

            def score(errs):
                root_required = sum(1 for c in errs if c.validator == "required"
                                    and len(c.relative_path) == 0)
                return (root_required, len(errs))
            best = min(branches.values(), key=score)
            out = []
            for c in best:
                out.extend(self._leaves(c, depth + 1))
            return out
        return [err]

    def schema_problems(self, schema, value, where, direction, base=""):
        """Type/constraint problems plus unknown fields of value against schema."""
        out = []
        try:
            errors = list(self._validator(schema, direction).iter_errors(value))
        except Exception as exc:   # pragma: no cover - a broken spec
            return [Problem(where, base, "schema", f"schema could not be applied: {exc}")]
        for e in errors:
            for leaf in self._leaves(e):
                if leaf.validator in ("readOnly", "writeOnly"):
                    continue   # reported by the walker, once
                out.append(Problem(where, base + _pointer(leaf.absolute_path),
                                   _KIND.get(leaf.validator, "schema"), leaf.message))
        out.extend(self.walker.problems(schema, value, where, direction, base))
        return out

    def _filter_errata(self, op_id, problems):
        kept = []
        for p in problems:
            for e in self.errata:
                if (e.get("where", p.where) == p.where and e.get("kind", p.kind) == p.kind
                        and e["_rx"].fullmatch(p.pointer) and e["_op"].fullmatch(op_id or "")):
                    self.errata_hits[e["why"]] = self.errata_hits.get(e["why"], 0) + 1
                    break
            else:
                kept.append(p)
        return kept

    # ----- parameters -----
    def _coerce_scalar(self, schema, raw):
        schema = self._deref(schema)
        t = schema.get("type")
        if t == "integer":
            if not _INT.match(raw):
                return None, f"{raw!r} is not an integer"
            return int(raw), None
        if t == "number":
            if not _NUM.match(raw):
                return None, f"{raw!r} is not a number"
            return float(raw), None
        if t == "boolean":
            if raw not in ("true", "false"):
                return None, f"{raw!r} is not a boolean (true or false)"
            return raw == "true", None
        if t is None:
            for key in ("anyOf", "oneOf"):
                for branch in schema.get(key) or []:
                    value, err = self._coerce_scalar(branch, raw)
                    if err is None and self.is_valid(branch, value):
                        return value, None
        return raw, None

    def _coerce(self, param, raws):
        schema = self._deref(param.get("schema") or {})
        if schema.get("type") == "array":
            values = list(raws)
            if param.get("explode") is False or param.get("in") != "query":
                values = [x for r in values for x in r.split(",")]
            out = []
            for r in values:
                v, err = self._coerce_scalar(schema.get("items") or {}, r)
                if err:
                    return None, err
                out.append(v)
            return out, None
        if len(raws) > 1:
            return None, "given more than once"
        return self._coerce_scalar(schema, raws[0])

    # ----- the SpecValidator interface -----
    def operations(self):
        return list(self._ops)

    def match(self, method, path):
        return self.templates.find(method, path)

    def check_request(self, match, query, headers, body):
        op = match.op
        problems, coerced = [], {"path": {}, "query": {}, "header": {}}
        declared_query = set()
        for p in op.params:
            loc, name = p.get("in"), p.get("name")
            if loc == "path":
                raws = [match.path_params[name]] if name in match.path_params else []
            elif loc == "query":
                declared_query.add(name)
                raws = list(query.get(name) or [])
            elif loc == "header":
                value = headers.get(name)
                raws = [value] if value is not None else []
            else:
                continue
            if not raws:
                if p.get("required"):
                    problems.append(Problem(loc, name, "required",
                                            f"required {loc} parameter {name!r} is missing"))
                continue
            value, err = self._coerce(p, raws)
            if err:
                problems.append(Problem(loc, name, "type", f"{loc} parameter {name!r}: {err}"))
                continue
            for prob in self.schema_problems(p.get("schema") or {}, value, loc, "request"):
                problems.append(Problem(loc, name, prob.kind,
                                        f"{loc} parameter {name!r}: {prob.message}"))
            coerced[loc][name] = value
        for name in query:
            if name not in declared_query:
                problems.append(Problem("query", name, "unknown",
                                        f"unknown query parameter {name!r} (not declared for "
                                        f"{op.id})"))
        rb = self._deref(op.raw.get("requestBody")) if op.raw.get("requestBody") else None
        if rb is None:
            if body is not NO_BODY:
                problems.append(Problem("body", "", "unexpected-body",
                                        f"{op.id} takes no request body"))
        elif body is NO_BODY:
            if rb.get("required"):
                problems.append(Problem("body", "", "missing-body", "a request body is required"))
        else:
            content = rb.get("content") or {}
            ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
            media = _media(content, ctype)
            if media is None:
                problems.append(Problem("header", "content-type", "content-type",
                                        f"content type {ctype or '(none)'!r} is not one of "
                                        f"{sorted(content)}"))
            elif media.get("schema") is not None:
                problems.extend(self.schema_problems(media["schema"], body, "body", "request"))
        return self._filter_errata(op.id, problems), coerced

    def response_for(self, op, status):
        responses = op.raw.get("responses") or {}
        r = (responses.get(str(status)) or responses.get(f"{status // 100}XX")
             or responses.get("default"))
        return self._deref(r) if r is not None else None

    def check_response(self, match, status, headers, body):
        op = match.op
        r = self.response_for(op, status)
        if r is None:
            return [Problem("response", str(status), "status",
                            f"status {status} is not declared for {op.id}")]
        problems = []
        content = r.get("content") or {}
        if not content:
            if body is not NO_BODY:
                problems.append(Problem("response", "", "unexpected-body",
                                        f"status {status} of {op.id} declares no body"))
        elif body is NO_BODY:
            problems.append(Problem("response", "", "missing-body",
                                    f"status {status} of {op.id} declares a body"))
        else:
            media = content.get("application/json") or next(iter(content.values()))
            if media.get("schema") is not None:
                problems.extend(self.schema_problems(media["schema"], body, "response",
                                                     "response"))
        for name, h in (r.get("headers") or {}).items():
            h = self._deref(h)
            value = headers.get(name)
            if value is None:
                if h.get("required") or name.lower() in self.require_response_headers:
                    problems.append(Problem("response-header", name, "required",
                                            f"declared response header {name!r} is missing"))
                continue
            v, err = self._coerce_scalar(h.get("schema") or {}, str(value))
            if err:
                problems.append(Problem("response-header", name, "type", err))
                continue
            for prob in self.schema_problems(h.get("schema") or {}, v, "response-header",
                                             "response"):
                problems.append(Problem("response-header", name, prob.kind, prob.message))
        return self._filter_errata(op.id, problems)

    def check_schema(self, name, value, direction="response"):
        schema = (self.doc.get("components") or {}).get("schemas", {}).get(name)
        if schema is None:
            return [Problem(direction, "", "schema", f"no schema named {name!r}")]
        where = "response" if direction == "response" else "body"
        return self._filter_errata("", self.schema_problems(schema, value, where, direction))

    def find(self, method, path):
        """Convenience: the Match or None."""
        m, _ = self.match(method, path)
        return m if isinstance(m, Match) else None
