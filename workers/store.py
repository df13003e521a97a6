"""The Redis job store: one hash per job (DESIGN.md's record), with states that only move forward.

This module is the job state machine; ``JobStore`` also carries the store's other pieces, each its own module
over the same Redis and prefix: ``leases`` (workers/leases.py), ``rate`` (workers/rate_limit.py),
``metrics`` (workers/metrics.py) and ``event_hub`` (workers/events.py: the one subscription every event stream
of the process shares); the record itself is workers/records.py.

Every state change is one Lua script that checks the current state and writes the new one atomically, so two
workers racing on a re-delivered job cannot both finish it, and a cancelled job never turns into a succeeded one.
Finished jobs expire after ``job_ttl_s``. Counters for /metrics (jobs entering each state, queue depth per
family, latency and batch-size histograms) live in Redis too, so every API replica reports the same numbers.

Keys (``<p>`` is ``Settings.key_prefix``): ``<p>:job:<id>`` hash, ``<p>:jobs`` sorted set by creation time,
``<p>:idem:<owner>:<key hash>``, ``<p>:lease:<id>`` and ``<p>:deadlines`` (workers/leases.py),
``<p>:events:<id>`` pub/sub channel, ``<p>:stats:*``,
``<p>:hist:*``, ``<p>:rate:<owner>``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from workers.events import CREATED, EventHub
from workers.keyspace import Keyspace
from workers.leases import Leases
from workers.metrics import LATENCY_BUCKETS, Metrics
from workers.rate_limit import RateLimiter
from workers.records import JSON_FIELDS, TERMINAL, JobError, JobRecord, JobTarget, State, decode_record, encode_record

__all__ = ["IdempotencyConflict", "JobError", "JobRecord", "JobStore", "JobTarget", "State", "Transition"]


def _lua_buckets(buckets: tuple[float, ...]) -> str:
    """A Lua table of {bound, field label}; labels are Python's ``str`` of the bound, as ``Metrics.observe`` writes."""
    return "{" + ", ".join(f"{{{b!r}, '{b}'}}" for b in buckets) + "}"


# KEYS: job hash, entered-state counters, queued-per-family counters, events channel, queue-wait histogram,
#       run-time histogram, lease deadlines (a final state takes the job off them: nobody need watch it), the
#       prefix of the owners' artifact sets (a success gives its owner its outputs: workers/artifacts.py).
# ARGV: new state, ttl (0 = keep), now, then n and the n allowed current states, then field/value pairs.
# Returns {status, previous state[, kind, created_at, started_at]}: status 1 moved, 0 refused, -1 no such job,
# 2 refused because a cancel was requested (a success must then be recorded as a cancellation).
# The latency histograms are observed here, in the same round trip: queued -> running adds the queue wait,
# running -> a final state adds the run time.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
local n = tonumber(ARGV[4])
local ok = false
for i = 5, 4 + n do if ARGV[i] == cur then ok = true end end
if not ok then return {0, cur} end
local new = ARGV[1]
if new == 'succeeded' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return {2, cur} end
local times = redis.call('HMGET', KEYS[1], 'created_at', 'started_at')
for i = 5 + n, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'state', new)
if new == 'running' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
local kind = redis.call('HGET', KEYS[1], 'kind')
if cur ~= new then redis.call('HINCRBY', KEYS[2], kind .. '|' .. new, 1) end
local family = redis.call('HGET', KEYS[1], 'family')
if cur == 'queued' and new ~= 'queued' then redis.call('HINCRBY', KEYS[3], family, -1) end
if cur ~= 'queued' and new == 'queued' then redis.call('HINCRBY', KEYS[3], family, 1) end
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[7], string.match(KEYS[1], '[^:]+$'))
end
if new == 'succeeded' then
  local owner, outputs = unpack(redis.call('HMGET', KEYS[1], 'owner', 'outputs'))
  if owner and owner ~= 'anonymous' and outputs then
    for _, aid in pairs(cjson.decode(outputs)) do redis.call('SADD', KEYS[8] .. owner, aid) end
  end
