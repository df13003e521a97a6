"""The Redis client and key prefix every piece of the job store shares (``<p>`` in the key names)."""

from __future__ import annotations

import redis


class Keyspace:
    """Base of the store's pieces: one client, keys ``<prefix>:<part>:...``, so replicas and tests can share a Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "mf") -> None:
        self.redis, self.prefix = client, prefix

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))
