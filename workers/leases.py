"""Job leases (``<p>:lease:<id>``): one live runner per job, even when Celery delivers it twice."""

from __future__ import annotations

import redis

from workers.keyspace import Keyspace

# KEYS: lease. ARGV: holder. Deletes the lease only if this holder still owns it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str = "mf") -> None:
        super().__init__(client, prefix)
        self._release = client.register_script(_RELEASE)

    def acquire(self, job_id: str, holder: str, ttl_s: float) -> bool:
        return bool(self.redis.set(self._k("lease", job_id), holder, nx=True, px=int(ttl_s * 1000)))

    def renew(self, job_id: str, holder: str, ttl_s: float) -> bool:
        key = self._k("lease", job_id)
        if self.redis.get(key) != holder:
            return False
        return bool(self.redis.pexpire(key, int(ttl_s * 1000)))

    def ttl(self, job_id: str) -> float:
        ms = self.redis.pttl(self._k("lease", job_id))
        return max(ms, 0) / 1000

    def release(self, job_id: str, holder: str) -> None:
        self._release(keys=[self._k("lease", job_id)], args=[holder])
