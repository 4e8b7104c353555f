"""Validation of every object going in and out of the simulated API server.

Owns `Admission` (used by store.Store): schema validation against the official OpenAPI 3.0 specs
(`openapi_schema_validator.OAS30Validator` with a `referencing` registry over
`#/components/schemas/...`), a strict walker that rejects fields the schema does not know
(following $ref/allOf, maps via additionalProperties, Quantity and int-or-string formats), and the
dispatch to the API server's semantic rules (semantics.py) and defaults (defaults.py). Also owns
`FieldErrors`, which renders field errors the way the real API server does
(`Pod "x" is invalid: spec.containers[0].name: Invalid value: ...`) into a 422 Invalid Status.
Every rejection and every invalid object the simulator itself produced is reported through
`errors(kind, detail)` (WORKDIR/sim-errors.jsonl).
"""

import json
import os
import re
import threading

import referencing
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from .store import ApiError, RESOURCES, LIST_SCHEMA

QUANTITY_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
           "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value):
    """A Quantity (string or number) as a float; ValueError when it does not parse."""
    if isinstance(value, bool):
        raise ValueError("bool")
    if isinstance(value, (int, float)):
        return float(value)
    m = QUANTITY_RE.match(value or "")
    if not m:
        raise ValueError(value)
    num, suf = float(m.group(1)), m.group(3) or ""
    if suf[:1] in ("e", "E"):
        return num * 10 ** int(suf[1:])
    return num * _SUFFIX[suf]


def gofmt(value):
    """Render a value like Go's %#v in field error messages (strings quoted)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class FieldErrors:
    """Accumulates field errors; `raise_if(kind, name)` raises the 422 Invalid ApiError."""

    def __init__(self):
        self.items = []   # (reason, field, message)

    def add(self, reason, field, message):
        self.items.append((reason, field, message))

    def required(self, field, detail=""):
        self.add("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))

    def invalid(self, field, value, detail):
        self.add("FieldValueInvalid", field, f"Invalid value: {gofmt(value)}: {detail}")

    def not_supported(self, field, value, supported):
        sup = ", ".join(json.dumps(s) for s in supported)
        self.add("FieldValueNotSupported", field,
                 f"Unsupported value: {gofmt(value)}: supported values: {sup}")

    def duplicate(self, field, value):
        self.add("FieldValueDuplicate", field, f"Duplicate value: {gofmt(value)}")

    def forbidden(self, field, detail):
        self.add("FieldValueForbidden", field, f"Forbidden: {detail}")

    def too_long(self, field, limit):
        self.add("FieldValueTooLong", field, f"Too long: must have at most {limit} bytes")

    def too_many(self, field, count, limit):
        self.add("FieldValueTooMany", field, f"Too many: {count}: must have at most {limit} items")

    def __bool__(self):
        return bool(self.items)

    def to_error(self, kind, name, group=""):
        parts = [f"{f}: {m}" if f else m for _, f, m in self.items]
        body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        qual = kind + ("." + group if group else "")
        details = {"name": name or "", "kind": kind,
                   "causes": [{"reason": r, "message": m, "field": f} for r, f, m in self.items]}
        if group:
            details["group"] = group
        return ApiError(422, "Invalid", f'{qual} "{name or ""}" is invalid: {body}', details)

    def raise_if(self, kind, name, group=""):
        if self.items:
            raise self.to_error(kind, name, group)


def strip_nulls(value):
    """JSON null means 'unset' to the API server's decoder; drop them before validation."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


