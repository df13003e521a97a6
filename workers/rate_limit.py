"""Rate limiting: token buckets in Redis (``<p>:rate:<bucket>``), shared by every API replica.

The API names a bucket after whom it limits: an API key's owner hash, ``addr:<client address>`` for callers
without keys, ``authfail:<client address>`` for failed authentications.
"""

from __future__ import annotations

import time

import redis

from workers.keyspace import Keyspace

# KEYS: bucket hash. ARGV: rate per second, burst, now, cost. Returns {allowed, retry after in ms}: allowed while
# a whole token is left; cost 0 only looks.
_TOKEN_BUCKET = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - tonumber(ARGV[4]); allowed = 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, wait}
"""


class RateLimiter(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str = "mf") -> None:
        super().__init__(client, prefix)
        self._bucket = client.register_script(_TOKEN_BUCKET)

    def take(self, bucket: str, per_minute: float, burst: int, cost: int = 1) -> float:
        """Take ``cost`` tokens; returns 0 when allowed, else the seconds to wait. ``cost=0`` only looks: the
        failed-authentication bucket is checked before a key is, and paid only when the key was wrong."""
        allowed, wait_ms = self._bucket(keys=[self._k("rate", bucket)],
                                        args=[per_minute / 60.0, burst, time.time(), cost])
        return 0.0 if allowed else wait_ms / 1000
