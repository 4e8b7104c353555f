"""The simulator's two logs, and redaction.

Owns `RequestLog` (WORKDIR/requests.jsonl: one object per request — time, method, path, query,
status, request id, operation, phase, ms, and the redacted request body — kept in memory too for
`GET /_sim/requests`, with the current phase set by `POST /_sim/mark`), `ErrorLog`
(WORKDIR/sim-errors.jsonl: every request refused by the spec, every response of the simulator's
own that the spec rejects, every exception; tests assert it is absent or empty) and `redact()`,
which blanks values whose key looks like a secret (token, password, user_data, private key,
secret, authorization, credential) and any PEM private key wherever it appears.
"""

import json
import os
import re
import threading
import time

SECRET_KEY = re.compile(r"(?i)(token|passw|secret|user_?data|custom_?data|private_?key|"
                        r"authorization|credential|api_?key)")
PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
MAX_LOGGED_STRING = 2048


def redact(value, key=None):
    """A copy of value that is safe to log."""
    if key is not None and SECRET_KEY.search(str(key)) and value not in (None, "", [], {}):
        size = len(json.dumps(value)) if not isinstance(value, str) else len(value)
        return f"<redacted: {size} chars>"
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        if PEM_PRIVATE.search(value):
            return f"<redacted PEM private key: {len(value)} chars>"
        if len(value) > MAX_LOGGED_STRING:
            return value[:MAX_LOGGED_STRING] + f"...<{len(value) - MAX_LOGGED_STRING} more>"
    return value


class _Jsonl:
    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def append(self, obj):
        line = json.dumps(obj, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)


class RequestLog:
    def __init__(self, workdir, keep=100000):
        self._file = _Jsonl(os.path.join(workdir, "requests.jsonl"))
        self._lock = threading.Lock()
        self._entries = []
        self._keep = keep
        self.phase = None

    def mark(self, phase):
        with self._lock:
            self.phase = phase or None
            return self.phase

    def record(self, entry):
        entry = dict(entry)
        with self._lock:
            entry.setdefault("phase", self.phase)
            self._entries.append(entry)
            if len(self._entries) > self._keep:
                del self._entries[: len(self._entries) - self._keep]
        self._file.append(entry)
        return entry

    def entries(self, phase=None, since=0):
        with self._lock:
            items = list(self._entries)
        if phase is not None:
            items = [e for e in items if e.get("phase") == phase]
        return [e for e in items if e.get("time", 0) >= since]

    def summary(self):
        """{phase: {"requests": n, "by_operation": {op: n}, "by_status": {status: n}}}."""
        out = {}
        for e in self.entries():
            s = out.setdefault(str(e.get("phase")), {"requests": 0, "by_operation": {},
                                                     "by_status": {}})
            s["requests"] += 1
            op = e.get("operation") or e.get("path")
            s["by_operation"][op] = s["by_operation"].get(op, 0) + 1
            st = str(e.get("status"))
            s["by_status"][st] = s["by_status"].get(st, 0) + 1
        return out


class ErrorLog:
    def __init__(self, workdir):
        self.path = os.path.join(workdir, "sim-errors.jsonl")
        self._file = _Jsonl(self.path)
        self._lock = threading.Lock()
        self._entries = []

    def record(self, kind, detail):
        entry = {"time": round(time.time(), 3), "kind": kind, **redact(detail)}
        with self._lock:
            self._entries.append(entry)
        self._file.append(entry)
        return entry

    def entries(self):
        with self._lock:
            return list(self._entries)
