"""The format-independent half of spec validation: what every validator returns and offers.

Owns `Problem` (one thing wrong with a request or a response, located by where/pointer),
`Operation` and `Match` (an API operation and a request path bound to it), `PathTemplates`
(`/v2/droplets/{droplet_id}` style templates → the most specific operation for a path), and
`SpecValidator`, the interface the simulator pipeline (simkit.app) talks to. OpenAPI 3.0 lives in
oas30.py; a Swagger 2.0 (Azure ARM) or Google discovery-document validator implements the same
interface (see tests/simkit/README.md, "Adding a spec format").
"""

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

NO_BODY = object()   # sentinel: the request or response has no body at all


@dataclass
class Problem:
    """One validation finding.

    where:   "path" | "query" | "header" | "body" | "response" | "response-header"
    pointer: JSON pointer into the body ("/names/0"), or the parameter/header name
    kind:    "type" | "required" | "unknown" | "read-only" | "enum" | "pattern" | "format" |
             "limit" | "content-type" | "unexpected-body" | "missing-body" | "status" |
             "repeated" | "schema" (anything else the JSON Schema validator said)
    """
    where: str
    pointer: str
    kind: str
    message: str

    def to_dict(self):
        return {"where": self.where, "pointer": self.pointer, "kind": self.kind,
                "message": self.message}

    def __str__(self):
        loc = f"{self.where} {self.pointer}".strip()
        return f"{loc}: {self.message}"


@dataclass
class Operation:
    """One API operation: id (operationId or a synthesized one), HTTP method, path template."""
    id: str
    method: str
    template: str
    raw: Any = None                          # the format's own operation object
    params: list = field(default_factory=list)  # format-specific parameter objects


@dataclass
class Match:
    """A request bound to an operation, with the raw (still URL-decoded string) path params."""
    op: Operation
    path_params: dict


class PathTemplates:
    """Matches concrete paths against templates; literal segments beat parameters."""

    _PARAM = re.compile(r"\{([^{}/]+)\}")

    def __init__(self):
        self._entries = []   # (specificity, regex, template, names)
        self._by_template = {}

    def add(self, template, method, op):
        entry = self._by_template.get(template)
        if entry is None:
            names = []
            parts = self._PARAM.split(template)
            # split() alternates literal, name, literal...: rebuild with escaped literals
            rx = ""
            for i, part in enumerate(parts):
                if i % 2 == 0:
                    rx += re.escape(part)
                else:
                    names.append(part)
                    rx += f"(?P<p{len(names) - 1}>[^/]+)"
            segs = [s for s in template.split("/") if s]
            literal = sum(1 for s in segs if not self._PARAM.search(s))
            entry = {"rx": re.compile("^" + rx + "$"), "names": names, "methods": {},
                     "key": (-literal, len(segs)), "template": template}
            self._by_template[template] = entry
            self._entries.append(entry)
            self._entries.sort(key=lambda e: e["key"])
        entry["methods"][method.upper()] = op

    def find(self, method, path):
        """(Match or None, allowed methods of the most specific template matching the path)."""
        allowed = []
        for entry in self._entries:
            m = entry["rx"].match(path)
            if not m:
                continue
            if not allowed:
                allowed = sorted(entry["methods"])
            op = entry["methods"].get(method.upper())
            if op is not None:
                params = {name: urllib.parse.unquote(m.group(f"p{i}"))
                          for i, name in enumerate(entry["names"])}
                return Match(op, params), sorted(entry["methods"])
        return None, allowed


class SpecValidator:
    """What the simulator pipeline needs from a spec, whatever its format.

    Subclasses: oas30.OpenApi30. Planned: a Swagger 2.0 validator (Azure ARM: `definitions`,
    `in: body` parameters, `x-ms-*`), a discovery-document validator (GCE: `resources.*.methods`,
    bare `$ref` schema names, `flatPath`). All must return `Problem`s, never raise on bad input.
    """
    name = "spec"

    def operations(self):
        """Every Operation the spec declares."""
        raise NotImplementedError

    def match(self, method, path):
        """(Match or None, allowed methods for the path) — allowed is non-empty when the path
        exists but not with this method (a 405 for most APIs)."""
        raise NotImplementedError

    def check_request(self, match, query, headers, body):
        """Problems of a request: path params of `match`, `query` ({name: [values]}), `headers`
        (case-insensitive mapping), `body` (parsed JSON, or NO_BODY). Returns (problems, coerced)
        where coerced = {"path": {...}, "query": {...}} holds the typed parameter values."""
        raise NotImplementedError

    def check_response(self, match, status, headers, body):
        """Problems of a response the simulator is about to send (body: parsed JSON or NO_BODY)."""
        raise NotImplementedError

    def check_schema(self, name, value, direction="response"):
        """Problems of `value` against a named schema (components/definitions/schemas)."""
        raise NotImplementedError
