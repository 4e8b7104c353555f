"""Compute's list `filter` expressions, parsed strictly and evaluated on resource dicts.

Owns `compile_filter(text) -> predicate`: comparisons `FIELD OP VALUE` with OP one of `=`, `!=`,
`:` (has), `>`, `<` (the documented syntax; `*` in a `=` value is a wildcard) or the legacy
`eq` / `ne` (RE2 regex, whole value); terms joined by `AND`, `OR` or juxtaposition
(`(labels.a = "x") (labels.b = "y")`), parentheses, `NOT`/`-`. FIELD is a dotted path
(`labels.cluster`, `name`, `status`, `scheduling.provisioningModel`). Mixing `=`-style and
`eq`-style comparisons, an unknown operator or an unbalanced expression is an invalid filter
(400), as on Compute.
"""

import fnmatch
import re

from .errors import gerr

_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|!=|=|:|<=|>=|<|>|[^\s()=!:<>"]+)')


class FilterError(Exception):
    pass


def _tokens(text):
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character at {pos}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _value(tok):
    if tok.startswith('"'):
        return re.sub(r"\\(.)", r"\1", tok[1:-1])
    return tok


def _get(resource, field):
    cur = resource
    for part in field.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


class _Parser:
    def __init__(self, tokens):
        self.t, self.i, self.styles = tokens, 0, set()

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of filter")
        self.i += 1
        return tok

    def expr(self):
        left = self.term()
        while self.peek() not in (None, ")"):
            op = "AND"
            if self.peek() in ("AND", "OR"):
                op = self.take()
            right = self.term()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right) if op == "AND" else \
                (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self):
        tok = self.peek()
        if tok == "(":
            self.take()
            inner = self.expr()
            if self.take() != ")":
                raise FilterError("missing )")
            return inner
        if tok == "NOT" or (tok and tok.startswith("-") and len(tok) > 1):
            if tok == "NOT":
                self.take()
            else:
                self.t[self.i] = tok[1:]
            inner = self.term()
            return lambda r: not inner(r)
        field = self.take()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", field):
            raise FilterError(f"bad field {field!r}")
        op = self.take()
        value = _value(self.take())
        if op in ("eq", "ne"):
            self.styles.add("regex")
            rx = re.compile("^(?:" + value + ")$")
            return (lambda r: bool(rx.match(_text(_get(r, field))))) if op == "eq" else \
                (lambda r: not rx.match(_text(_get(r, field))))
        if op not in ("=", "!=", ":", "<", ">", "<=", ">="):
            raise FilterError(f"unknown operator {op!r}")
        self.styles.add("cel")
        if op == ":":
            return lambda r: _get(r, field) is not None and (
                value == "*" or value in _text(_get(r, field)))
        if op in ("=", "!="):
            def eq(r):
                v = _get(r, field)
                return v is not None and fnmatch.fnmatchcase(_text(v), value) \
                    if "*" in value else _text(v) == value and v is not None
            return eq if op == "=" else (lambda r: not eq(r))

        def cmp(r):
            v = _text(_get(r, field))
            try:
                a, b = float(v), float(value)
            except ValueError:
                a, b = v, value
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return cmp


def compile_filter(text):
    """A predicate over resource dicts; raises the API's 400 for an invalid filter."""
    if text is None or not str(text).strip():
        return lambda r: True
    try:
        p = _Parser(_tokens(str(text)))
        pred = p.expr()
        if p.peek() is not None:
            raise FilterError("trailing tokens")
        if len(p.styles) > 1:
            raise FilterError("mixing = and eq")
    except (FilterError, re.error) as exc:
        raise gerr(400, "invalid", f"Invalid value for field 'filter': '{text}'. "
                   f"Invalid list filter expression. ({exc})")
    return pred
