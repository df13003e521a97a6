"""A cluster-mode service built of real processes for the fault tests, every timeout at its default.

A private ``redis-server`` (append-only file on, as ``compose.yaml`` runs it) on a free port as the job store (and
broker, or a RabbitMQ vhost of the cluster's own as broker), ``mediaforge serve`` and ``mediaforge worker``
subprocesses, and model hosts in the test session's Ray under a namespace of the cluster's own. Each process can
be killed by pid and started again. The slow-echo model logs every request it finished, so a test counts how many
times each job really ran, from inside the hosts.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ray
import redis
import soundfile as sf

from tests.service_fixtures import mediaforge_process
from tests.slow_pipeline import write_model_dir
from workers.store import JobRecord, JobStore

RATE = 24000
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (redis.ConnectionError, httpx.TransportError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def clip(samples: int) -> bytes:
    """A WAV whose length identifies its job in the run log."""
    buf = io.BytesIO()
    t = np.arange(samples) / RATE
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype("float32"), RATE, format="WAV")
    return buf.getvalue()


class RedisServer:
    """``redis-server`` on a port and directory of its own; ``kill`` and ``start`` keep both (the AOF replays)."""

    def __init__(self, root: Path) -> None:
        self.port, self.dir = free_port(), root / "redis"
        self.dir.mkdir(parents=True)
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: client.ping(), 30, "redis-server to answer")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


class RabbitVhost:
    """A RabbitMQ vhost of the cluster's own on the machine's server, deleted afterwards."""

    def __init__(self) -> None:
        self.name = f"mf-faults-{uuid.uuid4().hex[:8]}"
        self.url = RABBITMQ_URL + self.name

    def create(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.name], check=True, timeout=120)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
                       check=True, timeout=120)

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], check=False, timeout=120)


class Cluster:
    def __init__(self, root: Path, broker: str) -> None:
        self.root, self.broker = root, broker
        self.redis = RedisServer(root)
        self.rabbit = RabbitVhost() if broker == "rabbitmq" else None
        self.namespace = f"faults-{uuid.uuid4().hex[:8]}"
        self.run_log = root / "runs.log"
        zoo = root / "zoo"
        write_model_dir(zoo / "slow-echo", run_log=self.run_log)
        base = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAFORGE_")}  # defaults, not the suite's
        self.env = {**base, "MEDIAFORGE_REDIS_URL": self.redis.url, "MEDIAFORGE_MODELS_DIR": str(zoo),
                    "MEDIAFORGE_DATA_DIR": str(root / "data"), "MEDIAFORGE_RAY_NAMESPACE": self.namespace,
                    "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        if self.rabbit is not None:
            self.env["MEDIAFORGE_BROKER_URL"] = self.rabbit.url
        self.api_port = free_port()
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.store: JobStore | None = None
        self.logs: list[Path] = []

    # -- processes ------------------------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[Cluster]:
        """Started for the block, stopped after it however it ends."""
        try:
            self.start()
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        self.redis.start()
        if self.rabbit is not None:
            self.rabbit.create()
        self.store = JobStore.from_url(self.redis.url)
        self.start_api()

    def start_api(self) -> None:
        self.api = self._spawn("serve", "--port", str(self.api_port), "--log-level", "warning")
        wait_until(lambda: httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200, 180,
                   "the API to start")

    def start_worker(self) -> subprocess.Popen:
        worker = self._spawn("worker", "--queues", "audio", "--loglevel", "WARNING")
        self.workers.append(worker)
        return worker

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = self.root / f"{args[0]}-{len(self.logs)}.log"
        self.logs.append(log)
        return mediaforge_process(*args, env=self.env, log=log, inherit=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        self.workers.clear()
        for host in self.hosts():
            ray.kill(ray.get_actor(host["name"], namespace=self.namespace))
        if self.redis.process is not None and self.redis.process.poll() is None:
            self.redis.kill(signal.SIGTERM)
        if self.rabbit is not None:
            self.rabbit.delete()

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def hosts(self) -> list[dict[str, Any]]:
        from workers.hosts import list_hosts

        return list_hosts(self.namespace)

    def kill_host(self) -> int:
        """SIGKILL the slow-echo host's process (found through its actor); returns the pid."""
        (host,) = wait_until(lambda: [h for h in self.hosts() if h["inflight"]], 60, "a busy model host")
        os.kill(host["pid"], signal.SIGKILL)
        return host["pid"]

    def tail_logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs)

    # -- jobs -----------------------------------------------------------------------------------------------
    def submit(self, count: int, seconds: float = 4.0) -> dict[str, int]:
        """``count`` slow-echo jobs through the API, each on a clip of its own length; job id -> sample count."""
        jobs = {}
        with httpx.Client(base_url=self.api_url, timeout=60) as http:
            for i in range(count):
                samples = 4800 + 240 * i
                response = http.post("/v1/artifacts", params={"filename": f"c{i}.wav"}, content=clip(samples))
                assert response.status_code == 201, response.text
                body = {"kind": "audio.tokenize", "model": "slow-echo", "priority": "batch",
                        "inputs": {"audio": response.json()["id"]}, "params": {"seconds": seconds, "steps": 40}}
                response = http.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                jobs[response.json()["id"]] = samples
        return jobs

    def records(self, jobs: dict[str, int]) -> list[JobRecord | None]:
        assert self.store is not None
        return [self.store.get(job_id) for job_id in jobs]

    def wait_running(self, jobs: dict[str, int]) -> None:
        wait_until(lambda: any(r is not None and r.progress > 0 for r in self.records(jobs)), 180,
                   "a job to make progress")

    def wait_finished(self, jobs: dict[str, int], timeout_s: float = 240) -> list[JobRecord]:
        try:
            return wait_until(lambda: (rs := self.records(jobs)) and all(r is not None and r.finished for r in rs)
                              and rs, timeout_s, "every job to finish")
        except AssertionError as err:
            states = Counter(r.state if r else "missing" for r in self.records(jobs))
            raise AssertionError(f"{err}: {dict(states)}\n{self.tail_logs()}") from None

    def runs(self) -> Counter[int]:
        """How many times the hosts finished each clip length."""
        if not self.run_log.exists():
            return Counter()
        return Counter(int(line) for line in self.run_log.read_text().split())

    def check_once(self, jobs: dict[str, int], since: float | None = None) -> list[JobRecord]:
        """Every job succeeded, none lost, none ran twice (counted in the hosts); a job started again after the
        fault at ``since`` started again within 30 s of it."""
        finals = self.wait_finished(jobs)
        assert [f.state for f in finals] == ["succeeded"] * len(jobs), Counter(f.state for f in finals)
        runs = self.runs()
        ran = Counter(runs[samples] for samples in jobs.values())
        odd = [(f.id[:8], runs[jobs[f.id]], f.attempts, f.message, f.started_at, f.finished_at)
               for f in finals if runs[jobs[f.id]] != 1]
        assert ran == Counter({1: len(jobs)}), f"jobs by times run (0 = lost): {dict(ran)}; {odd}"
        # Redelivery delay: jobs that had started before the fault and started again after it (a job that was
        # still queued at the fault waits for capacity, e.g. a fresh worker's start-up, which is not redelivery).
        late = [f.started_at - since for f in finals if since and f.attempts > 1 and f.started_at > since]
        print(f"faults[{self.broker}]: succeeded {len(finals)}, lost {ran[0]}, ran twice "
              f"{sum(n for times, n in ran.items() if times > 1)}, requeued "
              f"{self.store.metrics.recovery_counts()['requeued']} so far, worst restart "
              f"{max(late, default=0):.1f} s after the fault")
        assert max(late, default=0) < 30, f"restarted {max(late):.1f} s after the fault"
        return finals
