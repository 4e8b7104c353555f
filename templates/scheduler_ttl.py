"""clusterctl scheduler preload: end the cluster when its time to live is over.

Loaded with `dask scheduler --preload`. It reads the expiry (seconds since the Unix epoch)
from CLUSTERCTL_EXPIRES and closes the scheduler then; workers follow within their
--death-timeout, and VM bootstraps power the machine off when the scheduler exits. It
holds even when the machine that ran `clusterctl up` is gone.

Where a provider needs an end-of-life step (CLUSTERCTL_ON_EXPIRY names a script,
CLUSTERCTL_ON_EXPIRY_CONFIG its configuration; Azure deletes the cluster's resource group,
because a powered-off VM is still billed there), it runs once, before the scheduler closes at
the TTL, or when the scheduler closes after being idle past its --idle-timeout: `python SCRIPT
CONFIG`, bounded by CLUSTERCTL_ON_EXPIRY_DEADLINE seconds, with the scheduler's own address in
CLUSTERCTL_NODE_ADDRESS. Its output goes where the scheduler's goes (the serial console).
"""

import asyncio
import logging
import os
import subprocess
import sys
import time

logger = logging.getLogger("clusterctl.ttl")


def _node_address(scheduler):
    # "tls://10.42.0.4:8786" -> "10.42.0.4"
    try:
        return scheduler.address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    except Exception:
        return ""


def _end_of_life(scheduler, why):
    """Run the provider's end-of-life step once (blocking; call it off the event loop)."""
    script = os.environ.get("CLUSTERCTL_ON_EXPIRY")
    if not script or getattr(scheduler, "_clusterctl_end_of_life", False):
        return
    scheduler._clusterctl_end_of_life = True
    deadline = float(os.environ.get("CLUSTERCTL_ON_EXPIRY_DEADLINE", "600"))
    env = dict(os.environ, CLUSTERCTL_NODE_ADDRESS=_node_address(scheduler))
    logger.warning("clusterctl: %s: running the end-of-life step %s", why, script)
    try:
        done = subprocess.run(
            [sys.executable, script, os.environ["CLUSTERCTL_ON_EXPIRY_CONFIG"]],
            env=env, stdin=subprocess.DEVNULL, timeout=deadline + 30)
        logger.warning("clusterctl: the end-of-life step exited with status %s",
                       done.returncode)
    except (OSError, subprocess.SubprocessError, KeyError) as e:
        logger.error("clusterctl: the end-of-life step failed: %s", e)


async def _close_at(scheduler, delay):
    await asyncio.sleep(delay)
    logger.warning("clusterctl: cluster TTL reached, closing the scheduler")
    await asyncio.get_running_loop().run_in_executor(
        None, _end_of_life, scheduler, "cluster TTL reached")
    await scheduler.close(reason="clusterctl-ttl-expired")


def dask_setup(scheduler):
    expires = float(os.environ["CLUSTERCTL_EXPIRES"])
    delay = max(0.0, expires - time.time())
    logger.info("clusterctl: the scheduler closes in %.0f s (cluster TTL)", delay)
    scheduler._clusterctl_ttl = asyncio.get_running_loop().create_task(
        _close_at(scheduler, delay)
    )


async def dask_teardown(scheduler):
    # Closing after being idle past --idle-timeout ends the cluster as the TTL does.
    idle_since = getattr(scheduler, "idle_since", None)
    timeout = getattr(scheduler, "idle_timeout", None)
    if idle_since and timeout and time.time() > idle_since + timeout:
        await asyncio.get_running_loop().run_in_executor(
            None, _end_of_life, scheduler, "idle past --idle-timeout")
