"""Riding out a job-store outage: a running job keeps its work and waits for Redis instead of failing.

Redis restarts (a crash, a failover) take seconds; a job that has run for minutes should not be thrown away, and
a result the host computed should not be lost because the write that records it hit the gap. Past the
deadline the caller gives up, and the lease reaper recovers the job once Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

logger = logging.getLogger(__name__)

T = TypeVar("T")
STORE_FAULTS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def until_reachable(call: Callable[[], T], within_s: float, what: str) -> T:
    """``call()``, retried with backoff (0.1 s doubling to 2 s) while the job store is unreachable."""
    deadline, delay = time.monotonic() + within_s, 0.1
    while True:
        try:
            return call()
        except STORE_FAULTS as err:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: job store unreachable (%s); retrying in %.1f s", what, err, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
