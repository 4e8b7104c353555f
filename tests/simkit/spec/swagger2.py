"""Swagger 2.0 validation of requests and responses (Azure Resource Manager specs).

Owns `Swagger2(SpecValidator)`, one standalone Swagger 2.0 document (e.g.
`shared/specs/azure/bundled/virtualMachine.2024-07-01.bundled.json`, read at run time), and
`MultiSpec`, several of them behind one interface, dispatching on the path and `api-version`.

- Every local `$ref` (`#/definitions/X`, `#/parameters/X`) is made absolute under the document's
  URI and registered with `referencing` as draft 4. Schemas are validated with
  `jsonschema.Draft4Validator` extended for Swagger: `x-nullable: true` admits null (also next
  to a `$ref`); `readOnly` properties are never demanded by `required` in requests; enums with
  `x-ms-enum.modelAsString: true` are compared case-insensitively (ARM parses them so);
  `discriminator` / `x-ms-discriminator-value` select the subtype (a definition whose `allOf`
  names the base). The strict walker (walk.py) reports unknown fields, and `readOnly` fields sent
  in requests.
- Paths match case-insensitively (ARM does). A parameter with `x-ms-skip-url-encoding: true`
  (`{scope}`, `{resourceId}`) spans several segments. Literal segments beat parameters.
- `api-version` (a required query parameter whose schema has no enum in ARM specs) must equal
  the document's `info.version`; anything else is a `Problem(where="query", pointer="api-version",
  kind="api-version")`.
- Parameters are typed from strings (`type`, `format`, `enum`, `pattern`, limits on the parameter
  itself); the body is the `in: body` parameter; unknown query parameters are problems.
- Responses are checked against `responses[status]`, else `default`. A response without a
  `schema` must have no body.
Never raises on bad input; `errata` suppresses findings that are the spec's own mistakes (each
with a `why`, counted in `errata_hits`), exactly as in oas30.py.
"""

import json
import re

import jsonschema
import referencing
import referencing.jsonschema
from jsonschema import validators as _validators

from .base import NO_BODY, Match, Operation, Problem, SpecValidator
from .walk import StrictWalker, escape

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_KIND = {"type": "type", "required": "required", "enum": "enum", "pattern": "pattern",
         "format": "format", "maxLength": "limit", "minLength": "limit", "maximum": "limit",
         "minimum": "limit", "maxItems": "limit", "minItems": "limit", "multipleOf": "limit",
         "exclusiveMaximum": "limit", "exclusiveMinimum": "limit", "uniqueItems": "limit",
         "maxProperties": "limit", "minProperties": "limit"}
_INT = re.compile(r"^-?\d+$")
_NUM = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_PARAM = re.compile(r"\{([^{}/]+)\}")

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("int32")
def _int32(v):
    return not isinstance(v, int) or -2 ** 31 <= v < 2 ** 31


@FORMATS.checks("int64")
def _int64(v):
    return not isinstance(v, int) or -2 ** 63 <= v < 2 ** 63


@FORMATS.checks("uuid")
def _uuid(v):
    return not isinstance(v, str) or bool(_UUID.match(v))


@FORMATS.checks("date-time")
def _dt(v):
    return not isinstance(v, str) or bool(_DATETIME.match(v))


def _pointer(path):
    return "".join("/" + escape(p) for p in path)


