"""The strict unknown-field walker, shared by every JSON-Schema-like spec dialect.

Owns `StrictWalker`: given a schema and a value, it reports fields the schema does not declare
(`unknown`), and in request bodies fields declared `readOnly` (`read-only`); in responses,
`writeOnly` ones. JSON Schema would accept extra fields unless `additionalProperties: false`;
cloud APIs mostly ignore them, but a field the spec does not know is a client bug, so the
simulators refuse it. Composition is followed: `$ref`, `allOf` (properties merged), and
`oneOf`/`anyOf` (the branches the value is valid against are merged; if none is, all are, so the
report stays useful). An object schema that declares no `properties` and no
`additionalProperties` schema is free-form and not walked. The dialect is abstracted by two
callables: `deref(schema) -> schema` (follows one `$ref`) and `is_valid(schema, value) -> bool`.
"""

from .base import Problem


def escape(token):
    return str(token).replace("~", "~0").replace("/", "~1")


class _Flat:
    __slots__ = ("props", "addl", "open", "closed", "items")

    def __init__(self):
        self.props = {}      # name -> [schemas]
        self.addl = []       # additionalProperties schemas
        self.open = False    # additionalProperties: true somewhere
        self.closed = False  # some branch declares properties (or additionalProperties: false)
        self.items = []      # items schemas

    def merge(self, other):
        for k, v in other.props.items():
            self.props.setdefault(k, []).extend(v)
        self.addl.extend(other.addl)
        self.open = self.open or other.open
        self.closed = self.closed or other.closed
        self.items.extend(other.items)


class StrictWalker:
    def __init__(self, deref, is_valid, max_depth=64):
        self.deref = deref
        self.is_valid = is_valid
        self.max_depth = max_depth

    def _resolve(self, schema):
        for _ in range(self.max_depth):
            if isinstance(schema, dict) and "$ref" in schema:
                schema = self.deref(schema)
            else:
                break
        return schema if isinstance(schema, dict) else {}

    def _flatten(self, schema, value, depth=0):
        flat = _Flat()
        if depth > self.max_depth:
            flat.open = True
            return flat
        schema = self._resolve(schema)
        props = schema.get("properties")
        if isinstance(props, dict):
            flat.closed = True
            for k, v in props.items():
                flat.props.setdefault(k, []).append(v)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            flat.addl.append(addl)
        elif addl is True:
            flat.open = True
        elif addl is False:
            flat.closed = True
        if isinstance(schema.get("items"), dict):
            flat.items.append(schema["items"])
        for sub in schema.get("allOf") or []:
            flat.merge(self._flatten(sub, value, depth + 1))
        for key in ("oneOf", "anyOf"):
            branches = schema.get(key)
            if not branches:
                continue
            chosen = [b for b in branches if self.is_valid(b, value)] or list(branches)
            for b in chosen:
                flat.merge(self._flatten(b, value, depth + 1))
        return flat

    def _flag(self, schemas, attr):
        """Whether any of the schemas (following $ref and allOf) says attr: true."""
        stack, seen = list(schemas), 0
        while stack and seen < 200:
            seen += 1
            s = self._resolve(stack.pop())
            if s.get(attr) is True:
                return True
            stack.extend(s.get("allOf") or [])
        return False

    def problems(self, schema, value, where, direction, pointer=""):
        """Unknown (and read-only/write-only) fields of value: a list of Problem."""
        out = []
        self._walk(schema, value, pointer, where, direction, out, 0)
        return out

    def _walk(self, schema, value, ptr, where, direction, out, depth):
        if depth > self.max_depth or not isinstance(value, (dict, list)):
            return
        flat = self._flatten(schema, value)
        if isinstance(value, dict):
            if flat.open or not (flat.closed or flat.addl):
                return
            for k, v in value.items():
                p = f"{ptr}/{escape(k)}"
                if k in flat.props:
                    subs = flat.props[k]
                    if direction == "request" and self._flag(subs, "readOnly"):
                        out.append(Problem(where, p, "read-only",
                                           f"field {p} is read-only (readOnly in the spec) and "
                                           "must not be sent"))
                        continue
                    if direction == "response" and self._flag(subs, "writeOnly"):
                        out.append(Problem(where, p, "write-only",
                                           f"field {p} is writeOnly and must not be returned"))
                    self._walk({"allOf": subs} if len(subs) > 1 else subs[0], v, p, where,
                               direction, out, depth + 1)
                elif flat.addl:
                    self._walk({"allOf": flat.addl} if len(flat.addl) > 1 else flat.addl[0], v, p,
                               where, direction, out, depth + 1)
                else:
                    out.append(Problem(where, p, "unknown",
                                       f"unknown field {p} (not declared in the spec)"))
        else:
            if not flat.items:
                return
            item = {"allOf": flat.items} if len(flat.items) > 1 else flat.items[0]
            for i, v in enumerate(value):
                self._walk(item, v, f"{ptr}/{i}", where, direction, out, depth + 1)
