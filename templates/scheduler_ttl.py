"""clusterctl scheduler preload: end the cluster when its time to live is over.

Loaded with `dask scheduler --preload`. It reads the expiry (seconds since the Unix epoch)
from CLUSTERCTL_EXPIRES and closes the scheduler then; workers follow within their
--death-timeout, and VM bootstraps power the machine off when the scheduler exits. It
holds even when the machine that ran `clusterctl up` is gone.
"""

import asyncio
import logging
import os
import time

logger = logging.getLogger("clusterctl.ttl")


async def _close_at(scheduler, delay):
    await asyncio.sleep(delay)
    logger.warning("clusterctl: cluster TTL reached, closing the scheduler")
    await scheduler.close(reason="clusterctl-ttl-expired")


def dask_setup(scheduler):
    expires = float(os.environ["CLUSTERCTL_EXPIRES"])
    delay = max(0.0, expires - time.time())
    logger.info("clusterctl: the scheduler closes in %.0f s (cluster TTL)", delay)
    scheduler._clusterctl_ttl = asyncio.get_running_loop().create_task(
        _close_at(scheduler, delay)
    )
