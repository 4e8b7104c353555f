"""The crash-point gate (`/_sim/gate`): hold every mutating request after the first K.

Owns `Gate`, shared by the simkit simulators (app.py), the Kubernetes simulator
(tests/k8s/k8ssim/server.py) and the moto wrapper (tests/aws/moto_server.py). It has no import
of its own package, so those can load it by path.

The conformance suite (tests/conformance.rs) uses it to stop clusterctl between two mutating
requests without any test-only code in the binary:

    POST   /_sim/gate {"after": K, "ignore": "regex"}   arm: count mutating requests from now
    GET    /_sim/gate                                   {"armed", "after", "admitted",
                                                         "in_flight", "held", "dropped", "log"}
    DELETE /_sim/gate                                   disarm; every held request is dropped

Once armed, mutating requests (POST, PUT, PATCH, DELETE, or what the caller's `mutating`
decides, e.g. moto's Action names) are counted in arrival order. The first K pass; from the
(K+1)-th on, each one is *held* before anything of it is processed. The suite waits until one
is held and none of the K is still in flight (all K were answered), SIGKILLs the client, then
disarms: held requests are then dropped (answered 503, never processed), because the client
that sent them is gone. `log` lists the operations admitted, in order (what a normal run
does, when armed with a K larger than any run). Requests whose path matches `ignore` (e.g. an
OAuth token endpoint) are not counted. Nothing is held while disarmed.
"""

import asyncio
import re
import threading
import time

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOLD_LIMIT = 600.0   # seconds a request is held at most (a harness that died never disarms)


class GateError(ValueError):
    pass


class Gate:
    def __init__(self):
        self._cv = threading.Condition()
        self._reset(False, 0, None)

    def _reset(self, armed, after, ignore):
        self._armed, self._after, self._ignore = armed, after, ignore
        self._admitted = self._in_flight = self._held = self._dropped = 0
        self._log = []
        self._gen = getattr(self, "_gen", 0) + 1

    # ----- control -----
    def arm(self, body):
        if not isinstance(body, dict) or set(body) - {"after", "ignore"}:
            raise GateError('the gate takes {"after": K, "ignore": "regex"}')
        after = body.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise GateError("after must be a non-negative integer")
        try:
            ignore = re.compile(body["ignore"]) if body.get("ignore") else None
        except re.error as exc:
            raise GateError(f"ignore: {exc}")
        with self._cv:
            self._reset(True, after, ignore)
            self._cv.notify_all()
        return self.state()

    def disarm(self):
        with self._cv:
            state = self._state()
            self._armed = False
            self._gen += 1
            self._cv.notify_all()
        return state

    def state(self):
        with self._cv:
            return self._state()

    def _state(self):
        return {"armed": self._armed, "after": self._after, "admitted": self._admitted,
                "in_flight": self._in_flight, "held": self._held, "dropped": self._dropped,
                "log": list(self._log)}

    # ----- the request side -----
    def _decide(self, method, path, label, mutating):
        """Under the lock: None (not counted), True (admitted: call leave()), or the generation
        to wait on (held)."""
        if not self._armed:
            return None
        if mutating is None:
            mutating = method.upper() in MUTATING
        if not mutating or (self._ignore is not None and self._ignore.search(path)):
            return None
        if self._admitted < self._after:
            self._admitted += 1
            self._in_flight += 1
            self._log.append(label or f"{method} {path}")
            return True
        self._held += 1
        return self._gen

    def enter(self, method, path, label=None, mutating=None):
        """Blocking: None or True as `_decide`; False when the request was held and then
        dropped (the caller answers 503 and processes nothing)."""
        with self._cv:
            d = self._decide(method, path, label, mutating)
            if d is None or d is True:
                return d
            deadline = time.monotonic() + HOLD_LIMIT
            while self._gen == d and time.monotonic() < deadline:
                self._cv.wait(timeout=1.0)
            self._held -= 1
            self._dropped += 1
            return False

    async def aenter(self, method, path, label=None, mutating=None):
        """`enter` for an asyncio server (polls instead of blocking the event loop)."""
        with self._cv:
            d = self._decide(method, path, label, mutating)
        if d is None or d is True:
            return d
        deadline = time.monotonic() + HOLD_LIMIT
        while time.monotonic() < deadline:
            with self._cv:
                if self._gen != d:
                    break
            await asyncio.sleep(0.02)
        with self._cv:
            self._held -= 1
            self._dropped += 1
        return False

    def leave(self):
        """An admitted request has been answered."""
        with self._cv:
            self._in_flight = max(0, self._in_flight - 1)
            self._cv.notify_all()
