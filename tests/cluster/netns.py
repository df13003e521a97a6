"""A cluster of separate hosts on one machine: Linux network namespaces on a bridge, one address each.

Each host is a namespace ``mf<tag>-<name>`` whose veth is plugged into a bridge of the run's own in the root
namespace; the bridge holds ``.1`` (the test process's address on it) and is each host's default route, so Ray's
node-IP detection (a UDP connect) picks the host's own address. Every process of a host starts inside its
namespace (``ip netns exec``), so ``Host.kill`` (SIGKILL to all of ``ip netns pids``) is a host losing power and
``Host.cut`` a partition (its link down) until ``Host.restore``. Names carry a random tag, so runs never collide,
and ``Net.down`` (also registered with atexit) removes every namespace, link and firewall rule the run made.

``NetCluster`` puts the service's roles on such hosts, every timeout at its default: Redis (append-only file on),
a zero-CPU Ray head, Ray worker nodes (one may advertise a GPU), Celery hosts and the API, each of those two
joining Ray as a zero-CPU node first, one shared artifact directory (the namespaces share the filesystem). The
job helpers (submit, records, wait, run counts) are ``tests/workers/cluster.py``'s.

``python -m tests.cluster.netns mediaforge ARGS`` is ``mediaforge`` with the slow-echo test model registered;
``python -m tests.cluster.netns probe`` is a Ray driver that answers ``hosts`` and ``nodes`` on stdin with one
JSON line each (the test process stays out of Ray; the probe runs on the API host).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.service_fixtures import REPO
from tests.slow_pipeline import write_model_dir
from tests.workers.cluster import Cluster, clip, wait_until
from workers.placement import SERVING_FILE
from workers.store import JobStore

RAY = str(Path(sys.executable).with_name("ray"))
REDIS_PORT, RAY_PORT, API_PORT = 6379, 6380, 8000
OBJECT_STORE_BYTES = 80 * 2**20
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
PROBE_PREFIX = "@@ "


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=not check)


def _free_prefix() -> str:
    """A 10.x.y /24 that no interface of the machine uses."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    while True:
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}"
        if f" {prefix}." not in used:
            return prefix


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    """SIGTERM (``timeout``, a CI runner) as an exit, so ``finally`` blocks and atexit take the hosts down."""
    raise SystemExit(128 + signum)