def _make_validator_class(direction):
    base = jsonschema.Draft4Validator
    ref_v, type_v = base.VALIDATORS["$ref"], base.VALIDATORS["type"]
    enum_v, req_v = base.VALIDATORS["enum"], base.VALIDATORS["required"]

    def x_ref(validator, ref, instance, schema):
        if instance is None and schema.get("x-nullable") is True:
            return
        yield from ref_v(validator, ref, instance, schema)

    def x_type(validator, types, instance, schema):
        if instance is None and schema.get("x-nullable") is True:
            return
        yield from type_v(validator, types, instance, schema)

    def x_enum(validator, enums, instance, schema):
        if instance is None and schema.get("x-nullable") is True:
            return
        xe = schema.get("x-ms-enum") or {}
        if isinstance(instance, str) and xe.get("modelAsString") is True:
            if any(isinstance(e, str) and e.lower() == instance.lower() for e in enums):
                return
        yield from enum_v(validator, enums, instance, schema)

    def x_required(validator, required, instance, schema):
        if direction == "request" and isinstance(instance, dict):
            props = schema.get("properties") or {}
            required = [r for r in required
                        if not _read_only(validator, props.get(r))]
        yield from req_v(validator, required, instance, schema)

    def x_discriminator(validator, prop, instance, schema):
        subtypes = schema.get("x-simkit-subtypes") or {}
        if not isinstance(instance, dict) or not subtypes:
            return
        value = instance.get(prop)
        target = subtypes.get(value)
        if target is not None:
            yield from validator.descend(instance, {"$ref": target})

    return _validators.extend(base, {"$ref": x_ref, "type": x_type, "enum": x_enum,
                                     "required": x_required, "discriminator": x_discriminator})


def _read_only(validator, sub):
    """Whether a property schema (following $refs) is readOnly."""
    for _ in range(16):
        if not isinstance(sub, dict):
            return False
        if sub.get("readOnly") is True:
            return True
        if "$ref" not in sub:
            return False
        try:
            sub = validator._resolver.lookup(sub["$ref"]).contents
        except Exception:
            return False
    return False


_REQUEST_CLS = _make_validator_class("request")
_RESPONSE_CLS = _make_validator_class("response")


class SwaggerOperation(Operation):
    """An Operation that knows its document (for MultiSpec)."""

    def __init__(self, *args, spec=None, generic=False, **kw):
        super().__init__(*args, **kw)
        self.spec = spec
        self.generic = generic


class _Templates:
    """Case-insensitive template matching; skip-url-encoding params span segments."""

    def __init__(self):
        self.entries = []

    def add(self, template, method, op, multi):
        for e in self.entries:
            if e["template"] == template:
                e["methods"][method.upper()] = op
                return
        rx, names = "", []
        for i, part in enumerate(_PARAM.split(template)):
            if i % 2 == 0:
                rx += re.escape(part)
            else:
                names.append(part)
                rx += f"(?P<p{len(names) - 1}>{'.+?' if part in multi else '[^/]+'})"
        segs = [s for s in template.split("/") if s]
        literal = sum(1 for s in segs if not _PARAM.search(s))
        self.entries.append({"template": template, "rx": re.compile("^" + rx + "$", re.I),
                             "names": names, "methods": {method.upper(): op},
                             "key": (-literal, -len(segs))})
        self.entries.sort(key=lambda e: e["key"])

    def find(self, method, path):
        allowed = []
        for e in self.entries:
            m = e["rx"].match(path)
            if not m:
                continue
            if not allowed:
                allowed = sorted(e["methods"])
            op = e["methods"].get(method.upper())
            if op is not None:
                return Match(op, {n: m.group(f"p{i}") for i, n in enumerate(e["names"])}), \
                    sorted(e["methods"]), e["key"]
        return None, allowed, None


