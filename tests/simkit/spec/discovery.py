"""Google API discovery documents (Compute v1, Secret Manager v1, IAM v1) as a SpecValidator.

Owns `Discovery(SpecValidator)` (one discovery document) and `MultiDiscovery` (several, one
server: compute under `/compute/v1/`, Secret Manager and IAM under `/v1/`). Methods come from
`resources.<r>(.resources.<r2>)*.methods.<m>`; the operation id is the method's `id`
(`compute.instances.insert`). Requests are matched on `/` + servicePath + `flatPath` (literal
segments, then literal characters, win: `…/instances/bulkInsert` beats `…/instances/{instance}`,
`…/secrets/{secretsId}:addVersion` beats `…/secrets/{secretsId}`); the `path` form's parameters
(`{+parent}`) are rebuilt from the concrete path and checked against their `pattern`.
Parameters are typed from strings (`integer`, `boolean`, `int64` as a decimal string, `repeated`),
with `enum`, `pattern` (anchored: Google matches whole values) and `required`; unknown query
parameters are problems except the document's system parameters (`alt`, `fields`,
`prettyPrint`, …) and `$alt` (`json` or `json;enum-encoding=int`, sent by the official Rust
clients, not declared in any document). Schemas are converted lazily, one by name, to draft-4
JSON Schema (`$ref: "Name"` → a registry URI, `required: true` → `required`, `int64`/`uint64`
→ decimal strings, `int32`/`uint32` ranges, `format: byte` → base64, patterns anchored,
`[Output Only]`/`Output only.` descriptions → `readOnly`), validated with
`jsonschema.Draft4Validator` plus the StrictWalker (unknown and read-only fields). Per-method
required-ness (`annotations.required: [method ids]` on properties, e.g. `Instance.name` for
`compute.instances.insert`) is checked by a separate walk. Errors (status ≥ 400) are checked
against Google's error shape. The document is read once; nothing here raises on bad input.
"""

import base64
import json
import re
import threading

import jsonschema
import referencing
import referencing.jsonschema

from .base import NO_BODY, Match, Operation, Problem, SpecValidator
from .walk import StrictWalker, escape

_KIND = {"type": "type", "required": "required", "enum": "enum", "pattern": "pattern",
         "format": "format", "maxLength": "limit", "minLength": "limit", "maximum": "limit",
         "minimum": "limit", "maxItems": "limit", "minItems": "limit",
         "additionalProperties": "unknown"}
_INT = re.compile(r"^-?\d+$")
_UINT = re.compile(r"^\d+$")
_B64 = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
# `$alt` is what google-cloud-rust adds to every call (`json`, or `json;enum-encoding=int` for
# the protobuf-based APIs); the documents declare only `alt`.
EXTRA_SYSTEM_PARAMS = {"$alt": {"type": "string", "location": "query",
                                "enum": ["json", "json;enum-encoding=int"]}}
_OUTPUT_ONLY = re.compile(r"^\s*(\[Output Only\]|Output only\.)", re.I)
_INT_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1)}

GOOGLE_ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "status"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "integer"}, "message": {"type": "string"},
            "status": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["domain", "reason", "message"],
                "additionalProperties": False,
                "properties": {"domain": {"type": "string"}, "reason": {"type": "string"},
                               "message": {"type": "string"},
                               "locationType": {"type": "string"},
                               "location": {"type": "string"}}}},
            "details": {"type": "array", "items": {"type": "object",
                                                   "required": ["@type"]}}}}}}


def _pointer(path):
    return "".join("/" + escape(p) for p in path)


def _b64ok(value):
    if not isinstance(value, str) or not _B64.match(value):
        return False
    try:
        s = value.replace("-", "+").replace("_", "/")
        base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        return True
    except ValueError:
        return False


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("byte")
def _check_byte(value):
    return not isinstance(value, str) or _b64ok(value)


def _methods(resources, out):
    for res in (resources or {}).values():
        for m in (res.get("methods") or {}).values():
            out.append(m)
        _methods(res.get("resources"), out)
    return out


class _Template:
    """One flatPath template: regex, parameter names, specificity."""
    _PARAM = re.compile(r"\{([^{}]+)\}")

    def __init__(self, template):
        parts = self._PARAM.split(template)
        rx, self.names = "", []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                rx += re.escape(part)
            else:
                plus = part.startswith("+")
                self.names.append(part.lstrip("+"))
                rx += f"(?P<p{len(self.names) - 1}>{'.+' if plus else '[^/]+?'})"
        self.rx = re.compile("^" + rx + "$")
        segs = [s for s in template.split("/") if s]
        literal_segs = sum(1 for s in segs if not self._PARAM.search(s))
        literal_chars = len(self._PARAM.sub("", template))
        self.key = (-literal_segs, -literal_chars)
        self.methods = {}

    def match(self, path):
        m = self.rx.match(path)
        if not m:
            return None
        return {n: m.group(f"p{i}") for i, n in enumerate(self.names)}


