"""The event log: DIR/agent-events.jsonl, with refusals and errors also in DIR/agent-errors.jsonl.

One JSON object a line: `{"t": unix time, SUBJECT: node id or null, "event": kind, "detail":
{...}}`, SUBJECT being what the platform calls a node (`instance` on EC2, `task` on ECS).  Every
event is also printed on stderr as `NAME: ID KIND: DETAIL`.  agent-errors.jsonl is created only
when there is an error, and the tests assert that it is absent or empty.

An `EventLog` is the `events` callable a `VmRuntime` uses when given none: `log(kind,
node=ID, **detail)`.  Adapters write their own events (e.g. `poll-error`) into the same log
with `log.record(ID, kind, detail, error=False)`.
"""

import json
import os
import sys
import threading
import time

# Kinds that are always errors: the user-data could not be run, or the runtime failed.
ERROR_KINDS = ("refused", "error")


class EventLog:
    def __init__(self, workdir, subject="instance", name="vmboot"):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.events_path = os.path.join(self.workdir, "agent-events.jsonl")
        self.errors_path = os.path.join(self.workdir, "agent-errors.jsonl")
        self.subject = subject
        self.name = name
        self._lock = threading.Lock()

    def __call__(self, kind, node=None, **detail):
        self.record(node, kind, detail, error=kind in ERROR_KINDS)

    def record(self, subject_id, kind, detail, error=False):
        record = {"t": time.time(), self.subject: subject_id, "event": kind, "detail": detail}
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            with open(self.events_path, "a", encoding="utf-8") as f:
                f.write(line)
            if error:
                with open(self.errors_path, "a", encoding="utf-8") as f:
                    f.write(line)
        print(f"{self.name}: {subject_id or '-'} {kind}: {json.dumps(detail, default=str)}",
              file=sys.stderr, flush=True)
