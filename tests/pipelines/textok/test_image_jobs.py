"""image.tokenize / image.detokenize on TexTok, called directly through the registry."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from pipelines.base import InputError, Request
from pipelines.data.shapes import ShapesWorld
from pipelines.evaluation.metrics import psnr
from pipelines.media import Image, Tokens
from pipelines.registry import get_pipeline_class
from pipelines.zoo import resolve_model
from tokenizers_media.image.textok import TexTok
from workers.codecs import decode_tokens, encode_tokens

SMALL = {"encoder_width": 32, "encoder_depth": 1, "encoder_heads": 2, "decoder_width": 32,
         "decoder_depth": 1, "decoder_heads": 2, "text_encoder": "learned", "text_dim": 16}



pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("models") / "textok-test"
    TexTok.from_preset("tiny", **SMALL).save_pretrained(model_dir)
    tokenize = get_pipeline_class("image.tokenize", "TexTok").load(model_dir)
    detokenize = get_pipeline_class("image.detokenize", "TexTok").load(model_dir)
    return tokenize, detokenize


def _tokenize_request(pipe, pixels: torch.Tensor, caption: str) -> Request:
    return Request({"image": Image(pixels)}, pipe.params_model(caption=caption))


def test_tokenize_then_detokenize_any_size_image(pipelines) -> None:
    tokenize, detokenize = pipelines
    scene = ShapesWorld(64).batch("eval", 0, 2)
    odd = torch.rand(3, 50, 70)
    requests = [_tokenize_request(tokenize, scene.images[0], scene.captions[0]),
                _tokenize_request(tokenize, odd, "a small red circle")]
    results = tokenize.run(requests)
    tokens = results[0]["tokens"]
    assert tokens.tensors["latents"].shape == (1, 32, 8)
    assert tokens.metadata["caption"] == scene.captions[0] and tokens.metadata["image_size"] == "32"
    # Batched and alone give the same tokens.
    alone = tokenize.run(requests[1:])[0]["tokens"].tensors["latents"]
    assert torch.allclose(alone, results[1]["tokens"].tensors["latents"], atol=1e-5)
    # Through the tokens file format and back to an image.
    file_tokens = decode_tokens(encode_tokens(tokens), "tokens.safetensors")
    images = detokenize.run([Request({"tokens": file_tokens}, detokenize.params_model())])
    assert images[0]["image"].pixels.shape == (3, 32, 32)


def test_caption_errors_are_input_errors(pipelines) -> None:
    tokenize, detokenize = pipelines
    with pytest.raises(InputError, match="at most 128"):
        tokenize.run([_tokenize_request(tokenize, torch.rand(3, 32, 32), "shape " * 200)])
    with pytest.raises(ValidationError):
        tokenize.params_model()
    with pytest.raises(ValidationError):
        tokenize.params_model(caption="x", target_error=0.1)
    latents = Tokens({"latents": torch.zeros(1, 32, 8)}, {})
    with pytest.raises(InputError, match="caption"):
        detokenize.check_request(Request({"tokens": latents}, detokenize.params_model()))


def test_detokenize_rejects_foreign_or_malformed_tokens(pipelines) -> None:
    _, detokenize = pipelines
    params = detokenize.params_model(caption="a red circle")
    foreign = Tokens({"latents": torch.zeros(1, 32, 8)}, {"model": "other", "model_sha": "0" * 16})
    with pytest.raises(InputError, match="made by model 'other'"):
        detokenize.check_request(Request({"tokens": foreign}, params))
    with pytest.raises(InputError, match=r"shape \(1, 32, 8\)"):
        detokenize.check_request(Request({"tokens": Tokens({"latents": torch.zeros(1, 16, 8)})}, params))
    with pytest.raises(InputError, match="'latents' tensor"):
        detokenize.check_request(Request({"tokens": Tokens({"codes": torch.zeros(1, 32, dtype=torch.long)})}, params))


@pytest.mark.slow
def test_shipped_textok_tiny_serves_a_round_trip() -> None:
    ref = resolve_model("textok-tiny")
    assert ref.model_class == "TexTok"
    tokenize = get_pipeline_class("image.tokenize", ref.model_class).load(ref.path)
    detokenize = get_pipeline_class("image.detokenize", ref.model_class).load(ref.path)
    batch = ShapesWorld(32).batch("eval", 0, 8)
    tokens = tokenize.run([_tokenize_request(tokenize, img, cap) for img, cap in zip(batch.images,
                                                                                     batch.captions, strict=True)])
    images = detokenize.run([Request({"tokens": t["tokens"]}, detokenize.params_model()) for t in tokens])
    recon = torch.stack([r["image"].pixels for r in images])
    assert psnr(recon, batch.images).mean() > 24.0  # the card reports 26.8 dB on 512 held-out images
