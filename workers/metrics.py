"""Counters and histograms for /metrics (``<p>:stats:*``, ``<p>:hist:*``), in Redis so every API replica reports
the same numbers. The store's state transitions write them; this module reads them and adds observations."""

from __future__ import annotations

from workers.keyspace import Keyspace

# Histogram buckets (seconds for latencies, requests for batch sizes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
HISTOGRAMS = {"queue_wait_seconds": LATENCY_BUCKETS, "run_seconds": LATENCY_BUCKETS, "batch_size": BATCH_BUCKETS}


RECOVERY_EVENTS = {
    "requeued": "jobs the reaper put back on their queue (their lease expired unfinished)",
    "duplicate_results": "late second answers for a finished job, discarded",
}


class Metrics(Keyspace):
    def count(self, event: str) -> None:
        """One more of a recovery event (``RECOVERY_EVENTS``)."""
        self.redis.hincrby(self._k("stats", "recovery"), event, 1)

    def recovery_counts(self) -> dict[str, int]:
        raw = self.redis.hgetall(self._k("stats", "recovery"))
        return {event: int(raw.get(event, 0)) for event in RECOVERY_EVENTS}

    def queued_count(self) -> dict[str, int]:
        return {k: max(int(v), 0) for k, v in self.redis.hgetall(self._k("stats", "queued")).items()}

    def entered_counts(self) -> dict[tuple[str, str], int]:
        raw = self.redis.hgetall(self._k("stats", "entered"))
        return {tuple(k.split("|", 1)): int(v) for k, v in raw.items()}  # type: ignore[misc]

    def observe(self, metric: str, label: str, value: float) -> None:
        bucket = next((b for b in HISTOGRAMS[metric] if value <= b), "+Inf")
        with self.redis.pipeline(transaction=False) as pipe:
            key = self._k("hist", metric)
            pipe.hincrby(key, f"{label}|{bucket}", 1)
            pipe.hincrbyfloat(key, f"{label}|sum", value)
            pipe.hincrby(key, f"{label}|count", 1)
            pipe.execute()

    def histogram(self, metric: str) -> dict[str, dict[str, float]]:
        """label -> {bucket upper bound (str) or 'sum'/'count': value}, bucket counts not cumulative."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.redis.hgetall(self._k("hist", metric)).items():
            label, _, bucket = field.rpartition("|")
            out.setdefault(label, {})[bucket] = float(value)
        return out
