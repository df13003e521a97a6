"""Prometheus metrics read from the job store at scrape time, so every API replica reports the cluster's numbers.

``mediaforge_jobs_total{kind,state}`` (jobs that entered each state), ``mediaforge_queue_depth{family}``,
``mediaforge_queue_wait_seconds`` / ``mediaforge_run_seconds`` histograms by kind, ``mediaforge_batch_size`` by model,
``mediaforge_requeued_total`` and ``mediaforge_duplicate_results_total`` (crash recovery at work).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.metrics import HISTOGRAMS, RECOVERY_EVENTS
from workers.store import JobStore

_HELP = {
    "queue_wait_seconds": ("kind", "time from submission to the first start"),
    "run_seconds": ("kind", "time from start to the final state"),
    "batch_size": ("model", "requests per batch a model host ran"),
}


class StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily("mediaforge_jobs", "jobs that entered each state", labels=["kind", "state"])
        for (kind, state), count in sorted(self.store.metrics.entered_counts().items()):
            jobs.add_metric([kind, state], count)
        yield jobs
        depth = GaugeMetricFamily("mediaforge_queue_depth", "queued jobs per queue family", labels=["family"])
        for family, count in sorted(self.store.metrics.queued_count().items()):
            depth.add_metric([family], count)
        yield depth
        for event, count in self.store.metrics.recovery_counts().items():
            counter = CounterMetricFamily(f"mediaforge_{event}", RECOVERY_EVENTS[event])
            counter.add_metric([], count)
            yield counter
        for name, buckets in HISTOGRAMS.items():
            label, doc = _HELP[name]
            family = HistogramMetricFamily(f"mediaforge_{name}", doc, labels=[label])
            for value, counts in sorted(self.store.metrics.histogram(name).items()):
                cumulative, points = 0.0, []
                for bound in (*buckets, "+Inf"):
                    cumulative += counts.get(str(bound), 0.0)
                    points.append((str(float(bound)) if bound != "+Inf" else "+Inf", cumulative))
                family.add_metric([value], points, sum_value=counts.get("sum", 0.0))
            yield family


def registry_for(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
