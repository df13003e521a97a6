"""Job leases: a job is owned by a lease in the job store, not by a broker message.

Two keys per prefix: ``<p>:lease:<id>`` names the live holder (expires with the lease) and ``<p>:deadlines`` is a
sorted set of every unfinished job by the time someone must next show life for it: a queued job's dispatch
grace, a running job's lease expiry. Taking and renewing a lease move both in one script; a final state removes
the job from the set (the store's transition script). The reaper (workers/reaper.py) reads the jobs whose
deadline passed and whose lease no one holds: their runner is gone, so they go back on their queue.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from workers.keyspace import Keyspace
from workers.retry import STORE_FAULTS

logger = logging.getLogger(__name__)

# KEYS: lease, deadlines. ARGV: job id, holder, ttl ms, now ms. Takes a free lease.
_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[2], (tonumber(ARGV[4]) + tonumber(ARGV[3])) / 1000, ARGV[1])
return 1
"""

# KEYS: lease, deadlines. ARGV: job id, holder, ttl ms, now ms. Extends a lease this holder still owns.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], (tonumber(ARGV[4]) + tonumber(ARGV[3])) / 1000, ARGV[1])
return 1
"""

# KEYS: lease. ARGV: holder. Deletes the lease only if this holder still owns it; the deadline stays, so a job
# released unfinished (its runner gave up) is the reaper's once the deadline passes.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str = "mf") -> None:
        super().__init__(client, prefix)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def deadlines_key(self) -> str:
        return self._k("deadlines")

    def _keys(self, job_id: str) -> list[str]:
        return [self._k("lease", job_id), self.deadlines_key]

    def acquire(self, job_id: str, holder: str, ttl_s: float) -> bool:
        args = [job_id, holder, int(ttl_s * 1000), int(time.time() * 1000)]
        return bool(self._acquire(keys=self._keys(job_id), args=args))

    def hold(self, holders: dict[str, str], ttl_s: float) -> None:
        """Renew the leases of many jobs in one round trip (a model host holds every job it has); a lease the store
        lost (a restart that dropped its last writes) is taken again if it is free."""
        now = int(time.time() * 1000)
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id, holder in holders.items():
                self._renew(keys=self._keys(job_id), args=[job_id, holder, int(ttl_s * 1000), now], client=pipe)
            renewed = pipe.execute()
        lost = [(job_id, holder) for (job_id, holder), ok in zip(holders.items(), renewed, strict=True) if not ok]
        for job_id, holder in lost:
            self.acquire(job_id, holder, ttl_s)

    def release(self, job_id: str, holder: str) -> None:
        self._release(keys=[self._k("lease", job_id)], args=[holder])

    def holder(self, job_id: str) -> str | None:
        return self.redis.get(self._k("lease", job_id))

    def expired(self, now: float | None = None, limit: int = 500) -> list[str]:
        """Unfinished jobs whose deadline has passed (oldest first)."""
        now = time.time() if now is None else now
        return self.redis.zrangebyscore(self.deadlines_key, "-inf", now, start=0, num=limit)

    def forget(self, job_id: str) -> None:
        """Drop a job that needs no watching (finished, or expired from the store)."""
        self.redis.zrem(self.deadlines_key, job_id)


class LeaseKeeper:
    """Renews every lease one worker process holds, every third of the lease, in one round trip, on one thread.

    A task hands its lease over right after taking it and takes it back before letting go, so the lease is kept
    whatever the task waits on in between (its model's first replicas starting, a host's answer, a back-off
    before a retry): a live runner's job is never sent again because it was waiting somewhere unexpected.
    """

    def __init__(self, leases: Leases, ttl_s: float) -> None:
        self.leases, self.ttl_s = leases, ttl_s
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._renew_forever, name="lease-keeper", daemon=True).start()

    def add(self, job_id: str, holder: str) -> None:
        with self._lock:
            self._held[job_id] = holder

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def close(self) -> None:
        self._stop.set()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                self.leases.hold(held, self.ttl_s)
            except STORE_FAULTS as err:  # renewed (or taken again) once Redis is back; the host renews too
                logger.warning("%d job leases not renewed (%s)", len(held), err)
