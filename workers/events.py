"""Job event streams that share Redis: one pub/sub connection per process fans out to every open stream.

A pub/sub connection per stream (the old way) took one of the client pool's 100 connections for each open
``GET /v1/jobs/{id}/events``: about 100 streams starved every other route of Redis (issue 25). Here an
``EventHub`` holds one ``PSUBSCRIBE <p>:events:*`` connection and one reader thread. A message only marks its
job as changed; the reader reads every changed job's record in one pipelined round trip and hands the newest
record to each ``JobWatch`` of that job. So N open streams cost two threads and two Redis connections (the
subscription and one pooled connection at a time), and 500 streams on one job cost one read per change.

A stream never misses its final event: a watch is registered before its first read (which the reader does
after registering), every watched job is re-read when the subscription is (re)confirmed, since messages sent
while it was down are lost, and every ``resync_s`` as a backstop.

New jobs: the store's create script publishes ``CREATED`` on a new job's channel (in the same round trip that
writes it, whoever submits: the API, a workflow step, the batch CLI), and every ``created`` tap of any process
gets its id (the dashboard's jobs table adds the rows that other clients submit). Taps are best effort:
a job announced while the subscription was down is not told again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import redis

from workers.records import JobRecord

logger = logging.getLogger(__name__)

Reader = Callable[[list[str]], list[JobRecord | None]]
"""Reads the records of some job ids in one round trip (None where a job does not exist)."""
CREATED = json.dumps({"state": "queued", "created": True})
"""The message a new job's creation publishes (state changes publish their state, progress and message)."""


