"""The self-checks' one wait: poll a function until it returns something truthy, or fail."""

import time


def wait(what, fn, timeout=60, step=0.2):
    """Return fn()'s first truthy value; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
