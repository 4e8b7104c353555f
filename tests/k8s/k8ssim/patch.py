"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.

Owns `apply(content_type_kind, obj, body, schema)` used by store.Store.patch. Strategic merge
follows the schema's `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` (lists of
maps merged by key, e.g. containers by name; primitive lists with strategy merge such as
finalizers are unioned), and understands the `$patch: delete|replace`, `$retainKeys`,
`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` directives kubectl sends.
Server-side apply (`application/apply-patch+yaml`) is not implemented: 415 with a Status.
"""

import copy

from .store import ApiError

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                       f"request: JSON Pointer must start with '/': {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, parts, path):
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in "
                           f"our request: doc is missing path: \"{path}\": missing value")
    return cur


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = _pointer(path)
        if kind in ("move", "copy"):
            fparts = _pointer(op.get("from", ""))
            fpar = _parent(doc, fparts, op.get("from"))
            key = fparts[-1]
            val = fpar[int(key)] if isinstance(fpar, list) else fpar.get(key)
            if kind == "move":
                if isinstance(fpar, list):
                    del fpar[int(key)]
                else:
                    fpar.pop(key, None)
            kind, op = "add", {"value": copy.deepcopy(val)}
        if not parts:
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op.get("value"))
                continue
            raise ApiError(422, "Invalid", "the server rejected our request: cannot operate on the root")
        par = _parent(doc, parts, path)
        key = parts[-1]
        if kind == "test":
            cur = par[int(key)] if isinstance(par, list) else par.get(key)
            if cur != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error "
                               f"in our request: testing value {path} failed: test failed")
        elif kind == "add":
            if isinstance(par, list):
                idx = len(par) if key == "-" else int(key)
                if idx > len(par):
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an "
                                   f"error in our request: add operation does not apply: doc is "
                                   f"missing path: \"{path}\": missing value")
                par.insert(idx, copy.deepcopy(op.get("value")))
            else:
                par[key] = copy.deepcopy(op.get("value"))
        elif kind in ("remove", "replace"):
            exists = (key.isdigit() and int(key) < len(par)) if isinstance(par, list) else key in par
            if not exists:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error "
                               f"in our request: {kind} operation does not apply: doc is missing "
                               f"path: \"{path}\": missing value")
            if kind == "remove":
                if isinstance(par, list):
                    del par[int(key)]
                else:
                    del par[key]
            else:
                if isinstance(par, list):
                    par[int(key)] = copy.deepcopy(op.get("value"))
                else:
                    par[key] = copy.deepcopy(op.get("value"))
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in "
                           f"our request: Unexpected kind: {kind}")
    return doc


class _Schemas:
    def __init__(self, spec_schemas):
        self.s = spec_schemas

    def resolve(self, schema):
        if schema is None:
            return {}
        return self.s.resolve(schema) if self.s is not None else schema


def strategic_merge(target, patch, schema, schemas):
    schema = schemas.resolve(schema)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target)
    retain = patch.get("$retainKeys")
    props = schema.get("properties") or {}
    addl = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        sub = props.get(k, addl)
        if v is None:
            out.pop(k, None)
            continue
        subr = schemas.resolve(sub) if sub else {}
        if isinstance(v, list) and isinstance(out.get(k), list) and sub is not None:
            strategy = (sub.get("x-kubernetes-patch-strategy") or subr.get("x-kubernetes-patch-strategy") or "")
            key = sub.get("x-kubernetes-patch-merge-key") or subr.get("x-kubernetes-patch-merge-key")
            if "merge" in strategy.split(","):
                out[k] = _merge_list(out[k], v, key, subr.get("items"), schemas)
                continue
        if isinstance(v, dict):
            out[k] = strategic_merge(out.get(k), v, sub, schemas)
            if out[k] is None:
                out.pop(k)
        elif isinstance(v, list):
            out[k] = [x for x in copy.deepcopy(v) if not (isinstance(x, dict) and x.get("$patch"))]
        else:
            out[k] = copy.deepcopy(v)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(cur, patch, key, item_schema, schemas):
    cur = copy.deepcopy(cur)
    if key is None:
        for x in patch:
            if isinstance(x, dict) and x.get("$patch") == "replace":
                return [y for y in patch if not isinstance(y, dict)]
            if x not in cur:
                cur.append(copy.deepcopy(x))
        return cur
    for x in patch:
        if not isinstance(x, dict):
            continue
        if x.get("$patch") == "replace":
            return [copy.deepcopy({k: v for k, v in y.items() if k != "$patch"})
                    for y in patch if isinstance(y, dict) and y is not x]
        idx = next((i for i, c in enumerate(cur) if isinstance(c, dict) and c.get(key) == x.get(key)), None)
        if x.get("$patch") == "delete":
            if idx is not None:
                del cur[idx]
            continue
        if idx is None:
            cur.append(strategic_merge({}, x, item_schema, schemas))
        else:
            cur[idx] = strategic_merge(cur[idx], x, item_schema, schemas)
    return cur


def apply(patch_type, obj, body, schema, spec_schemas=None):
    """The patched object. patch_type is the request's Content-Type (without parameters)."""
    if patch_type == MERGE:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "json: cannot unmarshal into Go value of type map[string]interface {}")
        return merge_patch(obj, body)
    if patch_type == JSON:
        return json_patch(obj, body)
    if patch_type == STRATEGIC:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "json: cannot unmarshal into Go value of type map[string]interface {}")
        return strategic_merge(obj, body, schema, _Schemas(spec_schemas))
    if patch_type == APPLY:
        raise ApiError(415, "UnsupportedMediaType", "the simulator does not implement server-side "
                       "apply (application/apply-patch+yaml); use a merge or strategic merge patch")
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                   f"accepted media types include: application/json-patch+json, "
                   f"application/merge-patch+json, application/apply-patch+yaml")
