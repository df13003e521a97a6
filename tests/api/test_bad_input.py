"""Bad input never gives a 500: each mistake answers 4xx with a message naming the problem."""

from __future__ import annotations

import ast

import httpx
import pytest

from tests.service_fixtures import upload, wav_bytes


@pytest.fixture(scope="module")
def ids(api_url: str) -> dict[str, str]:
    with httpx.Client(base_url=api_url, timeout=60) as http:
        return {"audio": upload(http, wav_bytes(0.2)), "text": upload(http, b"just some words", "notes.txt"),
                "garbage": upload(http, b"\x00\x01\x02\xff" * 16, "blob.bin")}


def _job(**overrides: object) -> dict[str, object]:
    return {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": "AUDIO"}} | overrides


CASES = {
    "unknown kind": (_job(kind="audio.teleport"), 422, "unknown job kind 'audio.teleport'"),
    "unknown model": (_job(model="no-such-model"), 422, "unknown model 'no-such-model'"),
    "model path not allowed": (_job(model="/etc"), 422, "unknown model '/etc'"),
    "unknown param": (_job(params={"volume": 11}), 422, "volume"),
    "bad param type": (_job(model="slow-echo", params={"seconds": "soon"}), 422, "seconds"),
    "param out of range": (_job(model="slow-echo", params={"seconds": -1}), 422, "seconds"),
    "unknown field": (_job(colour="blue"), 422, "colour"),
    "missing field": ({"kind": "audio.tokenize", "inputs": {}}, 422, "model"),
    "wrong input name": (_job(inputs={"sound": "AUDIO"}), 422, "takes inputs ['audio']"),
    "missing artifact": (_job(inputs={"audio": "0" * 64}), 422, "no artifact"),
    "not an artifact id": (_job(inputs={"audio": "../../etc/passwd"}), 422, "no artifact"),
    "wrong media type": (_job(inputs={"audio": "TEXT"}), 422, "text/plain"),
    "tokens expected": ({"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": "AUDIO"}},
                        422, "audio/wav"),
    "bad priority": (_job(priority="urgent"), 422, "priority"),
    "param naming a server directory": ({"kind": "speech.generate", "model": "flow-omni-tiny",
                                         "params": {"text": "hi", "vocoder": "/etc"}}, 422, "param vocoder"),
    "model name too long": (_job(model="m" * 500_000), 422, "model"),  # was a 500: "File name too long"
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_job_is_refused_with_a_named_problem(http: httpx.Client, ids: dict[str, str], name: str) -> None:
    body, code, needle = CASES[name]
    text = str(body).replace("'AUDIO'", repr(ids["audio"])).replace("'TEXT'", repr(ids["text"]))
    response = http.post("/v1/jobs", json=ast.literal_eval(text))
    assert response.status_code == code, response.text
    assert needle in response.json()["detail"]


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_json_is_422(http: httpx.Client, payload: bytes) -> None:
    response = http.post("/v1/jobs", content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"]


def test_garbage_audio_fails_the_job_not_the_server(http: httpx.Client, api_url: str) -> None:
    fake_wav = upload(http, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", "fake.wav")
    response = http.post("/v1/jobs", json=_job(inputs={"audio": fake_wav}))
    assert response.status_code == 202
    from tests.service_fixtures import wait_for

    job = wait_for(http, response.json()["id"])
    assert job["state"] == "failed" and job["error"]["type"] == "InputError"
    assert "fake.wav" in job["error"]["message"] and job["attempts"] == 1


def test_oversized_upload_is_413(http: httpx.Client, service_settings: object) -> None:
    limit = service_settings.max_upload_bytes  # type: ignore[attr-defined]
    response = http.post("/v1/artifacts", content=b"x" * (limit + 1))
    assert response.status_code == 413 and str(limit) in response.json()["detail"]
    files = {"file": ("big.wav", b"x" * (limit + 1), "audio/wav")}
    assert http.post("/v1/artifacts", files=files).status_code == 413


def test_upload_multipart_and_download(http: httpx.Client) -> None:
    data = wav_bytes(0.1)
    created = http.post("/v1/artifacts", files={"file": ("a b/../c.wav", data, "audio/wav")})
    assert created.status_code == 201
    meta = created.json()
    assert meta["media_type"] == "audio/wav" and meta["size"] == len(data) and meta["filename"] == "c.wav"
    fetched = http.get(meta["url"])
    assert fetched.content == data and fetched.headers["x-artifact-sha256"] == meta["sha256"]
    assert http.post("/v1/artifacts", content=b"").status_code == 422
    assert http.post("/v1/artifacts", files={"other": ("x", b"1")}).status_code == 422


@pytest.mark.parametrize("artifact_id", ["0" * 64, "..%2F..%2Fetc%2Fpasswd", "abc"])
def test_unknown_artifact_is_404(http: httpx.Client, artifact_id: str) -> None:
    assert http.get(f"/v1/artifacts/{artifact_id}").status_code == 404


def test_empty_upload_is_422_in_every_form(http: httpx.Client) -> None:
    for kwargs in ({"content": b""}, {"files": {"file": ("empty.wav", b"", "audio/wav")}}):
        response = http.post("/v1/artifacts", **kwargs)
        assert response.status_code == 422 and response.json()["detail"] == "the upload is empty", kwargs


def test_request_body_past_the_limit_is_413(http: httpx.Client, service_settings: object) -> None:
    limit = service_settings.max_request_bytes  # type: ignore[attr-defined]
    params = {f"p{i}": "x" * 1000 for i in range(10_000)}  # 10 MB of params
    response = http.post("/v1/jobs", json=_job(params=params))
    assert response.status_code == 413 and len(response.content) < 200
    assert response.json()["detail"] == f"the request body is larger than the limit of {limit} bytes"
    chunked = iter([b'{"kind": "', b"x" * limit, b'"}'])  # no Content-Length: counted as it arrives
    response = http.post("/v1/jobs", content=chunked, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert http.post("/v1/jobs", json=_job(params={"volume": "x" * (limit - 200)})).status_code == 422


@pytest.mark.parametrize("body", [_job(params={"v" * 500_000: 1}), _job(**{"c" * 500_000: "blue"})])
def test_error_body_is_bounded(http: httpx.Client, body: dict[str, object]) -> None:
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 422 and len(response.content) < 4096, response.content[:300]
    assert "…" in response.json()["detail"]


def test_not_found_detail_is_bounded(http: httpx.Client) -> None:
    response = http.get(f"/v1/jobs/{'j' * 8000}")
    assert response.status_code == 404 and len(response.content) < 4096
    assert response.json()["detail"].startswith("job jjj") and response.json()["detail"].endswith("…")