end
local snap = redis.call('HMGET', KEYS[1], 'state', 'progress', 'message')
redis.call('PUBLISH', KEYS[4], cjson.encode({state = snap[1], progress = tonumber(snap[2]), message = snap[3]}))
local function observe(key, value)
  local bucket = '+Inf'
  for _, b in ipairs(BUCKETS) do if value <= b[1] then bucket = b[2]; break end end
  redis.call('HINCRBY', key, kind .. '|' .. bucket, 1)
  redis.call('HINCRBYFLOAT', key, kind .. '|sum', value)
  redis.call('HINCRBY', key, kind .. '|count', 1)
end
local now = tonumber(ARGV[3])
if cur == 'queued' and new == 'running' then observe(KEYS[5], now - tonumber(times[1]))
elseif cur == 'running' and new ~= 'running' and times[2] then observe(KEYS[6], now - tonumber(times[2])) end
return {1, cur, kind, times[1], times[2] or ''}
""".replace("BUCKETS", _lua_buckets(LATENCY_BUCKETS))

# KEYS: job hash, events channel. ARGV: progress, message. Only a running job reports progress.
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'message', ARGV[2])
redis.call('PUBLISH', KEYS[2], cjson.encode({state = 'running', progress = tonumber(ARGV[1]), message = ARGV[2]}))
return 1
"""

# KEYS: job hash. ARGV: the model host starting it. Names the host on a running job, returns its cancel flag.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return redis.call('HGET', KEYS[1], 'cancel_requested') end
redis.call('HSET', KEYS[1], 'host', ARGV[1])
return redis.call('HGET', KEYS[1], 'cancel_requested')
"""

# KEYS: job hash, jobs index, queued-per-family counters, entered-state counters, lease deadlines; with an
#       Idempotency-Key also its key, and the hash of the job it named when the caller found that job expired.
# ARGV: job id, created_at, dispatch deadline, idempotency ttl, that expired job's id (or ''), family, kind, the
#       job's event channel and its "created" message, then the record's field/value pairs.
# Returns the id of the job the key names: this one if it was created, else the earlier job's (nothing written).
# A created job is announced on its channel (workers/events.py), so live tables add its row, whoever submitted it.
# One script, so of N requests racing with one key exactly one creates its job (and enqueues it).
_CREATE = """
if KEYS[6] then
  local held = redis.call('GET', KEYS[6])
  if held and not (held == ARGV[5] and redis.call('EXISTS', KEYS[7]) == 0) then return held end
  redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[4])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
redis.call('HINCRBY', KEYS[4], ARGV[7] .. '|queued', 1)
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[8], ARGV[9])
return ARGV[1]
"""


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was already used for a different job body."""


@dataclass(frozen=True)
class Transition:
    moved: bool
    previous: str | None
    """None when the job does not exist (never created, or expired)."""
    kind: str = ""
    created_at: float | None = None
    started_at: float | None = None
    cancel_won: bool = False
    """Refused because a cancel was requested while the job ran (only a move to succeeded can be refused so)."""
    state: str = ""
    """The state the job moved into (empty when it did not move)."""


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


