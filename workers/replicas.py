"""Replicas of model hosts: each model runs as a set of named, detached actors ``host:<model>:<i>`` spread over
the Ray nodes that can hold it, with calls balanced over them and batching inside each (workers/hosts.py).

Every Celery worker process keeps a ``HostPool``. A call goes to the replica with the fewest calls in flight from
this process (a redelivered job goes back to the replica that started it, which joins it to its running call or
answers it from memory). Once a second the pool reads every replica's load (``ModelHost.info``) and sizes the set:
at least ``min`` replicas, one more per ``replica_target_inflight`` calls in flight over all callers, up to
``max`` (default one per node that can host the model); a replica above the minimum that has had no call for
``replica_idle_s`` is stopped. A replica is started on the eligible node holding the fewest replicas of its model
(then the fewest hosts), so a lost node's replicas come back on the nodes that remain. Names make it safe for many
pools to do this at once: two pools starting ``host:m:1`` get the same actor.

Why these actors and not Ray Serve deployments: the same host behind a Serve handle cost 0.85 ms more per call
and x3.6 the latency at 32 calls in flight (``benchmarks/serve_vs_actor.py``, README "Running a cluster").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipelines.zoo import ModelRef
from workers.hosts import (
    HOST_PREFIX,
    RemoteModelHost,
    StoreAddress,
    estimate_host_bytes,
    host_infos,
    list_hosts,
    named_hosts,
)
from workers.placement import ModelNeeds, PlacementError, actor_options, options_on, replica_options
from workers.settings import Settings

logger = logging.getLogger(__name__)

REFRESH_S = 1.0
"""How often a pool reads its replicas' load and resizes their sets."""
INFO_TIMEOUT_S = 2.0
"""A replica that does not say its load in this long (starting, or on an unreachable node) counts as idle."""


@dataclass
class Replica:
    name: str
    handle: Any
    inflight: int = 0
    """Calls in flight to it from this process."""


def replica_name(model: ModelRef, index: int) -> str:
    return f"{HOST_PREFIX}{model.name}:{index}"


