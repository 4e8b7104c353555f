"""ARM's subscription throttling: token buckets per principal and kind (read, write, delete).

Owns `Limiter`: ARM's regional buckets are reads 250 (+25/s) and writes/deletes 200 (+10/s)
(shared/notes/azure.md §2); `--reads-bucket`/`--writes-bucket` shrink them for tests. Every
answer to an authenticated request carries `x-ms-ratelimit-remaining-subscription-reads` (GET,
HEAD), `-writes` (PUT, PATCH, POST) or `-deletes` (DELETE); an empty bucket gives 429
`SubscriptionRequestsThrottled` with `Retry-After` (seconds until one token is back). Refused
requests take no token.
"""

import math
import threading
import time

KIND = {"GET": "read", "HEAD": "read", "DELETE": "delete"}
HEADER = {"read": "x-ms-ratelimit-remaining-subscription-reads",
          "write": "x-ms-ratelimit-remaining-subscription-writes",
          "delete": "x-ms-ratelimit-remaining-subscription-deletes"}


class Limiter:
    def __init__(self, reads=250, writes=200, read_refill=25.0, write_refill=10.0,
                 clock=time.monotonic):
        self.caps = {"read": reads, "write": writes, "delete": writes}
        self.refill = {"read": read_refill, "write": write_refill, "delete": write_refill}
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets = {}       # (principal, kind) -> [tokens, last]
        self.refused = {"read": 0, "write": 0, "delete": 0}

    def take(self, principal, method):
        """(None or (kind, retry_after), headers)."""
        kind = KIND.get(method.upper(), "write")
        now = self.clock()
        with self._lock:
            b = self._buckets.setdefault((principal, kind), [float(self.caps[kind]), now])
            b[0] = min(self.caps[kind], b[0] + (now - b[1]) * self.refill[kind])
            b[1] = now
            if b[0] < 1.0:
                self.refused[kind] += 1
                retry = max(1, int(math.ceil((1.0 - b[0]) / self.refill[kind])))
                return (kind, retry), {HEADER[kind]: "0"}
            b[0] -= 1.0
            return None, {HEADER[kind]: str(int(b[0]))}

    def snapshot(self):
        with self._lock:
            return {"caps": dict(self.caps), "refill_per_second": dict(self.refill),
                    "refused": dict(self.refused),
                    "buckets": {f"{p[:8]}…/{k}": round(v[0], 1)
                                for (p, k), v in self._buckets.items()}}
