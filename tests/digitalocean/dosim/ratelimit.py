"""DigitalOcean's request limits, per token.

Owns `RateLimiter`: 5,000 requests per hour (sliding; each request counts for one hour) and a
per-minute burst budget (250 on DigitalOcean; `--rate-per-minute` so tests stay fast), plus the
separate 10-per-60-s budget of `GET /v2/account/keys`. `take()` answers whether a request may go
on and the header values every answer carries: `ratelimit-limit` (5000), `ratelimit-remaining`,
`ratelimit-reset` (epoch second when the oldest counted request expires). Only the per-minute
burst 429 carries `retry-after`, as on DigitalOcean. Refused requests are not counted.
"""

import collections
import math
import threading
import time

HOUR = 3600.0
MINUTE = 60.0


class RateLimiter:
    def __init__(self, per_hour=5000, per_minute=250, keys_list_per_minute=10, clock=time.time):
        self.per_hour, self.per_minute = per_hour, per_minute
        self.keys_list_per_minute = keys_list_per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._hour = collections.defaultdict(collections.deque)
        self._minute = collections.defaultdict(collections.deque)
        self._keys = collections.defaultdict(collections.deque)
        self.refused = collections.Counter()

    @staticmethod
    def _trim(q, now, window):
        while q and q[0] <= now - window:
            q.popleft()

    def _headers(self, hour, now):
        reset = int(math.ceil(hour[0] + HOUR)) if hour else int(now)
        return {"ratelimit-limit": str(self.per_hour),
                "ratelimit-remaining": str(max(0, self.per_hour - len(hour))),
                "ratelimit-reset": str(reset)}

    def peek(self, key):
        now = self.clock()
        with self._lock:
            hour = self._hour[key]
            self._trim(hour, now, HOUR)
            return self._headers(hour, now)

    def take(self, key, keys_list=False):
        """(None or ("burst"|"hour"|"keys", retry_after or None), headers)."""
        now = self.clock()
        with self._lock:
            hour, minute = self._hour[key], self._minute[key]
            self._trim(hour, now, HOUR)
            self._trim(minute, now, MINUTE)
            if len(hour) >= self.per_hour:
                self.refused["hour"] += 1
                return ("hour", None), self._headers(hour, now)
            if len(minute) >= self.per_minute:
                self.refused["burst"] += 1
                retry = max(1, int(math.ceil(minute[0] + MINUTE - now)))
                return ("burst", retry), self._headers(hour, now)
            if keys_list:
                keys = self._keys[key]
                self._trim(keys, now, MINUTE)
                if len(keys) >= self.keys_list_per_minute:
                    self.refused["keys"] += 1
                    return ("keys", None), self._headers(hour, now)
                keys.append(now)
            hour.append(now)
            minute.append(now)
            return None, self._headers(hour, now)

    def snapshot(self):
        now = self.clock()
        with self._lock:
            out = {"per_hour": self.per_hour, "per_minute": self.per_minute,
                   "keys_list_per_minute": self.keys_list_per_minute,
                   "refused": dict(self.refused), "tokens": {}}
            for key, hour in self._hour.items():
                self._trim(hour, now, HOUR)
                minute = self._minute[key]
                self._trim(minute, now, MINUTE)
                label = f"...{key[-4:]}" if len(key) > 4 else "anonymous"
                out["tokens"][label] = {"last_hour": len(hour), "last_minute": len(minute)}
            return out
