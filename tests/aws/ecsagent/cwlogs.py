"""The awslogs log driver: the container's output, line by line, to a CloudWatch Logs stream.

`LogPipe` reads the Dask process's stdout+stderr pipe on a thread, appends every byte to
`dask.log` and queues each line with the time it arrived (milliseconds, never going back), as
Docker's awslogs driver stamps lines when it reads them.  `Shipper` creates the stream
`<awslogs-stream-prefix>/<container>/<task id>` and sends the queued lines with PutLogEvents,
in order, within CloudWatch's limits.  Empty lines stay in dask.log but are not sent (a log
event needs a non-empty message).
"""

import os
import threading
import time

MAX_EVENT_BYTES = 262144 - 26          # per message (CloudWatch counts 26 bytes per event)
MAX_BATCH_BYTES = 1048576
MAX_BATCH_EVENTS = 10000
EVENT_OVERHEAD = 26


class LogPipe:
    def __init__(self, fd, log_path):
        self.fd = fd
        self.log_path = log_path
        self.lock = threading.Lock()
        self.pending = []   # [(timestamp_ms, message)]
        self.last_ms = 0
        self.lines = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _stamp(self):
        now = int(time.time() * 1000)
        self.last_ms = max(self.last_ms, now)
        return self.last_ms

    def _queue(self, raw):
        ts = self._stamp()
        for i in range(0, max(len(raw), 1), MAX_EVENT_BYTES):
            chunk = raw[i:i + MAX_EVENT_BYTES]
            if chunk:
                with self.lock:
                    self.pending.append((ts, chunk.decode("utf-8", errors="replace")))
        self.lines += 1

    def _run(self):
        buf = b""
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write(data)
                log.flush()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._queue(line)
            if buf:
                self._queue(buf)
        os.close(self.fd)

    def take(self):
        with self.lock:
            out, self.pending = self.pending, []
        return out

    def put_back(self, events):
        with self.lock:
            self.pending[:0] = events

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()


def batches(events):
    batch, size = [], 0
    for ts, msg in events:
        n = len(msg.encode("utf-8")) + EVENT_OVERHEAD
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": ts, "message": msg})
        size += n
    if batch:
        yield batch


class Shipper:
    def __init__(self, logs, group, stream):
        self.logs = logs
        self.group = group
        self.stream = stream
        self.sent = 0

    def create_stream(self):
        try:
            self.logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass

    def ship(self, events):
        """Send `events` in order; on failure raise with the unsent rest attached."""
        done = 0
        try:
            for batch in batches(events):
                self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                         logEvents=batch)
                done += len(batch)
                self.sent += len(batch)
        except Exception as e:
            e.unsent = events[done:]
            raise