class Discovery(SpecValidator):
    def __init__(self, path, errata=(), doc=None):
        """path: a discovery document (JSON); errata: [{"where", "kind", "pointer" (regex,
        full match), "operation" (regex on the method id), "why"}]."""
        if doc is None:
            with open(path, "rb") as fh:
                doc = json.loads(fh.read())
        if doc.get("kind") != "discovery#restDescription":
            raise ValueError(f"{path}: not a Google discovery document")
        self.doc = doc
        self.api = doc.get("name", "api")
        self.name = f"discovery {doc.get('id')} rev {doc.get('revision')}"
        self.uri = f"urn:simkit:discovery:{doc.get('id')}"
        self.prefix = "/" + (doc.get("servicePath") or "")
        self.schemas = doc.get("schemas") or {}
        self.system_params = dict(doc.get("parameters") or {}, **EXTRA_SYSTEM_PARAMS)
        self._converted = {}
        self._lock = threading.RLock()
        self._validators = {}
        self.registry = referencing.Registry(retrieve=self._retrieve)
        self.walker = StrictWalker(self._deref, self.is_valid)
        self.errata = [dict(e, _rx=re.compile(e["pointer"]),
                            _op=re.compile(e.get("operation", ".*"))) for e in errata]
        self.errata_hits = {}
        self._templates = {}
        self._ops = []
        for m in _methods(doc.get("resources"), []):
            flat = m.get("flatPath") or m.get("path")
            template = self.prefix + flat
            params = dict(m.get("parameters") or {})
            op = Operation(m["id"], m["httpMethod"].upper(), template, m,
                           [dict(v, name=k) for k, v in params.items()])
            op.path_template = _Template(self.prefix + m.get("path", flat))
            t = self._templates.get(template)
            if t is None:
                t = self._templates[template] = _Template(template)
            t.methods[op.method] = op
            self._ops.append(op)
        self._sorted = sorted(self._templates.values(), key=lambda t: t.key)

    # ----- schemas: converted lazily, by name -----
    def schema_uri(self, name):
        return f"{self.uri}/schemas/{name}"

    def _retrieve(self, uri):
        name = uri.rsplit("/", 1)[-1]
        return referencing.Resource.from_contents(self.converted(name),
                                                  default_specification=referencing.jsonschema.DRAFT4)

    def converted(self, name):
        with self._lock:
            s = self._converted.get(name)
            if s is None:
                raw = self.schemas.get(name)
                if raw is None:
                    s = {"not": {}, "description": f"unknown schema {name}"}
                else:
                    s = self._convert(raw)
                    s["$id"] = self.schema_uri(name)
                self._converted[name] = s
            return s

    def _convert(self, s):
        if not isinstance(s, dict):
            return {}
        if "$ref" in s:
            out = {"$ref": self.schema_uri(s["$ref"])}
            if _OUTPUT_ONLY.match(s.get("description") or ""):
                out = {"allOf": [out], "readOnly": True}
            return out
        out = {}
        t, fmt = s.get("type"), s.get("format")
        if t == "string" and fmt in ("int64", "uint64"):
            out["type"] = "string"
            out["pattern"] = r"^\d+$" if fmt == "uint64" else r"^-?\d+$"
        elif t == "integer":
            out["type"] = "integer"
            if fmt in _INT_RANGES:
                out["minimum"], out["maximum"] = _INT_RANGES[fmt]
        elif t and t != "any":
            out["type"] = t
        if fmt == "byte":
            out["format"] = "byte"
        if "enum" in s:
            out["enum"] = list(s["enum"])
        if "pattern" in s:
            out["pattern"] = "^(?:" + s["pattern"] + ")$"
        for k in ("minimum", "maximum"):
            if k in s:
                try:
                    out[k] = int(s[k])
                except (TypeError, ValueError):
                    pass
        if isinstance(s.get("properties"), dict):
            out["properties"] = {k: self._convert(v) for k, v in s["properties"].items()}
            req = [k for k, v in s["properties"].items() if v.get("required") is True]
            if req:
                out["required"] = req
        if isinstance(s.get("additionalProperties"), dict):
            out["additionalProperties"] = self._convert(s["additionalProperties"])
        if isinstance(s.get("items"), dict):
            out["items"] = self._convert(s["items"])
        if _OUTPUT_ONLY.match(s.get("description") or ""):
            out["readOnly"] = True
        return out

    def _deref(self, node):
        for _ in range(64):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            node = self.converted(node["$ref"].rsplit("/", 1)[-1])
        return node

    def _validator(self, schema):
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            v = (jsonschema.Draft4Validator(schema, registry=self.registry,
                                            format_checker=_FORMATS), schema)
            self._validators[key] = v
        return v[0]

    def is_valid(self, schema, value):
        try:
            return self._validator(schema).is_valid(value)
        except Exception:
            return False

    def schema_problems(self, schema, value, where, direction, base=""):
        out = []
        try:
            errors = list(self._validator(schema).iter_errors(value))
        except Exception as exc:
            return [Problem(where, base, "schema", f"schema could not be applied: {exc}")]
        for e in errors:
            out.append(Problem(where, base + _pointer(e.absolute_path),
                               _KIND.get(e.validator, "schema"), e.message[:500]))
        try:
            out.extend(self.walker.problems(schema, value, where, direction, base))
        except Exception as exc:
            out.append(Problem(where, base, "schema", f"walk failed: {exc!r}"))
        return out

    def check_schema(self, name, value, direction="response"):
        return self.schema_problems({"$ref": self.schema_uri(name)}, value, "body", direction)

    # ----- per-method required properties (annotations.required) -----
    def _annotated(self, schema_name, value, method_id, ptr, out, depth=0, seen=None):
        raw = self.schemas.get(schema_name)
        if raw is None or depth > 12:
            return
        self._annotated_raw(raw, value, method_id, ptr, out, depth)

    def _annotated_raw(self, raw, value, method_id, ptr, out, depth):
        if "$ref" in raw:
            return self._annotated(raw["$ref"], value, method_id, ptr, out, depth + 1)
        if isinstance(value, dict) and isinstance(raw.get("properties"), dict):
            for k, sub in raw["properties"].items():
                req = (sub.get("annotations") or {}).get("required") or []
                if method_id in req and (k not in value or value[k] in (None, "")):
                    out.append(Problem("body", f"{ptr}/{escape(k)}", "required",
                                       f"{ptr}/{k} is required for {method_id}"))
                if k in value:
                    self._annotated_raw(sub, value[k], method_id, f"{ptr}/{escape(k)}", out,
                                        depth + 1)
        elif isinstance(value, list) and isinstance(raw.get("items"), dict):
            for i, v in enumerate(value):
                self._annotated_raw(raw["items"], v, method_id, f"{ptr}/{i}", out, depth + 1)

    # ----- parameters -----
    def _coerce_scalar(self, spec, raw):
        t, fmt = spec.get("type"), spec.get("format")
        if t == "integer":
            if not _INT.match(raw):
                return None, f"{raw!r} is not an integer"
            v = int(raw)
            lo, hi = _INT_RANGES.get(fmt, (None, None))
            if lo is not None and not lo <= v <= hi:
                return None, f"{raw!r} is out of range for {fmt}"
            return v, None
        if t == "number":
            try:
                return float(raw), None
            except ValueError:
                return None, f"{raw!r} is not a number"
        if t == "boolean":
            if raw not in ("true", "false"):
                return None, f"{raw!r} is not a boolean (true or false)"
            return raw == "true", None
        if fmt in ("int64", "uint64"):
            if not (_UINT if fmt == "uint64" else _INT).match(raw):
                return None, f"{raw!r} is not a decimal {fmt}"
            return raw, None
        return raw, None

    def _param_problems(self, loc, name, spec, raws):
        """(value, problems) of one parameter given its raw strings."""
        if not spec.get("repeated") and len(raws) > 1:
            return None, [Problem(loc, name, "type", f"{loc} parameter {name!r} given "
                                  "more than once")]
        values, probs = [], []
        for raw in raws:
            v, err = self._coerce_scalar(spec, raw)
            if err:
                probs.append(Problem(loc, name, "type", f"{loc} parameter {name!r}: {err}"))
                continue
            if "enum" in spec and raw not in spec["enum"]:
                probs.append(Problem(loc, name, "enum", f"{loc} parameter {name!r}: {raw!r} "
                                     f"is not one of {spec['enum'][:12]}"))
            pat = spec.get("pattern")
            if pat:
                rx = pat if pat.startswith("^") else "^(?:" + pat + ")$"
                try:
                    if not re.search(rx, raw):
                        probs.append(Problem(loc, name, "pattern", f"{loc} parameter {name!r}:"
                                             f" {raw!r} does not match {pat!r}"))
                except re.error:
                    pass
            values.append(v)
        if probs:
            return None, probs
        return (values if spec.get("repeated") else values[0]), []

    # ----- the SpecValidator interface -----
    def operations(self):
        return list(self._ops)

    def match(self, method, path):
        allowed = []
        for t in self._sorted:
            params = t.match(path)
            if params is None:
                continue
            if not allowed:
                allowed = sorted(t.methods)
            op = t.methods.get(method.upper())
            if op is not None:
                m = Match(op, params)
                m.request_path = path
                return m, sorted(t.methods)
        return None, allowed

    def check_request(self, match, query, headers, body):
        op = match.op
        problems, coerced = [], {"path": {}, "query": {}, "header": {}}
        try:
            self._check_request(match, query, headers, body, problems, coerced)
        except Exception as exc:      # never raise on bad input
            problems.append(Problem("body", "", "schema", f"validator error: {exc!r}"))
        return self._filter_errata(op.id, problems), coerced

    def _check_request(self, match, query, headers, body, problems, coerced):
        op = match.op
        path_values = op.path_template.match(self._path_of(match)) or {}
        declared = set()
        for p in op.params:
            name, loc = p["name"], p.get("location")
            if loc == "path":
                raws = [path_values[name]] if name in path_values else []
            elif loc == "query":
                declared.add(name)
                raws = list(query.get(name) or [])
            else:
                continue
            if not raws:
                if p.get("required"):
                    problems.append(Problem(loc, name, "required",
                                            f"required {loc} parameter {name!r} is missing"))
                continue
            value, probs = self._param_problems(loc, name, p, raws)
            problems.extend(probs)
            if not probs:
                coerced[loc][name] = value
        for name, raws in query.items():
            if name in declared:
                continue
            spec = self.system_params.get(name)
            if spec is None:
                problems.append(Problem("query", name, "unknown",
                                        f"unknown query parameter {name!r} (not declared for "
                                        f"{op.id})"))
                continue
            value, probs = self._param_problems("query", name, spec, raws)
            problems.extend(probs)
            if not probs:
                coerced["query"][name] = value
        req = (op.raw.get("request") or {}).get("$ref")
        if req is None:
            if body is not NO_BODY and body != {}:
                problems.append(Problem("body", "", "unexpected-body",
                                        f"{op.id} takes no request body"))
            return
        if body is NO_BODY:
            problems.append(Problem("body", "", "missing-body", f"{op.id} needs a {req} body"))
            return
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            problems.append(Problem("header", "content-type", "content-type",
                                    f"content type {ctype or '(none)'!r} is not "
                                    "application/json"))
        problems.extend(self.schema_problems({"$ref": self.schema_uri(req)}, body, "body",
                                             "request"))
        self._annotated(req, body, op.id, "", problems)

    @staticmethod
    def _path_of(match):
        return getattr(match, "request_path", None) or ""

    def check_response(self, match, status, headers, body):
        op = match.op
        try:
            if status >= 400:
                if body is NO_BODY:
                    return [Problem("response", "", "missing-body", "an error needs a body")]
                return self.schema_problems(GOOGLE_ERROR_SCHEMA, body, "response", "response")
            if status not in (200, 204):
                return [Problem("response", str(status), "status",
                                f"status {status} is not how {op.id} answers (200)")]
            ref = (op.raw.get("response") or {}).get("$ref")
            if ref is None:
                if body is not NO_BODY and body != {}:
                    return [Problem("response", "", "unexpected-body", f"{op.id} has no body")]
                return []
            if body is NO_BODY:
                return [Problem("response", "", "missing-body", f"{op.id} answers a {ref}")]
            return self._filter_errata(op.id, self.schema_problems(
                {"$ref": self.schema_uri(ref)}, body, "response", "response"))
        except Exception as exc:
            return [Problem("response", "", "schema", f"validator error: {exc!r}")]

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


