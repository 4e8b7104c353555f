"""Fault injection rules set by tests (`POST /_sim/faults`, `k8s_sim.py faults --set JSON`).

Owns `Faults`: API rules `{"method", "path" (regex, searched in the request path), "status"
(403|429|500|503|504), "count" (how many requests to fail; absent = every one), "rate" (0 < P <=
1: fail that share of the matching requests, drawn from a generator seeded with "seed",
default 1), "retry_after", "quota" (with 403: the ResourceQuota admission's refusal naming that
quota, instead of RBAC's)}`
that make the server answer with a proper Status (403 Forbidden with RBAC's message, 429
TooManyRequests + Retry-After, 500 InternalError, 503 ServiceUnavailable, 504 Timeout), and pod rules `{"name" (regex, full match
on the pod name), "mode": "image_pull"|"crash"|"unschedulable"}` that the kubelet asks about via
`pod_fault(pod)`. Setting rules replaces all of them; `snapshot()` reports remaining counts and hits.
"""

import random
import re
import threading

from .store import ApiError

# The user RBAC names in an injected 403 (the simulator's token authenticates as this account).
FORBIDDEN_USER = "system:serviceaccount:default:clusterctl-test"
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
RESOURCE_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)"
                           r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?")


def forbidden_message(method, path):
    """RBAC's words for a refused request: `pods is forbidden: User "u" cannot create resource
    "pods" in API group "" in the namespace "default"`."""
    m = RESOURCE_PATH.match(path)
    if not m:
        return f'forbidden: User "{FORBIDDEN_USER}" cannot {VERBS.get(method, method.lower())} path "{path}"'
    verb = VERBS.get(method.upper(), method.lower())
    if verb == "get" and not m.group("name"):
        verb = "list"
    res, group, ns = m.group("resource"), m.group("group") or "", m.group("ns")
    where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
    return (f'{res} is forbidden: User "{FORBIDDEN_USER}" cannot {verb} resource "{res}" in API'
            f' group "{group}"{where}')


def quota_message(path, quota):
    """The ResourceQuota admission plugin's words for a create over a hard limit: `pods is
    forbidden: exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=4, limited:
    requests.cpu=4`."""
    m = RESOURCE_PATH.match(path)
    res = m.group("resource") if m else "objects"
    return (f"{res} is forbidden: exceeded quota: {quota}, requested: requests.cpu=1, used: "
            f"requests.cpu=4, limited: requests.cpu=4")


API_STATUSES = {403: ("Forbidden", None),
                429: ("TooManyRequests", "Too many requests, please try again later."),
                500: ("InternalError", "Internal error occurred: injected fault"),
                503: ("ServiceUnavailable", "The service is currently unavailable."),
                504: ("Timeout", "The server was unable to return a response in the time allotted, "
                               "but may still be processing the request")}
POD_MODES = ("image_pull", "crash", "unschedulable")


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._api = []
        self._pods = []

    def set(self, spec):
        """Replace all rules; raises ApiError(400) on a malformed spec."""
        if not isinstance(spec, dict) or set(spec) - {"api", "pods"}:
            raise ApiError(400, "BadRequest", 'faults must be an object with keys "api" and/or "pods"')
        api, pods = [], []
        for i, r in enumerate(spec.get("api") or []):
            if not isinstance(r, dict) or set(r) - {"method", "path", "status", "count", "retry_after",
                                                    "rate", "seed", "quota"}:
                raise ApiError(400, "BadRequest", f"api[{i}]: unknown keys")
            if r.get("status") not in API_STATUSES:
                raise ApiError(400, "BadRequest", f"api[{i}].status must be one of {sorted(API_STATUSES)}")
            try:
                rx = re.compile(r.get("path", ".*"))
            except re.error as exc:
                raise ApiError(400, "BadRequest", f"api[{i}].path: {exc}")
            count = r.get("count")
            if count is not None and (not isinstance(count, int) or count < 0):
                raise ApiError(400, "BadRequest", f"api[{i}].count must be a non-negative integer")
            quota = r.get("quota")
            if quota is not None and (r["status"] != 403 or not isinstance(quota, str) or not quota):
                raise ApiError(400, "BadRequest", f"api[{i}].quota needs status 403 and a name")
            rate = r.get("rate")
            if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool)
                                     or not 0 < rate <= 1):
                raise ApiError(400, "BadRequest", f"api[{i}].rate must be a number in (0, 1]")
            api.append({"method": (r.get("method") or "").upper() or None, "path": r.get("path", ".*"),
                        "rx": rx, "status": r["status"], "remaining": count, "rate": rate,
                        "rng": random.Random(r.get("seed", 1)), "quota": quota,
                        "retry_after": r.get("retry_after", 1 if r["status"] == 429 else None),
                        "hits": 0})
        for i, r in enumerate(spec.get("pods") or []):
            if not isinstance(r, dict) or set(r) - {"name", "mode"} or r.get("mode") not in POD_MODES:
                raise ApiError(400, "BadRequest", f"pods[{i}] must be {{name, mode}} with mode in {POD_MODES}")
            try:
                rx = re.compile(r.get("name", ".*"))
            except re.error as exc:
                raise ApiError(400, "BadRequest", f"pods[{i}].name: {exc}")
            pods.append({"name": r.get("name", ".*"), "rx": rx, "mode": r["mode"], "hits": 0})
        with self._lock:
            self._api, self._pods = api, pods

    def match_api(self, method, path):
        """The ApiError to answer with for this request, or None (consumes one count)."""
        with self._lock:
            for r in self._api:
                if r["method"] and r["method"] != method.upper():
                    continue
                if not r["rx"].search(path):
                    continue
                if r["rate"] is not None and r["rng"].random() >= r["rate"]:
                    continue
                if r["remaining"] is not None:
                    if r["remaining"] <= 0:
                        continue
                    r["remaining"] -= 1
                r["hits"] += 1
                reason, msg = API_STATUSES[r["status"]]
                headers = {}
                details = {}
                if r["status"] == 403:
                    msg = (quota_message(path, r["quota"]) if r["quota"]
                           else forbidden_message(method, path))
                    m = RESOURCE_PATH.match(path)
                    if m:
                        details = {"kind": m.group("resource")}
                        if m.group("name"):
                            details["name"] = m.group("name")
                if r["retry_after"] is not None:
                    headers["Retry-After"] = str(r["retry_after"])
                    details["retryAfterSeconds"] = int(r["retry_after"])
                if r["status"] == 500:
                    details["causes"] = [{"message": "injected fault"}]
                return ApiError(r["status"], reason, msg, details, headers)
        return None

    def pod_fault(self, pod):
        """None or the fault mode of the first pod rule whose regex fully matches the pod name."""
        name = (pod.get("metadata") or {}).get("name", "")
        with self._lock:
            for r in self._pods:
                if r["rx"].fullmatch(name):
                    r["hits"] += 1
                    return r["mode"]
        return None

    def snapshot(self):
        with self._lock:
            return {"api": [{k: v for k, v in r.items() if k not in ("rx", "rng")} for r in self._api],
                    "pods": [{k: v for k, v in r.items() if k != "rx"} for r in self._pods]}