class Host:
    """One namespace with one address; remembers the processes it started so they are reaped when killed."""

    def __init__(self, net: Net, name: str, address: str) -> None:
        self.net, self.name, self.ip = net, name, address
        self.ns, self.veth = f"mf{net.tag}-{name}", f"mf{net.tag}{name}"  # veth: at most 15 characters
        self.processes: list[subprocess.Popen] = []

    def create(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        ip("link", "set", self.veth, "master", self.net.bridge, "up")
        for args in (("link", "set", "lo", "up"), ("addr", "add", f"{self.ip}/24", "dev", "eth0"),
                     ("link", "set", "eth0", "up"), ("route", "add", "default", "via", self.net.gateway)):
            ip("-n", self.ns, *args)

    def spawn(self, argv: list[str], env: dict[str, str], log: Path, pipe: bool = False) -> subprocess.Popen:
        """``argv`` inside this host; its output appends to ``log`` (with ``pipe``, stdin and stdout are pipes)."""
        out = open(log, "ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], cwd=REPO, env=env,
                                   stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE if pipe else out, stderr=out, start_new_session=True,
                                   text=pipe)
        out.close()
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL every process in the namespace, again until none is left (a host that loses power)."""
        deadline = time.monotonic() + 30
        while pids := self.pids():
            assert time.monotonic() < deadline, f"{self.name}: processes outlive SIGKILL: {pids}"
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for process in self.processes:
            process.wait(timeout=30)
        self.processes.clear()

    def cut(self) -> None:
        """Take the host's link down: nothing reaches it or leaves it, its processes live on."""
        ip("link", "set", self.veth, "down")

    def restore(self) -> None:
        ip("link", "set", self.veth, "up")

    def remove(self) -> None:
        self.kill()
        # The veth goes first: a namespace another mount namespace still pins (a private dockerd's copy of
        # /run/netns) outlives ``netns del``, and would keep its end of the link up.
        ip("link", "del", self.veth, check=False)
        ip("netns", "del", self.ns, check=False)


class Net:
    """A bridge with a /24 of its own in the root namespace, and the hosts plugged into it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:4]
        self.bridge, self.prefix = f"mf{self.tag}br", _free_prefix()
        self.gateway = f"{self.prefix}.1"
        self.hosts: dict[str, Host] = {}
        self._rule: list[str] | None = None

    def up(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root (ip netns add)")
        atexit.register(self.down)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
                signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        if BRIDGE_NF.exists() and BRIDGE_NF.read_text().strip() == "1":
            # br_netfilter sends bridged frames through FORWARD, whose policy may drop them (Docker's does).
            self._rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            subprocess.run(["iptables", "-I", *self._rule], check=True)

    def add(self, name: str) -> Host:
        host = self.hosts[name] = Host(self, name, f"{self.prefix}.{len(self.hosts) + 2}")
        host.create()
        return host

    def down(self) -> None:
        for host in self.hosts.values():
            host.remove()
        self.hosts.clear()
        if self._rule is not None:
            subprocess.run(["iptables", "-D", *self._rule], check=False, capture_output=True)
            self._rule = None
        ip("link", "del", self.bridge, check=False)
        atexit.unregister(self.down)


class Probe:
    """The ``probe`` driver on a host, asked over its stdin; a reader thread keeps answers for ``ask``."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.answers = process, queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(180) == "ready", "the probe did not join Ray"

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(PROBE_PREFIX):
                self.answers.put(line.removeprefix(PROBE_PREFIX).strip())

    def _next(self, timeout_s: float) -> Any:
        return json.loads(self.answers.get(timeout=timeout_s))

    def ask(self, what: str, timeout_s: float = 60) -> list[dict[str, Any]]:
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        return self._next(timeout_s)


@dataclass
class Tally:
    """What happened to a scenario's jobs: counted from the job store and from the hosts' run log."""

    submitted: int
    succeeded: int
    failed: int
    lost: int
    """Not finished in time, or succeeded without the model ever running it."""
    ran_twice: int
    changed: int
    """Jobs whose final record differs from the first final record seen: run twice to a different result."""

    def line(self, scenario: str) -> str:
        return (f"multinode[{scenario}]: submitted {self.submitted}, succeeded {self.succeeded}, failed "
                f"{self.failed}, lost {self.lost}, ran twice {self.ran_twice} (to a different result {self.changed})")


class NetCluster(Cluster):
    """The service's roles on hosts of their own: ``redis``, ``head``, ``w1``.. (Ray worker nodes, ``gpu_node``
    advertising one GPU), ``c1``.. (Celery hosts), ``api`` (with the probe).

    ``Cluster``'s job helpers work unchanged; its ``__init__`` is not run, since it joins the test session's Ray
    and this cluster has a Ray of its own."""

    def __init__(self, root: Path, worker_nodes: int = 3, celery_hosts: int = 2, gpu_node: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root, self.broker, self.net = root, "redis", Net()
        self.namespace = f"multinode-{self.net.tag}"
        self.worker_nodes = [f"w{i}" for i in range(1, worker_nodes + 1)]
        self.celery = [f"c{i}" for i in range(1, celery_hosts + 1)]
        self.gpu_node, self.extra_env = gpu_node, env or {}
        self.run_log, self.zoo = root / "runs.log", root / "zoo"
        # No GPU wanted: a model that prefers one (the default) takes only GPU nodes once any node advertises one.
        slow_echo = write_model_dir(self.zoo / "slow-echo", run_log=self.run_log)
        (slow_echo / SERVING_FILE).write_text(json.dumps({"gpu": "none"}))
        self.ray_dirs = Path(f"/tmp/mf{self.net.tag}")  # short: Ray's socket paths must fit in 107 characters
        self.logs: list[Path] = []
        self.store: JobStore | None = None
        self.probe: Probe | None = None
        self.env: dict[str, str] = {}

    # -- hosts and their roles ------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def start(self) -> None:
        self.net.up()
        for name in ["redis", "head", *self.worker_nodes, *self.celery, "api"]:
            self.net.add(name)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIAFORGE_", "RAY_"))}  # defaults
        self.env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
                    "RAY_ADDRESS": f"{self.host('head').ip}:{RAY_PORT}", "PYTHONPATH": str(REPO),
                    "MEDIAFORGE_REDIS_URL": f"redis://{self.host('redis').ip}:{REDIS_PORT}/0",
                    "MEDIAFORGE_MODELS_DIR": str(self.zoo), "MEDIAFORGE_DATA_DIR": str(self.root / "data"),
                    "MEDIAFORGE_ARTIFACTS_DIR": str(self.root / "artifacts"),
                    "MEDIAFORGE_RAY_NAMESPACE": self.namespace, **self.extra_env}
        self.start_redis()
        self.store = JobStore.from_url(self.env["MEDIAFORGE_REDIS_URL"])
        self._wait_ray([self._start_ray("head")])
        self._wait_ray([self._start_ray(name) for name in [*self.worker_nodes, *self.celery, "api"]])
        for name in self.celery:
            self._spawn_celery(name)
        self._spawn_api()
        self.probe = Probe(self._spawn("api", "probe", [sys.executable, "-m", "tests.cluster.netns", "probe"],
                                       pipe=True))
        wait_until(lambda: len(self.alive_nodes()) == len(self.net.hosts) - 1, 120, "every Ray node to join")

    def restart(self, name: str) -> None:
        """Start a killed host's processes again (its role from its name)."""
        if name == "redis":
            self.start_redis()
            return
        self._wait_ray([self._start_ray(name)])
        if name in self.celery:
            self._spawn_celery(name)

    def start_redis(self) -> None:
        host = self.host("redis")
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        self._spawn("redis", "redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", host.ip, "--dir",
                                       str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                       "--protected-mode", "no"])
        client = redis.Redis.from_url(self.env["MEDIAFORGE_REDIS_URL"])
        wait_until(lambda: client.ping(), 30, "redis-server to answer")

    def _start_ray(self, name: str) -> tuple[Host, int]:
        """``ray start`` on host ``name``; returns the host and where this start's output begins in its log."""
        host = self.host(name)
        argv = [RAY, "start", "--block", "--node-ip-address", host.ip, "--temp-dir", str(self.ray_dirs / name),
                f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
                "--include-log-monitor=false"]
        if name == "head":
            argv += ["--head", f"--port={RAY_PORT}", "--num-cpus=0", "--include-dashboard=false"]
        else:
            # Model hosts need 0.01 CPU: only worker nodes (1 CPU each) get one, never a Celery or API host.
            argv += [f"--address={self.env['RAY_ADDRESS']}", f"--num-cpus={int(name in self.worker_nodes)}"]
        if name == self.gpu_node:
            argv.append("--num-gpus=1")
        log = self._log(name, "ray")
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(name, "ray", argv)
        return host, offset

    def _wait_ray(self, starts: list[tuple[Host, int]]) -> None:
        for host, offset in starts:
            wait_until(functools.partial(self._ray_started, host, offset), 180, f"Ray to start on {host.name}")

    def _ray_started(self, host: Host, offset: int) -> bool:
        text = self._log(host.name, "ray").read_bytes()[offset:].decode(errors="replace")
        assert host.processes[-1].poll() is None, f"ray start failed on {host.name}:\n{text[-3000:]}"
        return "Ray runtime started" in text

    def _spawn_celery(self, name: str) -> None:
        self._spawn(name, "worker", self.mediaforge_argv("worker", "--queues", "audio", "--loglevel", "WARNING"))

    def _spawn_api(self) -> None:
        self._spawn("api", "serve", self.mediaforge_argv("serve", "--host", self.host("api").ip, "--port",
                                                         str(API_PORT), "--log-level", "warning"))
        wait_until(lambda: httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200, 180,
                   "the API to start")

    @staticmethod
    def mediaforge_argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "tests.cluster.netns", "mediaforge", *args]

    def _log(self, name: str, role: str) -> Path:
        (self.root / "logs").mkdir(exist_ok=True)
        return self.root / "logs" / f"{name}-{role}.log"

    def _spawn(self, name: str, role: str, argv: list[str], pipe: bool = False) -> subprocess.Popen:
        log = self._log(name, role)
        if log not in self.logs:
            self.logs.append(log)
        return self.host(name).spawn(argv, self.env, log, pipe=pipe)

    @property
    def api_url(self) -> str:
        return f"http://{self.host('api').ip}:{API_PORT}"

    def stop(self) -> None:
        self.net.down()
        shutil.rmtree(self.ray_dirs, ignore_errors=True)
        # `ray start` leaves the head's address for later ray.init() calls on this machine: not ours to leave.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and self.net.prefix in current.read_text(errors="replace"):
            current.unlink(missing_ok=True)

    # -- what Ray sees ---------------------------------------------------------------------------------------
    def hosts(self) -> list[dict[str, Any]]:
        """Every live model host (replica) with its ``info()``, as ``workers.hosts.list_hosts`` gives it."""
        assert self.probe is not None
        return self.probe.ask("hosts")

    def alive_nodes(self) -> dict[str, str]:
        """Live Ray node id -> the name of its host."""
        assert self.probe is not None
        by_ip = {host.ip: name for name, host in self.net.hosts.items()}
        return {n["node_id"]: by_ip.get(n["ip"], n["ip"]) for n in self.probe.ask("nodes") if n["alive"]}

    def replicas(self, model: str = "slow-echo") -> list[str]:
        """The host name of each live replica of ``model``, by the node it runs on."""
        nodes = self.alive_nodes()
        return sorted(nodes.get(h["node_id"], "dead") for h in self.hosts() if h["model"] == model)

    # -- jobs --------------------------------------------------------------------------------------------------
    def submit_to(self, model: str, count: int, params: dict[str, Any], seconds: float = 0.2) -> dict[str, int]:
        """``count`` audio.tokenize jobs on ``model``, each on a clip of its own length; job id -> sample count."""
        jobs = {}
        with httpx.Client(base_url=self.api_url, timeout=60) as http:
            for i in range(count):
                samples = int(seconds * 24000) + 240 * i
                response = http.post("/v1/artifacts", params={"filename": f"c{i}.wav"}, content=clip(samples))
                assert response.status_code == 201, response.text
                body = {"kind": "audio.tokenize", "model": model, "priority": "batch",
                        "inputs": {"audio": response.json()["id"]}, "params": params}
                response = http.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                jobs[response.json()["id"]] = samples
        return jobs

    def tally(self, jobs: dict[str, int], timeout_s: float = 300) -> Tally:
        """Wait for every job to finish (Redis may be away meanwhile), then until no host has calls in flight (a
        late second answer lands first); count them, and the jobs whose final record changed after it was seen."""
        first: dict[str, tuple[str, dict[str, str]]] = {}
        deadline = time.monotonic() + timeout_s
        while len(first) < len(jobs) and time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                for job_id, record in zip(jobs, self.records(jobs), strict=True):
                    if record is not None and record.finished:
                        first.setdefault(job_id, (record.state, record.outputs))
            time.sleep(0.5)
        wait_until(lambda: not any(h["inflight"] for h in self.hosts()), 120, "the hosts to be idle")
        finals = dict(zip(jobs, self.records(jobs), strict=True))
        runs = self.runs()
        states = Counter(r.state for r in finals.values() if r is not None and r.finished)
        lost = len(jobs) - len(first) + sum(1 for job_id, samples in jobs.items()
                                            if job_id in first and first[job_id][0] == "succeeded"
                                            and runs[samples] == 0)
        changed = sum(1 for job_id, seen in first.items()
                      if finals[job_id] is None or (finals[job_id].state, finals[job_id].outputs) != seen)
        return Tally(len(jobs), states["succeeded"], states["failed"], lost,
                     sum(1 for samples in jobs.values() if runs[samples] > 1), changed)


def _probe() -> None:
    """Answer ``hosts`` (``list_hosts`` without the handles) and ``nodes`` (Ray's node table) on stdin."""
    import ray

    from workers.hosts import init_ray, list_hosts

    namespace = os.environ["MEDIAFORGE_RAY_NAMESPACE"]
    init_ray(address=os.environ["RAY_ADDRESS"], namespace=namespace, log_to_driver=False, configure_logging=False)
    print(PROBE_PREFIX + json.dumps("ready"), flush=True)
    for line in sys.stdin:
        if line.strip() == "hosts":
            answer = [{k: v for k, v in host.items() if k != "handle"} for host in list_hosts(namespace)]
        else:
            answer = [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
                       "resources": n["Resources"]} for n in ray.nodes()]
        print(PROBE_PREFIX + json.dumps(answer), flush=True)


def _mediaforge(args: list[str]) -> None:
    import tests.slow_pipeline as slow_pipeline
    from api.cli import main

    slow_pipeline.register()
    sys.argv = ["mediaforge", *args]
    main()


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        _probe()
    else:
        _mediaforge(sys.argv[2:])
