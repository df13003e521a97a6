"""Ray Serve handle vs a named Ray actor as the model host's front, measured side by side in one run (issue 20).

A model host today is one named async actor per model; replicas across nodes would come from Ray Serve (its
deployments, replicas, autoscaling and routing). What Serve costs per call decides whether the service's
overhead target (about 8 ms p50 per job on the 2-core VM) survives the move. Both fronts wrap the same async
class whose ``run`` answers at once, so only the call path is measured: sequential round trips, the two taking
turns, and 32 calls in flight.

    pip install -e '.[serve]' && python benchmarks/serve_vs_actor.py [--calls 300] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray
from ray import serve


class Echo:
    async def run(self, job_id: str, payload: dict) -> dict:
        return {"job_id": job_id, **payload}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    actor = ray.remote(Echo).options(max_concurrency=1000, num_cpus=0).remote()
    handle = serve.run(serve.deployment(Echo).options(ray_actor_options={"num_cpus": 0},
                                                       max_ongoing_requests=1000).bind(),
                       name="echo", route_prefix=None)
    payload = {"inputs": {"audio": ["/data/artifacts/ab/abcdef", "clip.wav"]}, "params": {}}
    for _ in range(20):  # warm both paths
        ray.get(actor.run.remote("w", payload))
        handle.run.remote("w", payload).result()

    actor_ms, serve_ms = [], []
    for i in range(args.calls):
        actor_ms.append(timed(lambda i=i: ray.get(actor.run.remote(f"a{i}", payload))))
        serve_ms.append(timed(lambda i=i: handle.run.remote(f"s{i}", payload).result()))

    def burst_actor() -> None:
        ray.get([actor.run.remote(f"b{i}", payload) for i in range(args.in_flight)])

    def burst_serve() -> None:
        for response in [handle.run.remote(f"b{i}", payload) for i in range(args.in_flight)]:
            response.result()

    rounds = max(args.calls // args.in_flight, 5)
    actor_burst = statistics.median(timed(burst_actor) for _ in range(rounds))
    serve_burst = statistics.median(timed(burst_serve) for _ in range(rounds))

    print(f"sequential round trip ({args.calls} calls each, taking turns)")
    for name, values in (("named actor", actor_ms), ("Serve handle", serve_ms)):
        print(f"  {name:<13} p50 {percentile(values, 50):6.2f} ms   p95 {percentile(values, 95):6.2f} ms")
    print(f"  Serve / actor p50 x{percentile(serve_ms, 50) / percentile(actor_ms, 50):.2f}, "
          f"+{percentile(serve_ms, 50) - percentile(actor_ms, 50):.2f} ms per call")
    print(f"{args.in_flight} calls in flight (median of {rounds} bursts)")
    print(f"  named actor {actor_burst:7.1f} ms   Serve handle {serve_burst:7.1f} ms   Serve / actor "
          f"x{serve_burst / actor_burst:.2f}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