class Swagger2(SpecValidator):
    def __init__(self, path, uri=None, errata=(), op_prefix=""):
        with open(path, "rb") as fh:
            doc = json.loads(fh.read())
        if str(doc.get("swagger")) != "2.0":
            raise ValueError(f"{path}: not a Swagger 2.0 document")
        self.path = path
        self.version = str((doc.get("info") or {}).get("version") or "")
        self.name = f"Swagger 2.0 {doc.get('info', {}).get('title', '')} {self.version}".strip()
        self.uri = uri or f"urn:simkit:swagger2:{path.rsplit('/', 1)[-1]}"
        self.doc = self._absolutize(doc)
        self._subtypes()
        resource = referencing.Resource.from_contents(
            self.doc, default_specification=referencing.jsonschema.DRAFT4)
        self.registry = referencing.Registry().with_resource(self.uri, resource)
        self._validators = {}
        self.walker = StrictWalker(self._deref, self.is_valid)
        self.errata = [dict(e, _rx=re.compile(e["pointer"]),
                            _op=re.compile(e.get("operation", ".*"))) for e in errata]
        self.errata_hits = {}
        self.templates = _Templates()
        self._ops = []
        for template, item in (self.doc.get("paths") or {}).items():
            shared = [self._deref(p) for p in item.get("parameters") or []]
            for method in METHODS:
                raw = item.get(method)
                if not isinstance(raw, dict):
                    continue
                params = {}
                for p in shared + [self._deref(p) for p in raw.get("parameters") or []]:
                    params[(p.get("in"), p.get("name"))] = p
                multi = {p["name"] for p in params.values()
                         if p.get("in") == "path" and p.get("x-ms-skip-url-encoding")}
                segs = [s for s in template.split("/") if s]
                generic = all(_PARAM.fullmatch(s) for s in segs)
                op = SwaggerOperation(op_prefix + (raw.get("operationId") or
                                                   f"{method.upper()} {template}"),
                                      method.upper(), template, raw, list(params.values()),
                                      spec=self, generic=generic)
                self.templates.add(template, method, op, multi)
                self._ops.append(op)

    # ----- references -----
    def _absolutize(self, node):
        if isinstance(node, dict):
            return {k: (self.uri + v if k == "$ref" and isinstance(v, str) and v.startswith("#")
                        else self._absolutize(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._absolutize(v) for v in node]
        return node

    def _deref(self, node):
        for _ in range(64):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            ref = node["$ref"]
            if not ref.startswith(self.uri + "#"):
                return {}
            target = self.doc
            try:
                for tok in ref[len(self.uri) + 1:].split("/")[1:]:
                    tok = tok.replace("~1", "/").replace("~0", "~")
                    target = target[int(tok)] if isinstance(target, list) else target[tok]
            except (KeyError, IndexError, ValueError):
                return {}
            node = target
        return node

    def _subtypes(self):
        """Record, on each definition with a `discriminator`, its subtypes by value."""
        defs = self.doc.get("definitions") or {}
        for name, d in defs.items():
            for parent in d.get("allOf") or []:
                ref = parent.get("$ref", "") if isinstance(parent, dict) else ""
                base = ref.rsplit("/", 1)[-1]
                if ref.startswith(self.uri + "#/definitions/") and "discriminator" in defs.get(
                        base, {}):
                    value = d.get("x-ms-discriminator-value", name)
                    defs[base].setdefault("x-simkit-subtypes", {})[value] = \
                        f"{self.uri}#/definitions/{name}"

    # ----- schema validation -----
    def _validator(self, schema, direction):
        key = (id(schema), direction)
        v = self._validators.get(key)
        if v is None:
            cls = _REQUEST_CLS if direction == "request" else _RESPONSE_CLS
            v = (cls(schema, registry=self.registry, format_checker=FORMATS), schema)
            self._validators[key] = v
        return v[0]

    def is_valid(self, schema, value):
        try:
            return self._validator(schema, "response").is_valid(value)
        except Exception:
            return False

    def schema_problems(self, schema, value, where, direction, base=""):
        out = []
        try:
            errors = list(self._validator(schema, direction).iter_errors(value))
        except Exception as exc:
            return [Problem(where, base, "schema", f"schema could not be applied: {exc}")]
        for e in errors:
            leaves = [e]
            if e.validator in ("oneOf", "anyOf") and e.context:
                leaves = list(e.context)
            for leaf in leaves:
                out.append(Problem(where, base + _pointer(leaf.absolute_path),
                                   _KIND.get(leaf.validator, "schema"), leaf.message))
        out.extend(self.walker.problems(schema, value, where, direction, base))
        return out

    def filter_errata(self, op_id, problems):
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
    @staticmethod
    def _param_schema(p):
        return {k: v for k, v in p.items() if k in (
            "type", "format", "enum", "pattern", "maxLength", "minLength", "maximum", "minimum",
            "exclusiveMaximum", "exclusiveMinimum", "items", "maxItems", "minItems",
            "uniqueItems", "multipleOf", "x-ms-enum", "x-nullable")}

    def _coerce(self, p, raws):
        t = p.get("type")
        if t == "array":
            values = [x for r in raws for x in (r.split(",") if p.get("collectionFormat", "csv")
                                                == "csv" else [r])]
            item = p.get("items") or {}
            out = []
            for r in values:
                v, err = self._scalar(item.get("type"), r)
                if err:
                    return None, err
                out.append(v)
            return out, None
        if len(raws) > 1:
            return None, "given more than once"
        return self._scalar(t, raws[0])

    @staticmethod
    def _scalar(t, raw):
        if t == "integer":
            return (int(raw), None) if _INT.match(raw) else (None, f"{raw!r} is not an integer")
        if t == "number":
            return (float(raw), None) if _NUM.match(raw) else (None, f"{raw!r} is not a number")
        if t == "boolean":
            low = raw.lower()
            if low not in ("true", "false"):
                return None, f"{raw!r} is not a boolean (true or false)"
            return low == "true", None
        return raw, None

    # ----- the SpecValidator interface -----
    def operations(self):
        return list(self._ops)

    def match(self, method, path):
        m, allowed, _ = self.templates.find(method, path)
        return m, allowed

    def match_key(self, method, path):
        return self.templates.find(method, path)

    def check_request(self, match, query, headers, body):
        op = match.op
        problems, coerced = [], {"path": {}, "query": {}, "header": {}}
        declared = set()
        body_param = None
        for p in op.params:
            loc, name = p.get("in"), p.get("name")
            if loc == "body":
                body_param = p
                continue
            if loc == "path":
                raws = [match.path_params[name]] if name in match.path_params else []
            elif loc == "query":
                declared.add(name)
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
            if loc == "query" and name == "api-version" and self.version and \
                    value != self.version:
                problems.append(Problem("query", name, "api-version",
                                        f"api-version {value!r} is not {self.version!r} "
                                        f"(the version of {self.path.rsplit('/', 1)[-1]})"))
            for prob in self.schema_problems(self._param_schema(p), value, loc, "request"):
                problems.append(Problem(loc, name, prob.kind,
                                        f"{loc} parameter {name!r}: {prob.message}"))
            coerced[loc][name] = value
        for name in query:
            if name not in declared:
                problems.append(Problem("query", name, "unknown",
                                        f"unknown query parameter {name!r} (not declared for "
                                        f"{op.id})"))
        if body_param is None:
            if body is not NO_BODY:
                problems.append(Problem("body", "", "unexpected-body",
                                        f"{op.id} takes no request body"))
        elif body is NO_BODY:
            if body_param.get("required"):
                problems.append(Problem("body", "", "missing-body", "a request body is required"))
        else:
            consumes = op.raw.get("consumes") or self.doc.get("consumes") or ["application/json"]
            ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
            if ctype not in [c.lower() for c in consumes]:
                problems.append(Problem("header", "content-type", "content-type",
                                        f"content type {ctype or '(none)'!r} is not one of "
                                        f"{consumes}"))
            problems.extend(self.schema_problems(body_param.get("schema") or {}, body, "body",
                                                 "request"))
        return self.filter_errata(op.id, problems), coerced

    def response_for(self, op, status):
        responses = op.raw.get("responses") or {}
        r = responses.get(str(status)) or responses.get("default")
        return self._deref(r) if r is not None else None

    def check_response(self, match, status, headers, body):
        op = match.op
        r = self.response_for(op, status)
        if r is None:
            return [Problem("response", str(status), "status",
                            f"status {status} is not declared for {op.id}")]
        problems = []
        schema = r.get("schema")
        if schema is None:
            if body is not NO_BODY:
                problems.append(Problem("response", "", "unexpected-body",
                                        f"status {status} of {op.id} declares no body"))
        elif body is NO_BODY:
            problems.append(Problem("response", "", "missing-body",
                                    f"status {status} of {op.id} declares a body"))
        else:
            problems.extend(self.schema_problems(schema, body, "response", "response"))
        for name, h in (r.get("headers") or {}).items():
            value = headers.get(name)
            if value is None:
                continue
            v, err = self._scalar(h.get("type"), str(value))
            if err:
                problems.append(Problem("response-header", name, "type", err))
        return self.filter_errata(op.id, problems)

    def check_schema(self, name, value, direction="response"):
        schema = (self.doc.get("definitions") or {}).get(name)
        if schema is None:
            return [Problem(direction, "", "schema", f"no definition named {name!r}")]
        where = "response" if direction == "response" else "body"
        return self.filter_errata("", self.schema_problems(schema, value, where, direction))


class MultiSpec(SpecValidator):
    """Several Swagger 2.0 documents (one per resource provider and version) as one spec.

    `match_request(method, path, query)` picks, among the documents whose templates match the
    path, the most specific one whose version equals the request's `api-version`; if none has
    that version, the most specific non-generic match (so the api-version is then reported as a
    problem); templates made only of parameters (`/{resourceId}`) match only with their own
    version. Operation ids that occur in several documents are prefixed with the document's
    short name (`resources:Operations_List`)."""

    def __init__(self, paths, errata=()):
        names = [p.rsplit("/", 1)[-1].split(".")[0] for p in paths]
        seen = {}
        for p in paths:
            with open(p, "rb") as fh:
                for item in json.loads(fh.read()).get("paths", {}).values():
                    for m in METHODS:
                        oid = (item.get(m) or {}).get("operationId") if isinstance(
                            item.get(m), dict) else None
                        if oid:
                            seen.setdefault(oid, set()).add(p)
        self.specs = []
        for p, short in zip(paths, names):
            spec = Swagger2(p, errata=errata)
            for op in spec._ops:
                if len(seen.get(op.id, ())) > 1:
                    op.id = f"{short}:{op.id}"
            self.specs.append(spec)
        self.name = "ARM: " + ", ".join(f"{n} {s.version}" for n, s in zip(names, self.specs))
        # claimed(method, path) -> bool: set by the simulator; routes of its own (outside the
        # specs) win over templates made only of parameters (`/{resourceId}`).
        self.claimed = None
        self.versions = sorted({s.version for s in self.specs})

    @property
    def errata_hits(self):
        out = {}
        for s in self.specs:
            for k, v in s.errata_hits.items():
                out[k] = out.get(k, 0) + v
        return out

    def operations(self):
        return [op for s in self.specs for op in s.operations()]

    def _candidates(self, method, path):
        found, allowed = [], []
        for s in self.specs:
            m, al, key = s.match_key(method, path)
            if m is not None:
                found.append((key, m))
            elif al and not allowed:
                allowed = al
        found.sort(key=lambda x: x[0])
        return [m for _, m in found], allowed

    def match(self, method, path):
        return self.match_request(method, path, {})

    def match_request(self, method, path, query):
        found, allowed = self._candidates(method, path)
        version = (query.get("api-version") or [None])[0]
        if found and not self._generic_ok(method, path):
            found = [m for m in found if not m.op.generic]
        for m in found:
            if m.op.spec.version == version:
                return m, [m.op.method]
        for m in found:
            if not m.op.generic:
                return m, [m.op.method]
        return None, allowed

    def _generic_ok(self, method, path):
        return self.claimed is None or not self.claimed(method, path)

    def versions_for(self, method, path):
        """The api-versions of the documents with an operation for (method, path)."""
        found, _ = self._candidates(method, path)
        specific = [m for m in found if not m.op.generic] or found
        return sorted({m.op.spec.version for m in specific})

    def check_request(self, match, query, headers, body):
        return match.op.spec.check_request(match, query, headers, body)

    def check_response(self, match, status, headers, body):
        return match.op.spec.check_response(match, status, headers, body)

    def check_schema(self, name, value, direction="response"):
        for s in self.specs:
            if name in (s.doc.get("definitions") or {}):
                return s.check_schema(name, value, direction)
        return [Problem(direction, "", "schema", f"no definition named {name!r}")]

    def spec_named(self, short):
        for s in self.specs:
            if s.path.rsplit("/", 1)[-1].startswith(short):
                return s
        raise KeyError(short)
