"""Fault injection rules (`POST /_sim/faults`).

Owns `Faults`: a list of rules `{"method": "POST" (optional), "path": regex searched in the
request path (default: every path), "status": 100-599, "count": N (absent: every match),
"after": K (let the first K matching requests through first), "rate": P (0 < P <= 1: fire on
that share of the matching requests, drawn from a generator seeded with "seed", default 1, so a
run repeats), "headers": {...}, "body": any JSON (absent: the simulator's own error body for that
status), "delay": seconds (sleep before answering; with "status" absent the request then
proceeds normally)}`. Rules are checked in the
order they were added; the first one that fires wins. Control paths (/_sim/...) never match.
"""

import random
import re
import threading

RULE_KEYS = {"method", "path", "status", "count", "after", "headers", "body", "delay", "name",
             "rate", "seed"}
MAX_DELAY = 120.0


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []
        self._next = 1

    def _parse(self, r):
        if not isinstance(r, dict):
            raise FaultError("a fault rule must be an object")
        extra = set(r) - RULE_KEYS
        if extra:
            raise FaultError(f"unknown fault rule keys: {sorted(extra)} (known: {sorted(RULE_KEYS)})")
        status = r.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise FaultError("status must be an integer 100-599")
        if status is None and r.get("delay") is None:
            raise FaultError("a rule needs a status, a delay, or both")
        for key in ("count", "after"):
            v = r.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise FaultError(f"{key} must be a non-negative integer")
        delay = r.get("delay")
        if delay is not None and (not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_DELAY):
            raise FaultError(f"delay must be a number of seconds between 0 and {MAX_DELAY}")
        rate = r.get("rate")
        if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool)
                                 or not 0 < rate <= 1):
            raise FaultError("rate must be a number in (0, 1]")
        seed = r.get("seed", 1)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise FaultError("seed must be an integer")
        headers = r.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, (str, int)) for v in headers.values()):
            raise FaultError("headers must be an object of strings")
        try:
            rx = re.compile(r.get("path") or ".*")
        except re.error as exc:
            raise FaultError(f"path: {exc}")
        return {"id": 0, "name": r.get("name"), "method": (r.get("method") or "").upper() or None,
                "path": r.get("path") or ".*", "_rx": rx, "status": status,
                "remaining": r.get("count"), "after": r.get("after") or 0,
                "headers": {k: str(v) for k, v in headers.items()}, "body": r.get("body"),
                "has_body": "body" in r, "delay": delay, "seen": 0, "hits": 0,
                "rate": rate, "_rng": random.Random(seed)}

    def add(self, spec):
        """Add one rule or a list of rules; returns their snapshots."""
        rules = [self._parse(r) for r in (spec if isinstance(spec, list) else [spec])]
        with self._lock:
            for rule in rules:
                rule["id"] = self._next
                self._next += 1
                self._rules.append(rule)
        return [self._public(r) for r in rules]

    def clear(self):
        with self._lock:
            self._rules = []

    def match(self, method, path):
        """The rule (a copy) that fires for this request, or None. Consumes counts."""
        with self._lock:
            for r in self._rules:
                if r["method"] and r["method"] != method.upper():
                    continue
                if not r["_rx"].search(path):
                    continue
                if r["seen"] < r["after"]:
                    r["seen"] += 1
                    continue
                if r["rate"] is not None and r["_rng"].random() >= r["rate"]:
                    r["seen"] += 1
                    continue
                if r["remaining"] is not None:
                    if r["remaining"] <= 0:
                        continue
                    r["remaining"] -= 1
                r["seen"] += 1
                r["hits"] += 1
                return dict(r)
        return None

    @staticmethod
    def _public(r):
        return {k: v for k, v in r.items() if not k.startswith("_") and k != "has_body"}

    def snapshot(self):
        with self._lock:
            return [self._public(r) for r in self._rules]
