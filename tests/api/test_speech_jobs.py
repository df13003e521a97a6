"""speech.chat and speech.generate through the real service: API -> Redis -> Celery -> Ray -> Flow-Omni."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines.flow_omni.streams import STATE_STOP
from tests.pipelines.flow_omni.test_flow_omni import small_model
from tests.service_fixtures import submit, upload, wait_for, wav_bytes


@pytest.fixture(scope="module")
def flow_omni_name(service_settings) -> str:
    """A tiny random Flow-Omni in the test zoo that never says ``stop``, so every answer runs to its length cap."""
    name = "flow-omni-test"
    model = small_model(n_mels=80)
    with torch.no_grad():
        model.state_head.bias[STATE_STOP] = -100.0
    model.save_pretrained(Path(os.environ["MEDIAFORGE_MODELS_DIR"]) / name)
    return name


def test_speech_chat_streams_text_in_events_and_returns_text_and_wav(http: httpx.Client, flow_omni_name: str) -> None:
    audio_id = upload(http, wav_bytes(0.8, rate=16_000))
    job = submit(http, {"kind": "speech.chat", "model": flow_omni_name, "inputs": {"audio": audio_id},
                        "params": {"vocoder": "griffin-lim", "max_seconds": 6.0, "seed": 2}})
    events = []
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.split(":", 1)[1]))
    assert events[-1]["state"] == "succeeded", events
    assert any("text:" in (e.get("message") or "") for e in events if e["state"] == "running")
    done = wait_for(http, job["id"])
    assert set(done["outputs"]) == {"text", "audio"}
    text = http.get(f"/v1/artifacts/{done['outputs']['text']}")
    assert text.status_code == 200
    samples, rate = sf.read(io.BytesIO(http.get(f"/v1/artifacts/{done['outputs']['audio']}").content))
    assert rate == 24_000 and samples.shape[0] == 6 * 24_000 and np.isfinite(samples).all()


def test_speech_generate_bad_text_fails_cleanly(http: httpx.Client, flow_omni_name: str) -> None:
    job = submit(http, {"kind": "speech.generate", "model": flow_omni_name,
                        "params": {"text": "naïve café", "vocoder": "griffin-lim"}})
    done = wait_for(http, job["id"])
    assert done["state"] == "failed" and "alphabet" in done["error"]["message"]
    ok = wait_for(http, submit(http, {"kind": "speech.generate", "model": flow_omni_name,
                                      "params": {"text": "a red cat", "vocoder": "griffin-lim",
                                                 "max_seconds": 0.5}})["id"])
    assert ok["state"] == "succeeded", ok["error"]


def test_speech_params_are_validated_at_submit(http: httpx.Client, flow_omni_name: str) -> None:
    response = http.post("/v1/jobs", json={"kind": "speech.generate", "model": flow_omni_name,
                                           "params": {"text": "hi", "volume": 11}})
    assert response.status_code == 422 and "volume" in response.text
