"""A small Python client of the REST API (used by ``mediaforge batch --server``).

    client = MediaforgeClient("http://localhost:8000", api_key="...")
    audio = client.upload(Path("clip.wav"))
    job = client.wait(client.submit({"kind": "audio.tokenize", "model": "wavtokenizer-75",
                                     "inputs": {"audio": audio["id"]}})["id"])
    client.download(job["outputs"]["tokens"], Path("out"))  # -> out/tokens.safetensors
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "cancelled")


class ClientError(Exception):
    """A 4xx/5xx answer: ``status`` and the server's ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status, self.detail = status, detail

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}"


class MediaforgeClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0,
                 max_429_retries: int = 20) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.max_429_retries = max_429_retries

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call; 429 answers are retried after their Retry-After."""
        for _ in range(self.max_429_retries + 1):
            response = self.http.request(method, url, **kwargs)
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("retry-after", "1")))
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, str(detail))
        return response

    def upload(self, path: Path) -> dict[str, Any]:
        return self._request("POST", "/v1/artifacts", params={"filename": path.name},
                             content=path.read_bytes(), headers={"Content-Type": "application/octet-stream"}).json()

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/v1/jobs", json=spec, headers=headers).json()

    def get(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models").json()["data"]

    def wait(self, job_id: str, timeout_s: float = 3600.0) -> dict[str, Any]:
        """Follow the job's server-sent events until its final state (polling if the stream breaks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(
                        10.0, read=max(deadline - time.monotonic(), 1.0))) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ClientError(response.status_code, response.text)
                    for event, data in _sse(response):
                        if event == "final":
                            return json.loads(data)
            except httpx.TransportError:
                pass
            job = self.get(job_id)
            if job["state"] in TERMINAL:
                return job
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")

    def download(self, artifact_id: str, directory: Path) -> Path:
        """Into ``directory`` under the artifact's file name (from Content-Disposition); returns the path."""
        directory.mkdir(parents=True, exist_ok=True)
        with self.http.stream("GET", f"/v1/artifacts/{artifact_id}") as response:
            if response.status_code >= 400:
                response.read()
                raise ClientError(response.status_code, response.text)
            _, _, name = response.headers.get("content-disposition", "").partition("filename=")
            dest = directory / (Path(name.strip('"')).name or artifact_id)
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
        tmp.replace(dest)
        return dest


def _sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream; comments (keep-alives) are skipped."""
    event, data = "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