class JobWatch:
    """One stream's view of one job: the newest record the hub read, and a signal (from the hub's thread) each
    time it delivers one. The stream calls ``take`` after a signal."""

    def __init__(self, job_id: str, signal: Callable[[], None]) -> None:
        self.job_id, self._signal = job_id, signal
        self._lock = threading.Lock()
        self._latest: JobRecord | None = None
        self._delivered = False
        self._seen: tuple[str, float, str] | None = None
        self.done = False
        """The stream's last record was final, or the job does not exist: nothing more will come."""

    def offer(self, job: JobRecord | None) -> None:
        with self._lock:
            self._latest, self._delivered = job, True
        self._signal()

    def take(self) -> JobRecord | None:
        """The newest record if its state, progress or message changed since the last take, else None."""
        with self._lock:
            job, delivered = self._latest, self._delivered
        if not delivered or self.done:
            return None
        if job is None:
            self.done = True
            return None
        seen = (job.state, job.progress, job.message)
        if seen == self._seen:
            return None
        self._seen, self.done = seen, job.finished
        return job


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern (key prefixes may hold ``[``, e.g. test names)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


class EventHub:
    """Fans one pattern subscription out to every ``JobWatch`` of this process. Threads start at the first watch.

    Args:
        client: the store's Redis client; the subscription is one more connection of its pool.
        channel_prefix (str): the events channel of a job is this prefix plus its id (``<p>:events:``).
        read (Reader): batched record reads (the store's).
        resync_s (float, default 15): every watched job is re-read this often, whatever was published.
        read_batch (int, default 500): job ids per pipelined read.
    """

    def __init__(self, client: redis.Redis, channel_prefix: str, read: Reader, resync_s: float = 15.0,
                 read_batch: int = 500) -> None:
        self._client, self._prefix, self._read = client, channel_prefix, read
        self.resync_s, self.read_batch = resync_s, read_batch
        self._lock = threading.Lock()
        self._watches: dict[str, set[JobWatch]] = {}
        self._taps: set[Callable[[str], None]] = set()
        self._dirty: set[str] = set()
        self._changed, self._stop, self._subscribed = threading.Event(), threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def watching(self) -> int:
        """Open watches (streams) in this process."""
        with self._lock:
            return sum(len(watches) for watches in self._watches.values())

    @contextmanager
    def watch(self, job_id: str, signal: Callable[[], None]) -> Iterator[JobWatch]:
        """A watch of ``job_id`` for the ``with`` block; the hub reads the record once at once, then per change."""
        watch = JobWatch(job_id, signal)
        with self._lock:
            self._start()
            self._watches.setdefault(job_id, set()).add(watch)
            self._dirty.add(job_id)
        self._changed.set()
        try:
            yield watch
        finally:
            with self._lock:
                peers = self._watches.get(job_id, set())
                peers.discard(watch)
                if not peers:
                    self._watches.pop(job_id, None)

    @contextmanager
    def created(self, signal: Callable[[str], None]) -> Iterator[None]:
        """For the ``with`` block, ``signal(job_id)`` (on the hub's thread) for each job announced as created."""
        with self._lock:
            self._start()
            self._taps.add(signal)
        try:
            yield
        finally:
            with self._lock:
                self._taps.discard(signal)

    def subscribed(self, timeout_s: float) -> bool:
        """Wait until the subscription is confirmed (a tap registered earlier then hears every announcement)."""
        return self._subscribed.wait(timeout_s)

    def follow(self, job_id: str, timeout_s: float, keepalive_s: float) -> Iterator[JobRecord | None]:
        """Records as the job changes, the last one final (nothing if the job does not exist); None as a tick
        after ``keepalive_s`` without a change. Ends after ``timeout_s`` in any case. Blocks its thread."""
        woken = threading.Event()
        with self.watch(job_id, woken.set) as watch:
            deadline = time.monotonic() + timeout_s
            while not watch.done and (left := deadline - time.monotonic()) > 0:
                if not woken.wait(min(keepalive_s, left)):
                    yield None
                    continue
                woken.clear()
                if (job := watch.take()) is not None:
                    yield job

    async def afollow(self, job_id: str, timeout_s: float, keepalive_s: float) -> AsyncIterator[JobRecord | None]:
        """``follow`` for the event loop: a stream holds no thread while it waits."""
        loop, woken = asyncio.get_running_loop(), asyncio.Event()
        with self.watch(job_id, lambda: loop.call_soon_threadsafe(woken.set)) as watch:
            deadline = loop.time() + timeout_s
            while not watch.done and (left := deadline - loop.time()) > 0:
                try:
                    await asyncio.wait_for(woken.wait(), min(keepalive_s, left))
                except TimeoutError:
                    yield None
                    continue
                woken.clear()
                if (job := watch.take()) is not None:
                    yield job

    def close(self) -> None:
        """Stop both threads and drop the subscription (open watches get nothing more)."""
        self._stop.set()
        self._changed.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- the two threads ---------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start both threads at the first watch or tap (the caller holds the lock)."""
        if self._stop.is_set():
            raise RuntimeError("the event hub is closed")
        if not self._threads:
            self._threads = [threading.Thread(target=run, name=f"event-hub-{run.__name__[1:]}", daemon=True)
                             for run in (self._listen, self._refresh)]
            for thread in self._threads:
                thread.start()

    def _mark(self, job_ids: list[str] | None = None) -> None:
        """Mark watched jobs as changed (all of them with None) and wake the reader."""
        with self._lock:
            self._dirty.update(self._watches if job_ids is None else (j for j in job_ids if j in self._watches))
        self._changed.set()

    def _listen(self) -> None:
        pattern, failures = _glob_escape(self._prefix) + "*", 0
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.psubscribe(pattern)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "pmessage":
                        job_id = message["channel"][len(self._prefix):]
                        self._mark([job_id])
                        if message["data"] == CREATED:
                            self._tell(job_id)
                    elif message["type"] == "psubscribe":  # (re)subscribed: what was sent meanwhile is lost
                        self._mark()
                        self._subscribed.set()
                        failures = 0
            except redis.RedisError as err:
                self._subscribed.clear()
                failures += 1  # one warning per outage, not one a second while Redis is down
                logger.log(logging.WARNING if failures == 1 else logging.DEBUG,
                           "job events: subscription lost (%s); subscribing again every second", err)
                self._stop.wait(1.0)
            finally:
                pubsub.close()

    def _refresh(self) -> None:
        next_resync = time.monotonic() + self.resync_s
        while not self._stop.is_set():
            self._changed.wait(max(0.0, next_resync - time.monotonic()))
            self._changed.clear()
            with self._lock:
                if time.monotonic() >= next_resync:
                    self._dirty.update(self._watches)
                    next_resync = time.monotonic() + self.resync_s
                job_ids, self._dirty = list(self._dirty), set()
            for start in range(0, len(job_ids), self.read_batch):
                chunk = job_ids[start:start + self.read_batch]
                try:
                    records = self._read(chunk)
                except redis.RedisError as err:
                    logger.warning("job events: reading %d jobs failed (%s); retrying", len(chunk), err)
                    self._mark(job_ids[start:])
                    self._stop.wait(1.0)
                    break
                self._deliver(chunk, records)

    def _tell(self, job_id: str) -> None:
        with self._lock:
            taps = list(self._taps)
        for tap in taps:
            try:
                tap(job_id)
            except RuntimeError:  # its event loop closed while the stream was ending
                logger.debug("job events: a created tap is gone")

    def _deliver(self, job_ids: list[str], records: list[JobRecord | None]) -> None:
        for job_id, record in zip(job_ids, records, strict=True):
            with self._lock:
                watches = list(self._watches.get(job_id, ()))
            for watch in watches:
                try:
                    watch.offer(record)
                except RuntimeError:  # its event loop closed while the stream was ending
                    logger.debug("job events: watch of %s is gone", job_id)
