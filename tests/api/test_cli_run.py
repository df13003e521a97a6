"""``mediaforge run``: the in-process job path, outputs on disk, and clean errors for bad inputs."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open
from typer.testing import CliRunner

from api.cli import app
from api.cli.run import assign_inputs, parse_param
from pipelines.base import InputError

runner = CliRunner()


@pytest.fixture()
def clip(tmp_path):
    """1.3 s of a 44.1 kHz stereo tone: the pipeline must resample and mix it to 24 kHz mono."""
    t = np.arange(int(44100 * 1.3)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, np.stack([tone, tone], axis=1), 44100)
    return path


def test_tokenize_then_detokenize_round_trip(wavtokenizer_tiny_dir, clip, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "audio.tokenize", str(clip), "--model", str(wavtokenizer_tiny_dir),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    with safe_open(out / "tokens.safetensors", "np") as fh:
        codes, meta = fh.get_tensor("codes"), fh.metadata()
    samples_24k = round(44100 * 1.3 * 24000 / 44100)
    assert codes.shape == (1, 1, math.ceil(samples_24k / 320)) and codes.dtype == np.int64
    assert meta["sample_rate"] == "24000" and meta["token_rate"] == "75" and int(meta["samples"]) == samples_24k

    result = runner.invoke(app, ["run", "audio.detokenize", str(out / "tokens.safetensors"), "--model",
                                 str(wavtokenizer_tiny_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(io.BytesIO((out / "audio.wav").read_bytes()))
    assert rate == 24000 and audio.shape == (samples_24k,)


def test_bad_inputs_exit_2_with_a_named_problem(wavtokenizer_tiny_dir, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio")
    cases = [
        (["run", "audio.tokenize", str(junk)], "not a readable audio file"),
        (["run", "audio.tokenize", str(tmp_path / "missing.wav")], "does not exist"),
        (["run", "audio.transmogrify", str(junk)], "unknown job kind"),
        (["run", "audio.tokenize", str(junk), "-p", "speed=2"], "speed"),
        (["run", "audio.detokenize", str(junk)], "not a safetensors tokens file"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--model", str(wavtokenizer_tiny_dir), "-o", str(tmp_path / "o")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_unknown_model_is_named(tmp_path, clip):
    result = runner.invoke(app, ["run", "audio.tokenize", str(clip), "--model", "no-such-model", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output


def test_param_and_input_parsing():
    assert parse_param("steps=4") == ("steps", 4)
    assert parse_param("caption=a red circle") == ("caption", "a red circle")
    assert assign_inputs(["image", "tokens"], ["tokens=t.safetensors", "x.png"]) == {
        "tokens": "t.safetensors", "image": "x.png"}
    with pytest.raises(InputError, match="expected 1 input"):
        assign_inputs(["audio"], ["a.wav", "b.wav"])


def test_generation_kinds_take_no_input_files(tmp_path):
    result = runner.invoke(app, ["run", "image.generate", "--model", "xar-tiny", "-p", "class=0", "-p", "num_images=1",
                                 "-p", "num_inference_steps=2", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [p.suffix for p in tmp_path.iterdir()] == [".png"]