class SpecSchemas:
    """The component schemas of one OpenAPI file, with cached OAS30 validators."""

    def __init__(self, path, uri):
        with open(path, "rb") as fh:
            self.raw = fh.read()
        self.doc = json.loads(self.raw)
        self.schemas = self.doc["components"]["schemas"]
        self.uri = uri
        resource = referencing.Resource.from_contents(
            self.doc, default_specification=referencing.jsonschema.DRAFT4)
        self.registry = referencing.Registry().with_resource(uri, resource)
        self._validators = {}

    def validator(self, name):
        v = self._validators.get(name)
        if v is None:
            v = OAS30Validator({"$ref": f"{self.uri}#/components/schemas/{name}"},
                               registry=self.registry, format_checker=oas30_format_checker)
            self._validators[name] = v
        return v

    def resolve(self, schema):
        """Follow $ref and single/multiple allOf into one merged schema dict."""
        seen = 0
        while True:
            seen += 1
            if seen > 50:
                return schema
            if "$ref" in schema:
                schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
                continue
            if "allOf" in schema:
                merged = {k: v for k, v in schema.items() if k != "allOf"}
                for sub in schema["allOf"]:
                    sub = self.resolve(sub)
                    for k, v in sub.items():
                        if k == "properties":
                            merged.setdefault("properties", {}).update(v)
                        else:
                            merged.setdefault(k, v)
                schema = merged
                continue
            return schema

    def unknown_fields(self, name, value):
        """Paths of fields the schema does not know, plus Quantity format errors."""
        out = []
        self._walk({"$ref": f"#/components/schemas/{name}"}, value, "", out)
        return out

    def _walk(self, schema, value, path, out):
        schema = self.resolve(schema)
        fmt = schema.get("format")
        if fmt == "int-or-string" or "IntOrString" in schema.get("description", "")[:40]:
            if not isinstance(value, (int, str)) or isinstance(value, bool):
                out.append(("type", path, "must be an integer or a string"))
            return
        if schema.get("description", "").startswith("Quantity is a fixed-point"):
            try:
                parse_quantity(value)
            except ValueError:
                out.append(("quantity", path, f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {gofmt(value)})"))
            return
        if isinstance(value, dict):
            props = schema.get("properties")
            addl = schema.get("additionalProperties")
            if props is not None:
                for k, v in value.items():
                    sub = f"{path}.{k}" if path else k
                    if k in props:
                        self._walk(props[k], v, sub, out)
                    elif isinstance(addl, dict):
                        self._walk(addl, v, sub, out)
                    else:
                        out.append(("unknown", sub, f'unknown field "{sub}"'))
            elif isinstance(addl, dict):
                for k, v in value.items():
                    self._walk(addl, v, f"{path}[{k}]" if path else k, out)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, v in enumerate(value):
                self._walk(schema["items"], v, f"{path}[{i}]", out)


def default_specs_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    return os.path.join(os.path.dirname(repo), "shared", "specs", "kubernetes", "v1.35")


class Admission:
    """Defaults, semantic rules and schema checks for the store; see the module docstring."""

    def __init__(self, specs_dir=None, errors=None, with_dask=False):
        specs_dir = specs_dir or default_specs_dir()
        self.core = SpecSchemas(os.path.join(specs_dir, "api__v1_openapi.json"), "urn:k8s:core-v1")
        self.core_raw = self.core.raw     # served at /openapi/v3/api/v1 for kubectl
        import hashlib
        self.core_hash = hashlib.sha512(self.core_raw).hexdigest()[:64].upper()
        self.errors = errors or (lambda kind, detail: None)
        self.with_dask = with_dask
        self.store = None           # set by Store
        self._ok_cache = {}         # (kind, uid, rv) -> True for already validated outputs
        self._req = threading.local()   # per request thread: fieldValidation=Strict

    @property
    def strict_fields(self):
        return getattr(self._req, "strict", False)

    @strict_fields.setter
    def strict_fields(self, value):
        self._req.strict = bool(value)

    # ----- schema -----
    def schema_name(self, kind):
        res = RESOURCES[kind]
        return res.schema

    def schema_for(self, kind):
        """The resolved schema dict of a kind (used by strategic merge patch for merge keys)."""
        name = self.schema_name(kind)
        if name is None:
            from . import operator
            return operator.pseudo_schema(self.core)
        return self.core.resolve({"$ref": f"#/components/schemas/{name}"})

    def schema_problems(self, schema_name, obj):
        """(type errors, unknown fields) of obj against a core/v1 component schema."""
        errs = []
        for e in self.core.validator(schema_name).iter_errors(obj):
            path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e.absolute_path)
            errs.append((path.replace(".[", "["), e.message))
        unknown = self.core.unknown_fields(schema_name, obj)
        return errs, unknown

    def check(self, kind, obj, where):
        """Full structural check of a stored/returned object. where: request|internal|output."""
        if kind == "DaskCluster":
            from . import operator
            problems = operator.structure_problems(self, obj)
            type_errs, unknown = [(p, m) for p, m in problems if not m.startswith("unknown field")], \
                [("unknown", p, m) for p, m in problems if m.startswith("unknown field")]
        else:
            type_errs, unknown = self.schema_problems(self.schema_name(kind), obj)
        if not type_errs and not unknown:
            return
        name = (obj.get("metadata") or {}).get("name", "")
        detail = {"where": where, "kind": kind, "name": name,
                  "schema_errors": [f"{p}: {m}" for p, m in type_errs][:20],
                  "unknown_fields": [m for _, _, m in unknown][:20]}
        self.errors("validation" if where == "request" else "simulator-invalid-object", detail)
        if where == "output":
            raise ApiError(500, "InternalError", f"simulator produced an invalid {kind}: {detail}")
        if type_errs:
            p, m = type_errs[0]
            raise ApiError(400, "BadRequest", f'{kind} in version "{RESOURCES[kind].version}" cannot '
                           f"be handled as a {kind}: json: cannot unmarshal {p}: {m}")
        quantity = [u for u in unknown if u[0] == "quantity"]
        if quantity:
            raise ApiError(400, "BadRequest", f'{kind} in version "{RESOURCES[kind].version}" cannot '
                           f"be handled as a {kind}: {quantity[0][2]}")
        if self.strict_fields:
            raise ApiError(400, "BadRequest", "strict decoding error: " +
                           ", ".join(m for _, _, m in unknown))
        fe = FieldErrors()
        for _, path, _m in unknown:
            fe.add("FieldValueInvalid", path, "Invalid value: unknown field (not in the "
                   "OpenAPI schema; the simulator rejects it)")
        raise fe.to_error(kind, name, RESOURCES[kind].group)

    def check_output(self, kind, obj):
        """Validate an object about to be returned; invalid → sim-errors + ApiError(500)."""
        meta = obj.get("metadata") or {}
        key = (kind, meta.get("uid"), meta.get("resourceVersion"))
        if key[1] and key[2] and key in self._ok_cache:
            return
        self.check(kind, obj, "output")
        if key[1] and key[2]:
            if len(self._ok_cache) > 50000:
                self._ok_cache.clear()
            self._ok_cache[key] = True

    def check_schema_output(self, schema_name, obj):
        """Validate a server-built object (Status, list shell, APIResourceList...) by schema name."""
        type_errs, unknown = self.schema_problems(schema_name, obj)
        if type_errs or unknown:
            detail = {"where": "output", "schema": schema_name,
                      "schema_errors": [f"{p}: {m}" for p, m in type_errs][:20],
                      "unknown_fields": [m for _, _, m in unknown][:20]}
            self.errors("simulator-invalid-object", detail)
            raise ApiError(500, "InternalError", f"simulator produced an invalid {schema_name}: {detail}")

    def list_schema(self, kind):
        name = LIST_SCHEMA.get(kind)
        return f"io.k8s.api.core.v1.{name}" if name else None

    # ----- admission -----
    def _reject(self, exc, kind, obj, op):
        self.errors("rejected", {"op": op, "kind": kind,
                                 "name": (obj.get("metadata") or {}).get("name"),
                                 "status": exc.status, "reason": exc.reason, "message": exc.message})

    def admit_create(self, kind, obj, internal=False):
        from . import defaults, semantics
        try:
            stripped = strip_nulls(obj)
            obj.clear()
            obj.update(stripped)
            if kind == "DaskCluster" and not self.with_dask:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not internal:
                self._namespace_ok(kind, obj)
            self.check(kind, obj, "request" if not internal else "internal")
            defaults.on_create(kind, obj, self.store)
            fe = FieldErrors()
            semantics.validate_meta(kind, obj, fe, create=True)
            semantics.validate_object(kind, obj, fe, self)
            fe.raise_if(kind, obj["metadata"].get("name"), RESOURCES[kind].group)
        except ApiError as exc:
            self._reject(exc, kind, obj, "create" if not internal else "internal-create")
            raise

    def admit_update(self, kind, old, new, subresource, internal=False):
        from . import defaults, semantics
        try:
            stripped = strip_nulls(new)
            new.clear()
            new.update(stripped)
            self.check(kind, new, "request" if not internal else "internal")
            defaults.on_update(kind, old, new)
            fe = FieldErrors()
            semantics.validate_meta(kind, new, fe, create=False)
            semantics.validate_object(kind, new, fe, self)
            semantics.validate_update(kind, old, new, subresource, fe, internal=internal)
            fe.raise_if(kind, new["metadata"].get("name"), RESOURCES[kind].group)
        except ApiError as exc:
            self._reject(exc, kind, new, "update" if not internal else "internal-update")
            raise

    def _namespace_ok(self, kind, obj):
        if not RESOURCES[kind].namespaced:
            return
        ns = obj["metadata"].get("namespace")
        nsobj = self.store.get("Namespace", None, ns)
        if nsobj is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})
        if (nsobj.get("status") or {}).get("phase") == "Terminating" and kind != "Event":
            raise ApiError(403, "Forbidden", f"{RESOURCES[kind].plural} \"{obj['metadata'].get('name', '')}\" "
                           f"is forbidden: unable to create new content in namespace {ns} because "
                           "it is being terminated",
                           {"name": obj["metadata"].get("name", ""), "kind": RESOURCES[kind].plural,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": f"namespace {ns} is being terminated",
                                        "field": "metadata.namespace"}]})
