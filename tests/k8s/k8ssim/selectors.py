"""Label and field selectors in the API server's query-string syntax.

Owns parsing `labelSelector` (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`)
and `fieldSelector` (`path=v`, `path==v`, `path!=v`, comma separated, `\\,` escapes) and matching
them against stored objects, with the per-kind list of supported field labels the real API
server enforces (`field label not supported: X` otherwise).
"""

import re

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class SelectorError(ValueError):
    """A selector that does not parse; the server answers 400 BadRequest with its text."""


def _split_top(text):
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip() != ""]


def _check_key(key, text):
    if not key or len(key.split("/")[-1]) > 63 or not _KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key \"{key}\" in \"{text}\"")


def _check_value(value, text):
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value: \"{value}\" in \"{text}\"")


def parse_label_selector(text):
    """Parse a label selector into a list of (key, op, values); op in =, !=, in, notin, exists, !."""
    reqs = []
    if text is None:
        return reqs
    for part in _split_top(text):
        m = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", part)
        if m:
            key, op, vals = m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",")]
            _check_key(key, text)
            for v in vals:
                _check_value(v, text)
            reqs.append((key, op, set(vals)))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key, text)
            reqs.append((key, "!", None))
            continue
        m = re.match(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$", part)
        if m:
            key, op, val = m.group(1), m.group(2), m.group(3)
            _check_key(key, text)
            _check_value(val, text)
            reqs.append((key, "!=" if op == "!=" else "=", val))
            continue
        if re.match(r"^[^=!\s()]+$", part):
            _check_key(part, text)
            reqs.append((part, "exists", None))
            continue
        raise SelectorError(f"unable to parse requirement: found '{part}', expected: in, notin, =, ==, !=, gt, lt")
    return reqs


def label_match(reqs, labels):
    """True when the labels dict satisfies every parsed requirement."""
    labels = labels or {}
    for key, op, val in reqs:
        has = key in labels
        cur = labels.get(key)
        if op == "=" and cur != val:
            return False
        if op == "!=" and has and cur == val:
            return False
        if op == "in" and (not has or cur not in val):
            return False
        if op == "notin" and has and cur in val:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def match_labels(selector_text, labels):
    """Convenience: parse and match in one call."""
    return label_match(parse_label_selector(selector_text), labels)


# Field labels the real API server accepts per kind (in addition to metadata.name/namespace).
FIELD_LABELS = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
            "status.nominatedNodeName"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "Secret": {"type"},
    "Namespace": {"status.phase"},
    "Node": {"spec.unschedulable"},
    "Service": set(),
    "ConfigMap": set(),
    "Endpoints": set(),
    "DaskCluster": set(),
    "Deployment": {"status.replicas"},
}


def _unescape_split(text, sep):
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def parse_field_selector(text, kind):
    """Parse a field selector into (path, op, value) triples; rejects unsupported fields."""
    reqs = []
    if not text:
        return reqs
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(kind, set())
    for part in _unescape_split(text, ","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, val = m.group(1).strip(), m.group(2), m.group(3)
        if path not in allowed:
            raise SelectorError(f'field label not supported: {path}')
        reqs.append((path, "!=" if op == "!=" else "=", val))
    return reqs


def _field_value(obj, path):
    if path == "source":
        return (obj.get("source") or {}).get("component", "")
    if path == "status.podIPs":
        return ",".join(p.get("ip", "") for p in (obj.get("status") or {}).get("podIPs") or [])
    cur = obj
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(seg)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_match(reqs, obj):
    """True when the object satisfies every parsed field requirement."""
    for path, op, val in reqs:
        cur = _field_value(obj, path)
        if op == "=" and cur != val:
            return False
        if op == "!=" and cur == val:
            return False
    return True


def single_name(reqs):
    """The name pinned by `metadata.name=X`, if any (used for single-object watches)."""
    for path, op, val in reqs:
        if path == "metadata.name" and op == "=":
            return val
    return None
