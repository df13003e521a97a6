"""Workflows from the command line: ``mediaforge run --workflow`` in this process, and workflow lines of a batch
file through the REST server and through the embedded service's backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import soundfile as sf
from safetensors.numpy import load_file
from typer.testing import CliRunner

from api.cli import app
from api.cli.batch import LocalBackend, run_batch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKFLOWS = ["speech_roundtrip_workflow.json", "xar_karl_workflow.json", "speak_tokenize_workflow.json"]
runner = CliRunner()


def _results(outdir: Path) -> dict[int, dict[str, Any]]:
    return {r["line"]: r for r in map(json.loads, (outdir / "results.jsonl").read_text().splitlines())}


def test_run_workflow_writes_every_step_in_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--workflow", str(EXAMPLES / "speech_roundtrip_workflow.json"), "-o",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert load_file(out / "codes" / "tokens.safetensors")["codes"].ndim == 3
    audio, rate = sf.read(out / "speech" / "audio.wav")
    assert rate == 24000 and len(audio) > 0
    assert str(out / "speech" / "audio.wav") in result.output


def test_run_workflow_refuses_a_bad_workflow_before_any_step_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": {
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": "clip.wav"}},
        "img": {"kind": "image.detokenize", "model": "karl-tiny", "inputs": {"tokens": {"from": "codes",
                                                                                      "output": "tokens"}}}}}))
    cases = [
        (["--workflow", str(bad)], "step 'img' inputs.tokens: codes.tokens are tokens of model"),
        (["audio.tokenize", "--workflow", str(bad)], "--workflow takes no KIND"),
        ([], "give KIND and --model"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["run", *args, "-o", str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def _batch_file(tmp_path: Path) -> Path:
    """The three examples as lines (their files beside the batch file), an ordinary job, a bad workflow."""
    shutil.copy(EXAMPLES / "hello.wav", tmp_path / "hello.wav")
    lines = [json.dumps(json.loads((EXAMPLES / name).read_text())) for name in WORKFLOWS]
    lines.append(json.dumps({"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": "hello.wav"}}))
    lines.append(json.dumps({"steps": {"a": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny",
                                             "inputs": {"audio": {"from": "zz", "output": "audio"}}}}}))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    return jobs


def _check_batch(out: Path) -> None:
    results = _results(out)
    assert [results[n]["state"] for n in range(1, 6)] == ["succeeded"] * 4 + ["failed"], results
    assert "step 'a' inputs.audio: no step named 'zz'" in results[5]["error"]
    assert results[1]["outputs"] == {"speech.audio": "000001/speech/audio.wav"}
    assert results[2]["outputs"] == {"detokenize.image": "000002/detokenize/image.png"}
    assert results[3]["outputs"] == {"codes.tokens": "000003/codes/tokens.safetensors"}
    assert results[4]["outputs"] == {"tokens": "000004/tokens.safetensors"}
    assert sf.read(out / "000001/speech/audio.wav")[1] == 24000
    assert (out / "000002/detokenize/image.png").read_bytes().startswith(b"\x89PNG")
    assert load_file(out / "000003/codes/tokens.safetensors")["codes"].ndim == 3


def test_batch_workflow_lines_through_the_server_then_resumed(api_url: str, tmp_path: Path) -> None:
    jobs, out = _batch_file(tmp_path), tmp_path / "out"
    first = runner.invoke(app, ["batch", str(jobs), "-o", str(out), "--server", api_url, "--concurrency", "4"])
    assert first.exit_code == 1 and "line 5" in first.output, first.output
    _check_batch(out)
    done = (out / "000001/speech/audio.wav").stat().st_mtime_ns
    again = runner.invoke(app, ["batch", str(jobs), "-o", str(out), "--server", api_url])
    assert again.exit_code == 1
    assert (out / "000001/speech/audio.wav").stat().st_mtime_ns == done  # finished lines are skipped


def test_batch_workflow_lines_through_the_embedded_backend(service: Any, tmp_path: Path) -> None:
    jobs, out = _batch_file(tmp_path), tmp_path / "out"
    backend = LocalBackend(service)
    try:
        run_batch(backend, jobs, out, concurrency=4, timeout_s=120, show_progress=False)
    finally:
        backend.close()
    _check_batch(out)
