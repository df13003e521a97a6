"""compose.yaml for real (issue 23): ``deploy/compose-up.sh`` starts a private dockerd, builds the one image and
brings the stack up; everything below goes through the API container's published port or the engine's CLI.

Needs root (dockerd) and Debian's docker.io, docker-compose and mmdebstrap (README "Fresh machine"); where the
engine or a container cannot start, the fixture fails with the script's own words, it does not skip.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.service_fixtures import wait_for, wav_bytes
from tests.workers.cluster import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# A project of its own: a stack someone runs on this engine (deploy/compose-up.sh, project "mediaforge") is left alone.
ENV = os.environ | {"COMPOSE_PROJECT_NAME": "mediaforge-test"}
FINISHED_S = 600.0  # an upper bound on waits, so a broken stack fails instead of hanging; not a timing assertion


def _lib(call: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``call "$@"`` with deploy/lib.sh sourced (its engine socket and Ray token)."""
    return subprocess.run(["bash", "-c", f'source deploy/lib.sh && {call} "$@"', "_", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)


def _stdout(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{' '.join(result.args[4:])}: {result.stderr[-3000:]}"
    return result.stdout


def docker(*args: str) -> str:
    return _stdout(_lib('"$DOCKER"', *args))


def compose(*args: str) -> str:
    return _stdout(_lib("compose", *args))


@dataclass
class Stack:
    http: httpx.Client

    def container(self, service: str) -> str:
        return compose("ps", "-q", service).strip()

    def start(self, service: str) -> None:
        """``docker start`` a stopped service's container and wait for its healthcheck (it rejoined Ray)."""
        container = self.container(service)
        docker("start", container)
        deadline = time.monotonic() + FINISHED_S
        while (health := docker("inspect", "-f", "{{.State.Health.Status}}", container).strip()) != "healthy":
            assert time.monotonic() < deadline, f"{service} is {health} after docker start: {compose('logs', service)}"
            time.sleep(1)

    def succeeded(self, kind: str) -> int:
        """Jobs of ``kind`` that entered ``succeeded`` (the store's counter behind /metrics): one per finish."""
        match = re.search(rf'mediaforge_jobs_total{{kind="{re.escape(kind)}",state="succeeded"}} (\S+)',
                          self.http.get("/metrics").text)
        return int(float(match.group(1))) if match else 0

    def submit(self, kind: str, inputs: dict[str, str]) -> str:
        response = self.http.post("/v1/jobs", json={"kind": kind, "model": "wavtokenizer-tiny", "inputs": inputs})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def finish(self, job_ids: list[str]) -> list[dict]:
        return [wait_for(self.http, job_id, timeout_s=FINISHED_S) for job_id in job_ids]


def _run_script(name: str, env: dict[str, str]) -> str:
    result = subprocess.run(["bash", str(REPO / "deploy" / name)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"deploy/{name} failed (exit {result.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = ENV | {"MEDIAFORGE_API_PORT": str(free_port())}
    try:
        started = time.monotonic()
        figures = [line for line in _run_script("compose-up.sh", env).splitlines() if line.startswith("mediaforge:")]
        print(*figures, f"compose-up.sh took {time.monotonic() - started:.0f} s in all", sep="\n")
        with httpx.Client(base_url=f"http://127.0.0.1:{env['MEDIAFORGE_API_PORT']}", timeout=60) as http:
            yield Stack(http)
    finally:
        _run_script("compose-down.sh", env)


def test_a_clip_tokenized_and_detokenized_back_to_wav(stack: Stack) -> None:
    clip = wav_bytes(2.0)
    audio_id = stack.http.post("/v1/artifacts", content=clip).json()["id"]
    [tokens] = stack.finish([stack.submit("audio.tokenize", {"audio": audio_id})])
    assert tokens["state"] == "succeeded", tokens
    [back] = stack.finish([stack.submit("audio.detokenize", {"tokens": tokens["outputs"]["tokens"]})])
    assert back["state"] == "succeeded", back
    wav = stack.http.get(f"/v1/artifacts/{back['outputs']['audio']}")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    samples, rate = sf.read(io.BytesIO(wav.content))
    assert abs(len(samples) / rate - 2.0) < 0.1, (len(samples), rate)


def test_ray_refuses_a_client_without_the_token(stack: Stack) -> None:
    """Token auth is on: the cluster's own token reads its status, another token is turned away."""
    head, status = stack.container("ray-head"), ["ray", "status", "--address", "ray-head:6380"]
    assert "Active:" in docker("exec", head, *status)
    refused = _lib('"$DOCKER"', "exec", "-e", "RAY_AUTH_TOKEN=not-the-token", head, *status)
    assert refused.returncode != 0 and "InvalidAuthToken" in refused.stderr, refused.stdout + refused.stderr
    print(f"compose: `ray status` with a wrong token: exit {refused.returncode}, InvalidAuthToken")


def test_jobs_survive_a_killed_audio_worker(stack: Stack) -> None:
    """20 jobs; the audio worker's container is killed (SIGKILL) while they run and started again: every job
    succeeds, each exactly once (the succeeded counter grows by 20, not more)."""
    before = stack.succeeded("audio.tokenize")
    audio_id = stack.http.post("/v1/artifacts", content=wav_bytes(20.0)).json()["id"]
    jobs = [stack.submit("audio.tokenize", {"audio": audio_id}) for _ in range(20)]
    deadline = time.monotonic() + FINISHED_S
    while not any(stack.http.get(f"/v1/jobs/{j}").json()["state"] == "running" for j in jobs):
        assert time.monotonic() < deadline, "no job started running"
        time.sleep(0.1)
    docker("kill", stack.container("worker-audio"))
    unfinished = sum(stack.http.get(f"/v1/jobs/{j}").json()["state"] in ("queued", "running") for j in jobs)
    stack.start("worker-audio")
    finals = stack.finish(jobs)
    assert [f["state"] for f in finals] == ["succeeded"] * 20, [(f["state"], f["message"]) for f in finals]
    assert stack.succeeded("audio.tokenize") - before == 20
    print(f"compose: killed worker-audio with {unfinished} of 20 jobs unfinished; all 20 succeeded once, "
          f"{sum(f['attempts'] > 1 for f in finals)} of them after a second attempt")
    assert unfinished, "every job had finished before the kill: the kill tested nothing"


def test_queued_jobs_survive_a_redis_restart(stack: Stack) -> None:
    """With the audio worker stopped, 10 jobs wait queued; Redis restarts (its append-only file on the volume):
    the 10 are still there, queued, and run once the worker is back."""
    docker("stop", stack.container("worker-audio"))
    audio_id = stack.http.post("/v1/artifacts", content=wav_bytes(1.0)).json()["id"]
    jobs = [stack.submit("audio.tokenize", {"audio": audio_id}) for _ in range(10)]
    docker("restart", stack.container("redis"))
    states = _states_after_redis_restart(stack, jobs)
    assert states == ["queued"] * 10, states
    stack.start("worker-audio")
    finals = stack.finish(jobs)
    assert [f["state"] for f in finals] == ["succeeded"] * 10, [(f["state"], f["message"]) for f in finals]
    print("compose: 10 jobs queued across a Redis restart, 10 succeeded")


def _states_after_redis_restart(stack: Stack, jobs: list[str]) -> list[str]:
    """The jobs' states once the API reaches the restarted Redis again (it answers 5xx until then)."""
    deadline = time.monotonic() + FINISHED_S
    while True:
        responses = [stack.http.get(f"/v1/jobs/{j}") for j in jobs]
        if all(r.status_code == 200 for r in responses):
            return [r.json()["state"] for r in responses]
        assert time.monotonic() < deadline, [r.text for r in responses]
        time.sleep(1)


def test_down_leaves_no_container_network_or_volume(stack: Stack) -> None:
    compose("down", "-v")
    label = f"label=com.docker.compose.project={ENV['COMPOSE_PROJECT_NAME']}"
    for what in ("ps", "network ls", "volume ls"):
        left = docker(*what.split(), "-q", "--filter", label, *(["-a"] if what == "ps" else []))
        assert not left.split(), f"docker {what} after down -v: {left}"
    print("compose: down -v left 0 containers, 0 networks, 0 volumes")
