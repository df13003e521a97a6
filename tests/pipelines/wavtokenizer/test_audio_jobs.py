from pathlib import Path

import pytest
import torch

from pipelines.base import InputError, Params, Request, model_fingerprint
from pipelines.media import Audio, Tokens
from pipelines.wavtokenizer.audio_detokenize import AudioDetokenizePipeline
from pipelines.wavtokenizer.audio_tokenize import AudioTokenizePipeline


@pytest.fixture(scope="module")
def tokens(wavtokenizer_tiny_dir: Path) -> Tokens:
    clip = Audio(torch.sin(torch.linspace(0, 400, 12000)) * 0.3, 16000)
    return AudioTokenizePipeline.load(wavtokenizer_tiny_dir).run([Request({"audio": clip}, Params())])[0]["tokens"]


def test_tokens_name_their_model_and_decode_to_the_original_length(wavtokenizer_tiny_dir: Path,
                                                                  tokens: Tokens) -> None:
    assert tokens.metadata["model"] == wavtokenizer_tiny_dir.name
    assert tokens.metadata["model_sha"] == model_fingerprint(wavtokenizer_tiny_dir)
    audio = AudioDetokenizePipeline.load(wavtokenizer_tiny_dir).run([Request({"tokens": tokens}, Params())])[0]
    assert audio["audio"].samples.numel() == 18000 and audio["audio"].sample_rate == 24000


def test_detokenize_refuses_tokens_of_another_model(wavtokenizer_tiny_dir: Path, tokens: Tokens) -> None:
    detokenize = AudioDetokenizePipeline.load(wavtokenizer_tiny_dir)
    foreign = Tokens(tokens.tensors, {**tokens.metadata, "model": "other", "model_sha": "0" * 16})
    with pytest.raises(InputError, match=r"made by model 'other' \(0{16}\), not by 'wavtokenizer-tiny'"):
        detokenize.check_request(Request({"tokens": foreign}, Params()))
    unsigned = Tokens(tokens.tensors, {})  # files without provenance (hand-made) are still decoded
    detokenize.check_request(Request({"tokens": unsigned}, Params()))


def test_fingerprint_follows_the_weights(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert len(first) == 16 and model_fingerprint(tmp_path) != first