class HostPool:
    """The replicas of every model this process has called, found or started on demand, resized once a second."""

    def __init__(self, settings: Settings, store: StoreAddress, refresh_s: float = REFRESH_S) -> None:
        self.settings, self.store, self.refresh_s = settings, store, refresh_s
        self._models: dict[str, ModelRef] = {}
        self._replicas: dict[str, dict[str, Replica]] = {}
        """Model name -> replica name -> replica."""
        self._lock = threading.Lock()
        self._scaling = threading.Lock()
        self._refresher: threading.Thread | None = None

    @contextmanager
    def using(self, model: ModelRef, prefer: str | None = None) -> Iterator[Replica]:
        """The replica for one call, counted as in flight until the block ends."""
        replica = self.pick(model, prefer)
        try:
            yield replica
        finally:
            with self._lock:
                replica.inflight -= 1

    def pick(self, model: ModelRef, prefer: str | None = None) -> Replica:
        """``prefer`` (the replica that started this job before) while it lives, else the least busy replica as
        this process sees it; the model's first call starts its replicas. Counted in flight: ``using`` undoes it."""
        if not self._replicas.get(model.name):
            with self._scaling:  # the threads that arrive while the first call starts the set wait for it
                if not self._replicas.get(model.name):
                    self._resize(model, asked=True)
        self._start_refresher()
        with self._lock:
            replicas = self._replicas[model.name]
            replica = replicas.get(prefer or "") or min(replicas.values(), key=lambda r: r.inflight)
            replica.inflight += 1
        return replica

    def forget(self, model: ModelRef, name: str) -> None:
        """Drop a replica that died under a call; the next resize starts a new one if the set is short."""
        with self._lock:
            self._replicas.get(model.name, {}).pop(name, None)

    def replicas(self, model: ModelRef) -> list[str]:
        with self._lock:
            return sorted(self._replicas.get(model.name, {}))

    def resize(self, model: ModelRef, asked: bool = False) -> None:
        """Find the model's live replicas, read their load, start or stop replicas to fit it. A model with none
        left (unloaded for memory, or its one node lost) is started again only when a call ``asked`` for it."""
        with self._scaling:
            self._resize(model, asked)

    def _resize(self, model: ModelRef, asked: bool) -> None:
        live = self._live(model)
        if not live and not asked:
            self._models.pop(model.name, None)
            return
        self._models[model.name] = model
        needs = ModelNeeds.of(model.path)
        options = actor_options(needs, self.settings, model.name)
        on_cpu, nodes = replica_options(needs, options)
        if not nodes:
            raise PlacementError(f"no live Ray node can hold model {model.name} ({options})")
        infos = _infos(live)
        config = self.settings.replica_config(model.name)
        most = max(config.max or len(nodes), config.min)
        load = sum(info["inflight"] for info in infos.values())
        wanted = min(max(config.min, math.ceil(load / self.settings.replica_target_inflight)), most)
        if len(live) < wanted:
            live |= self._start(model, (options, on_cpu), nodes, set(live), infos, wanted - len(live))
        elif len(live) > wanted:
            for name in self._idle(infos, len(live) - wanted):
                logger.info("stopping idle replica %s", name)
                ray.kill(live.pop(name))
        with self._lock:
            known = self._replicas.setdefault(model.name, {})
            for name in set(known) - set(live):
                del known[name]
            for name, handle in live.items():  # a name may now be a new actor: the handle follows it
                known.setdefault(name, Replica(name, handle)).handle = handle

    def _live(self, model: ModelRef) -> dict[str, Any]:
        prefix = replica_name(model, 0)[:-1]
        return named_hosts(self.settings.ray_namespace,
                           lambda name: name.startswith(prefix) and name[len(prefix):].isdigit())

    def _start(self, model: ModelRef, options: tuple[dict[str, Any], dict[str, Any]],
               nodes: dict[str, dict[str, float]], taken: set[str], infos: dict[str, dict[str, Any]],
               count: int) -> dict[str, Any]:
        """Start ``count`` replicas at the lowest free indexes, each on the node with the fewest of them (a node
        where the model gets the GPU it prefers first). ``options``: on a node with the GPU, on one without."""
        placed = {node: options_on(resources, options[1], options[0]) for node, resources in nodes.items()}
        mine = Counter(info["node_id"] for info in infos.values())
        every = Counter(host["node_id"] for host in list_hosts(self.settings.ray_namespace, INFO_TIMEOUT_S))
        started, index = {}, 0
        for _ in range(count):
            while replica_name(model, index) in taken:
                index += 1
            name = replica_name(model, index)
            node = min(nodes, key=lambda n: (mine[n], placed[n] is not options[0], every[n], n))
            mine[node] += 1
            every[node] += 1
            taken.add(name)
            self._make_room(node, estimate_host_bytes(model.path))
            logger.info("starting replica %s on node %s (%s)", name, node[:12], placed[node])
            started[name] = RemoteModelHost.options(
                name=name, namespace=self.settings.ray_namespace, lifetime="detached", get_if_exists=True,
                max_concurrency=1000, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
                **placed[node],
            ).remote(name, model.name, str(model.path), str(self.settings.artifacts_root),
                     self.settings.batch_config(model.name).model_dump(), self.settings.device,
                     self.settings.max_audio_seconds, self.store)
        return started

    def _idle(self, infos: dict[str, dict[str, Any]], count: int) -> list[str]:
        """Up to ``count`` replicas, highest index first, with nothing in flight for ``replica_idle_s``."""
        cutoff = time.time() - self.settings.replica_idle_s
        idle = [name for name, info in infos.items() if info["inflight"] == 0 and info["last_used"] < cutoff]
        return sorted(idle, key=lambda name: int(name.rsplit(":", 1)[1]), reverse=True)[:count]

    def _make_room(self, node: str, needed: int) -> None:
        """Kill the node's least recently used idle hosts until ``needed`` more bytes fit in its memory budget."""
        budget = self.settings.host_memory_budget_mb * 1024 * 1024
        hosts = [h for h in list_hosts(self.settings.ray_namespace, INFO_TIMEOUT_S) if h["node_id"] == node]
        used = sum(h["memory_bytes"] for h in hosts)
        for host in sorted(hosts, key=lambda h: h["last_used"]):
            if used + needed <= budget:
                break
            if host["inflight"] == 0:
                logger.info("unloading model host %s (LRU, memory budget)", host["name"])
                ray.kill(host["handle"])
                used -= host["memory_bytes"]
                with self._lock:
                    self._replicas.get(host["model"], {}).pop(host["name"], None)

    def _start_refresher(self) -> None:
        with self._lock:
            if self._refresher is None:
                self._refresher = threading.Thread(target=self._refresh_forever, name="replicas", daemon=True)
                self._refresher.start()

    def _refresh_forever(self) -> None:
        """Until this process leaves Ray (``ray.shutdown``: the embedded runtime stopping, a worker exiting)."""
        while True:
            time.sleep(self.refresh_s)
            for model in list(self._models.values()):
                if not ray.is_initialized():
                    return
                try:
                    self.resize(model)
                except Exception:  # Ray or a node briefly unreachable: the next pass tries again
                    if ray.is_initialized():
                        logger.exception("resizing the replicas of %s failed", model.name)


def _infos(live: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each replica's ``info()``; one that does not answer in time counts as idle, on an unknown node."""
    unknown = {"inflight": 0, "node_id": "", "last_used": time.time()}
    return {name: info or unknown for name, info in host_infos(live, INFO_TIMEOUT_S).items()}
