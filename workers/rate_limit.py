"""Per-owner rate limiting: a token bucket in Redis (``<p>:rate:<owner>``), shared by every API replica."""

from __future__ import annotations

import time

import redis

from workers.keyspace import Keyspace

# KEYS: bucket hash. ARGV: rate per second, burst, now, cost. Returns {allowed, retry after in ms}.
_TOKEN_BUCKET = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, wait}
"""


class RateLimiter(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str = "mf") -> None:
        super().__init__(client, prefix)
        self._bucket = client.register_script(_TOKEN_BUCKET)

    def take(self, owner: str, per_minute: float, burst: int) -> float:
        """Token bucket per owner; returns 0 when allowed, else the seconds to wait."""
        allowed, wait_ms = self._bucket(keys=[self._k("rate", owner)],
                                        args=[per_minute / 60.0, burst, time.time(), 1])
        return 0.0 if allowed else wait_ms / 1000
