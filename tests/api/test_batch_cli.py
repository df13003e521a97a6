"""``mediaforge batch`` against the server: 20 lines (one bad), then resumed; results.jsonl, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import load_file
from typer.testing import CliRunner

from api.cli import app
from tests.service_fixtures import wav_bytes


def _write_jobs(tmp_path: Path) -> Path:
    clips = tmp_path / "clips"
    clips.mkdir()
    lines = []
    for i in range(19):
        (clips / f"c{i}.wav").write_bytes(wav_bytes(0.2 + 0.01 * i, freq=200.0 + 10 * i))
        model = "wavtokenizer-tiny" if i % 4 == 0 else "slow-echo"
        params = {} if model == "wavtokenizer-tiny" else {"seconds": 0.05, "steps": 1}
        lines.append(json.dumps({"kind": "audio.tokenize", "model": model, "inputs": {"audio": f"clips/c{i}.wav"},
                                 "params": params, "priority": "batch"}))
    lines.insert(7, json.dumps({"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": "clips/nope.wav"}}))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    return jobs


def _results(outdir: Path) -> dict[int, dict]:
    return {r["line"]: r for r in map(json.loads, (outdir / "results.jsonl").read_text().splitlines())}


def test_batch_runs_twenty_lines_then_resumes(api_url: str, tmp_path: Path) -> None:
    jobs, out = _write_jobs(tmp_path), tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["batch", str(jobs), "-o", str(out), "--server", api_url, "--concurrency", "6"])
    assert first.exit_code == 1, first.output
    results = _results(out)
    assert sorted(results) == list(range(1, 21))
    failed = [n for n, r in results.items() if r["state"] != "succeeded"]
    assert failed == [8] and "nope.wav" in results[8]["error"] and "line 8" in first.output
    for n, r in results.items():
        if n != 8:
            codes = load_file(out / r["outputs"]["tokens"])["codes"]
            assert r["outputs"]["tokens"] == f"{n:06d}/tokens.safetensors" and codes.ndim == 3
    done_before = {n: (out / r["outputs"]["tokens"]).stat().st_mtime_ns for n, r in results.items() if n != 8}

    # Fix the bad line and run again: only it runs; the 19 finished lines are skipped, their files untouched.
    (tmp_path / "clips" / "nope.wav").write_bytes(wav_bytes(0.3))
    second = runner.invoke(app, ["batch", str(jobs), "-o", str(out), "--server", api_url])
    assert second.exit_code == 0, second.output
    results = _results(out)
    assert len(results) == 20 and all(r["state"] == "succeeded" for r in results.values())
    assert {n: (out / r["outputs"]["tokens"]).stat().st_mtime_ns for n, r in results.items() if n != 8} == done_before
    assert "19" in second.output  # the summary counts the skipped lines
