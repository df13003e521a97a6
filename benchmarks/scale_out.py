"""Scale-out: jobs/s with 1, 2 and 3 Ray worker nodes, each a separate host (a Linux network namespace of a cluster
built by tests/cluster/netns.py: Redis, a Ray head, two Celery hosts of 32 threads and the API beside the nodes),
one replica of each model per node, enough jobs in flight to fill them (the two Celery hosts keep 64 in flight).

- slow-echo, latency-bound: a batch sleeps ``--seconds`` whatever its size (max batch ``--max-batch``), so a
  replica does max-batch / seconds jobs/s however few cores the machine has, and N nodes should do N times one
  node's rate. Target: >= 0.8 x linear at 3 nodes.
- wavtokenizer-tiny on 1 s clips, compute-bound: every node shares this machine's cores, so its figure is what
  they allow (on the 2-core VM, no more than one node's).

Rate = jobs / (last job finished - first job created), the same jobs per node in each run; a fresh cluster per
node count, its replicas started and warm before the clock starts. Needs root (``ip netns``).

    python -m benchmarks.scale_out [--nodes 1,2,3] [--seconds 2] [--max-batch 8] [--jobs-per-node 64]
                                   [--wav-jobs-per-node 32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.service import SHIPPED, tiny_model_dir
from tests.cluster.netns import NetCluster
from tests.workers.cluster import wait_until

WAV = "wavtokenizer-tiny"


def rate(cluster: NetCluster, model: str, count: int, params: dict, seconds: float) -> float:
    """jobs/s of ``count`` jobs on ``model`` submitted at once; every one must succeed."""
    jobs = cluster.submit_to(model, count, params, seconds=seconds)
    tally = cluster.tally(jobs)
    assert tally.succeeded == count, tally.line(model)
    records = cluster.records(jobs)
    return count / (max(r.finished_at for r in records) - min(r.created_at for r in records))


def measure(root: Path, nodes: int, wav_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    replicas = {"min": nodes, "max": nodes}
    env = {"MEDIAFORGE_REPLICAS": json.dumps({"slow-echo": replicas, WAV: replicas}),
           "MEDIAFORGE_BATCHING": json.dumps({"slow-echo": {"max_batch": args.max_batch}})}
    cluster = NetCluster(root / f"nodes{nodes}", worker_nodes=nodes, env=env)
    (cluster.zoo / WAV).symlink_to(wav_dir)
    echo = {"seconds": args.seconds, "steps": 10}
    with cluster.running():
        for model, params in (("slow-echo", echo), (WAV, {})):  # start the replicas, warm them
            rate(cluster, model, 2 * nodes, params, 1.0)
            wait_until(lambda m=model: len(cluster.replicas(m)) == nodes, 120, f"{nodes} replicas of {model}")
        return {"slow-echo": rate(cluster, "slow-echo", args.jobs_per_node * nodes, echo, 0.2),
                WAV: rate(cluster, WAV, args.wav_jobs_per_node * nodes, {}, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--seconds", type=float, default=2.0, help="slow-echo: sleep per batch")
    parser.add_argument("--max-batch", type=int, default=8, help="slow-echo: max batch")
    parser.add_argument("--jobs-per-node", type=int, default=64)
    parser.add_argument("--wav-jobs-per-node", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        root = Path(tmp)
        wav_dir = SHIPPED if SHIPPED.is_dir() else tiny_model_dir(root)
        rates = {}
        for nodes in (int(n) for n in args.nodes.split(",")):
            rates[nodes] = measure(root, nodes, wav_dir, args)
            print(f"{nodes} node(s): " + ", ".join(f"{m} {r:.2f} jobs/s" for m, r in rates[nodes].items()),
                  flush=True)
    base = min(rates)
    for model in ("slow-echo", WAV):
        cells = [f"{n} node(s) {r[model]:.2f} jobs/s ({r[model] / (rates[base][model] * n / base):.2f} x linear)"
                 for n, r in rates.items()]
        print(f"scale_out {model}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