class MultiDiscovery(SpecValidator):
    """Several discovery documents served by one simulator: the most specific template of any
    document wins. Each Match records the concrete path (for `{+name}` parameters)."""

    def __init__(self, specs):
        self.specs = list(specs)
        self.name = " + ".join(s.name for s in self.specs)
        self._owner = {}
        for s in self.specs:
            for op in s.operations():
                self._owner[op.id] = s

    @property
    def errata_hits(self):
        out = {}
        for s in self.specs:
            out.update(s.errata_hits)
        return out

    def spec_for(self, op_id):
        return self._owner.get(op_id)

    def operations(self):
        return [op for s in self.specs for op in s.operations()]

    def match(self, method, path):
        best, best_key, allowed = None, None, []
        for s in self.specs:
            for t in s._sorted:
                params = t.match(path)
                if params is None:
                    continue
                op = t.methods.get(method.upper())
                if op is None:
                    allowed = allowed or sorted(t.methods)
                    continue
                if best_key is None or t.key < best_key:
                    best, best_key = Match(op, params), t.key
                break
        if best is not None:
            best.request_path = path
            return best, [best.op.method]
        return None, allowed

    def check_request(self, match, query, headers, body):
        return self._owner[match.op.id].check_request(match, query, headers, body)

    def check_response(self, match, status, headers, body):
        return self._owner[match.op.id].check_response(match, status, headers, body)

    def check_schema(self, name, value, direction="response"):
        api, _, schema = name.partition(".")
        for s in self.specs:
            if s.api == api:
                return s.check_schema(schema, value, direction)
        return [Problem("body", "", "schema", f"no document for {name}")]