class JobStore(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str = "mf", job_ttl_s: int = 7 * 24 * 3600,
                 idempotency_ttl_s: int = 24 * 3600, dispatch_grace_s: float = 15.0) -> None:
        super().__init__(client, prefix)
        self.dispatch_grace_s = dispatch_grace_s
        """How long a new queued job may go unclaimed before the reaper checks that its message still exists."""
        self.leases, self.rate = Leases(client, prefix), RateLimiter(client, prefix)
        self.metrics = Metrics(client, prefix)
        self.job_ttl_s, self.idempotency_ttl_s = job_ttl_s, idempotency_ttl_s
        self._transition = client.register_script(_TRANSITION)
        self._progress = client.register_script(_PROGRESS)
        self._claim = client.register_script(_CLAIM)
        self._create = client.register_script(_CREATE)
        self.event_hub = EventHub(client, self.events_channel(""), self._read_many)
        """The process's one subscription to job events, shared by every open stream (workers/events.py)."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> JobStore:
        """A store on its own client. The pool blocks (up to ``timeout``) instead of refusing a call past its
        ``max_connections``: a burst of requests on the API's 512 route threads waits its turn for a connection,
        where redis-py's default pool answered ``MaxConnectionsError`` (a 500) to the 101st (issue 25)."""
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=100, timeout=20, decode_responses=True,
                                                     socket_timeout=10, socket_connect_timeout=5,
                                                     health_check_interval=30)
        return cls(redis.Redis(connection_pool=pool), **kwargs)

    # -- keys ---------------------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return self._k("job", job_id)

    def events_channel(self, job_id: str) -> str:
        return self._k("events", job_id)

    # -- create / read ------------------------------------------------------------------------------------
    def create(self, *, kind: str, model: str, family: str, params: dict[str, Any], inputs: dict[str, str],
               priority: str, target: JobTarget, owner: str = "anonymous",
               idempotency_key: str | None = None) -> tuple[JobRecord, bool]:
        """A new queued job, or (with a key already used by this owner) the existing one. Returns (job, created)."""
        body = {"kind": kind, "model": model, "params": params, "inputs": inputs, "priority": priority}
        record = JobRecord(id=uuid.uuid4().hex, kind=kind, model=model, family=family, params=params,
                           inputs=inputs, priority=priority, owner=owner, idempotency_key=idempotency_key,
                           created_at=time.time(), spec_hash=spec_hash(body), target=target)
        keys = [self.job_key(record.id), self._k("jobs"), self._k("stats", "queued"), self._k("stats", "entered"),
                self.leases.deadlines_key]
        if idempotency_key is not None:
            keys.append(self._k("idem", owner, hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]))
        fields = [item for pair in encode_record(record).items() for item in pair]
        expired = ""
        while True:  # at most twice: a retry follows only a key whose job expired, and then this job takes it
            args = [record.id, repr(record.created_at), repr(record.created_at + self.dispatch_grace_s),
                    self.idempotency_ttl_s, expired, family, kind, self.events_channel(record.id), CREATED, *fields]
            held = self._create(keys=keys + ([self.job_key(expired)] if expired else []), args=args)
            if held == record.id:
                return record, True
            existing = self.get(held)
            if existing is None:
                expired = held  # the earlier job expired: the key starts anew
                continue
            if existing.spec_hash != record.spec_hash:
                raise IdempotencyConflict("this Idempotency-Key was already used for a different job")
            return existing, False

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(self.job_key(job_id)) if job_id else {}
        return decode_record(raw) if raw else None

    def list(self, *, state: str | None = None, kind: str | None = None, owner: str | None = None,
             limit: int = 50, cursor: float | None = None) -> tuple[list[JobRecord], float | None]:
        """Newest first. ``cursor`` is the creation time to continue below; returns (jobs, next cursor or None)."""
        found: list[JobRecord] = []
        upper: float | str = f"({cursor}" if cursor is not None else "+inf"
        page = max(limit, 100)
        while len(found) < limit:
            ids = self.redis.zrevrangebyscore(self._k("jobs"), upper, "-inf", start=0, num=page, withscores=True)
            if not ids:
                return found, None
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in ids:
                    pipe.hgetall(self.job_key(job_id))
                raws = pipe.execute()
            for (job_id, score), raw in zip(ids, raws, strict=True):
                if not raw:
                    self.redis.zrem(self._k("jobs"), job_id)  # expired: drop it from the index
                    continue
                job = decode_record(raw)
                if all(want is None or have == want
                       for want, have in ((state, job.state), (kind, job.kind), (owner, job.owner))):
                    found.append(job)
                    if len(found) == limit:
                        return found, score
            upper = f"({ids[-1][1]}"
        return found, None

    # -- state changes -----------------------------------------------------------------------------------
    def transition(self, job_id: str, new: State, allowed_from: tuple[str, ...], **fields: Any) -> Transition:
        """Move to ``new`` only if the current state is in ``allowed_from``; terminal states start the TTL."""
        args: list[Any] = [new, self.job_ttl_s if new in TERMINAL else 0, time.time(), len(allowed_from),
                           *allowed_from]
        for key, value in fields.items():
            args += [key, json.dumps(value) if key in JSON_FIELDS else value]
        keys = [self.job_key(job_id), self._k("stats", "entered"), self._k("stats", "queued"),
                self.events_channel(job_id), self._k("hist", "queue_wait_seconds"), self._k("hist", "run_seconds"),
                self.leases.deadlines_key, self._k("owns", "")]
        status, previous, *rest = self._transition(keys=keys, args=args)
        if status != 1:
            return Transition(moved=False, previous=previous or None, cancel_won=status == 2)
        kind, created, started = rest
        return Transition(True, previous or None, kind, float(created), float(started) if started else None,
                          state=new)

    def start(self, job_id: str) -> Transition:
        """queued -> running, or running -> running for a re-delivered job (attempts counts both)."""
        return self.transition(job_id, "running", ("queued", "running"), started_at=time.time())

    def finish(self, job_id: str, state: State, *, outputs: dict[str, str] | None = None,
               error: JobError | None = None, message: str = "") -> Transition:
        """Running (or requeued) -> ``state``, once: a later answer is discarded and counted. A success that lost
        to a cancel request is recorded as cancelled, without its outputs (the returned ``state`` says which)."""
        fields: dict[str, Any] = {"finished_at": time.time(), "message": message or state}
        if state == "succeeded":
            fields |= {"progress": 1.0, "outputs": outputs or {}}
        if error is not None:
            fields["error"] = error.model_dump()
        # From queued too: a host that outlived its worker may answer after the reaper put the job back.
        result = self.transition(job_id, state, ("queued", "running"), **fields)
        if result.cancel_won:
            return self.finish(job_id, "cancelled")
        if not result.moved and result.previous in TERMINAL:
            self.metrics.count("duplicate_results")  # a late second answer: discarded, but seen
        return result

    def requeue(self, job_id: str, message: str) -> Transition:
        """Running -> queued: its runner is gone (the reaper holds the lease while it does this)."""
        return self.transition(job_id, "queued", ("running",), message=message, progress=0.0)

    def cancel(self, job_id: str) -> JobRecord | None:
        """Queued: cancelled at once. Running: flagged; the worker stops it at its next progress point."""
        moved = self.transition(job_id, "cancelled", ("queued",), finished_at=time.time(), message="cancelled")
        if not moved.moved and moved.previous == "running":
            self.redis.hset(self.job_key(job_id), "cancel_requested", "1")
        return self.get(job_id)

    def report(self, job_ids: list[str], fraction: float, message: str) -> set[str]:
        """Progress of a batch in one round trip; returns the ids among them whose cancel was requested."""
        fraction = min(max(fraction, 0.0), 1.0)
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                self._progress(keys=[self.job_key(job_id), self.events_channel(job_id)], args=[fraction, message],
                               client=pipe)
                pipe.hget(self.job_key(job_id), "cancel_requested")
            replies = pipe.execute()
        return {job_id for job_id, flag in zip(job_ids, replies[1::2], strict=True) if flag == "1"}

    def claim(self, job_ids: list[str], host: str) -> set[str]:
        """A model host starting a batch: names itself on each running job (a redelivered job is then sent back
        to the replica that has it) and returns the ids whose cancel was requested, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                self._claim(keys=[self.job_key(job_id)], args=[host], client=pipe)
            flags = pipe.execute()
        return {job_id for job_id, flag in zip(job_ids, flags, strict=True) if flag == "1"}

    # -- events ---------------------------------------------------------------------------------------------
    def events(self, job_id: str, timeout_s: float = 3600.0, keepalive_s: float = 15.0
               ) -> Iterator[JobRecord | None]:
        """The job's record at each change (progress, then the final state); None as a keep-alive tick."""
        return self.event_hub.follow(job_id, timeout_s, keepalive_s)

    def aevents(self, job_id: str, timeout_s: float = 3600.0, keepalive_s: float = 15.0
                ) -> AsyncIterator[JobRecord | None]:
        """``events`` for the event loop (the SSE route): an open stream holds no thread and no connection."""
        return self.event_hub.afollow(job_id, timeout_s, keepalive_s)

    def _read_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.job_key(job_id))
            return [decode_record(raw) if raw else None for raw in pipe.execute()]

    def ping(self) -> bool:
        return bool(self.redis.ping())
