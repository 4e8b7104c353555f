"""Fault injection rules set by tests (`POST /_sim/faults`, `k8s_sim.py faults --set JSON`).

Owns `Faults`: API rules `{"method", "path" (regex, searched in the request path), "status"
(429|500|503|504), "count" (how many requests to fail; absent = every one), "retry_after"}` that
make the server answer with a proper Status (429 TooManyRequests + Retry-After, 500
InternalError, 503 ServiceUnavailable, 504 Timeout), and pod rules `{"name" (regex, full match
on the pod name), "mode": "image_pull"|"crash"|"unschedulable"}` that the kubelet asks about via
`pod_fault(pod)`. Setting rules replaces all of them; `snapshot()` reports remaining counts and hits.
"""

import re
import threading

from .store import ApiError

API_STATUSES = {429: ("TooManyRequests", "Too many requests, please try again later."),
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
            if not isinstance(r, dict) or set(r) - {"method", "path", "status", "count", "retry_after"}:
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
            api.append({"method": (r.get("method") or "").upper() or None, "path": r.get("path", ".*"),
                        "rx": rx, "status": r["status"], "remaining": count,
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
                if r["remaining"] is not None:
                    if r["remaining"] <= 0:
                        continue
                    r["remaining"] -= 1
                r["hits"] += 1
                reason, msg = API_STATUSES[r["status"]]
                headers = {}
                details = {}
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
            return {"api": [{k: v for k, v in r.items() if k != "rx"} for r in self._api],
                    "pods": [{k: v for k, v in r.items() if k != "rx"} for r in self._pods]}
