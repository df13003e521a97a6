"""TexTok: shapes, captions required, text changes the tokens, save/load, determinism, VQ variant, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.data.shapes import ShapesWorld
from tokenizers_media.image.textok import TexTok, TexTokConfig
from tokenizers_media.modeling import load_pretrained

SMALL = {"encoder_width": 32, "encoder_depth": 1, "encoder_heads": 2, "decoder_width": 32,
         "decoder_depth": 1, "decoder_heads": 2, "text_encoder": "learned", "text_dim": 16}



pytestmark = pytest.mark.usefixtures("one_thread")

def _model(**overrides) -> TexTok:
    torch.manual_seed(0)
    return TexTok.from_preset("tiny", **{**SMALL, **overrides}).eval()


@pytest.fixture(scope="module")
def batch():
    return ShapesWorld(32).batch("train", 0, 3)


@pytest.mark.parametrize("tokens", [32, 64])
def test_encode_decode_shapes(batch, tokens: int) -> None:
    model = _model(num_latent_tokens=tokens)
    enc = model.encode(batch.images, batch.captions)
    assert enc.latents.shape == (3, tokens, 8) and enc.codes is None and enc.loss.ndim == 0
    images = model.decode(enc.latents, batch.captions)
    assert images.shape == (3, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_caption_is_required_at_encode_and_decode(batch) -> None:
    model = _model()
    with pytest.raises(ValueError, match="needs a caption"):
        model.encode(batch.images)
    latents = model.encode(batch.images, batch.captions).latents
    with pytest.raises(ValueError, match="needs a caption"):
        model.decode(latents)
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        model.decode(latents, batch.captions[:2])
    with pytest.raises(ValueError, match="non-empty caption"):
        model.encode(batch.images, ["a red circle", "", "x"])
    with pytest.raises(ValueError, match="at most 128"):
        model.encode(batch.images[:1], ["word " * 129])


def test_text_changes_tokens_and_pixels(batch) -> None:
    model = _model()
    other = ["a small white cross at the top"] * 3
    a, b = model.encode(batch.images, batch.captions).latents, model.encode(batch.images, other).latents
    assert not torch.allclose(a, b)
    assert not torch.allclose(model.decode(a, batch.captions), model.decode(a, other))


def test_no_text_ablation_ignores_captions(batch) -> None:
    model = _model(text_conditioning=False)
    assert torch.equal(model.encode(batch.images).latents, model.encode(batch.images, ["x"] * 3).latents)


def test_deterministic_encode_and_seeded_sampling(batch) -> None:
    model = _model()
    assert torch.equal(model.encode(batch.images, batch.captions).latents,
                       model.encode(batch.images, batch.captions).latents)
    draw = [model.encode(batch.images, batch.captions, sample=True,
                         generator=torch.Generator().manual_seed(3)).latents for _ in range(2)]
    assert torch.equal(draw[0], draw[1])


def test_save_load_round_trip(tmp_path: Path, batch) -> None:
    model = _model()
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, TexTok) and loaded.config == model.config
    out_a = model.decode(model.encode(batch.images, batch.captions).latents, batch.captions)
    out_b = loaded.decode(loaded.encode(batch.images, batch.captions).latents, batch.captions)
    assert torch.equal(out_a, out_b)


def test_vq_bottleneck_codes_decode_like_their_vectors(batch) -> None:
    model = _model(bottleneck="vq", codebook_size=64)
    enc = model.encode(batch.images, batch.captions)
    assert enc.codes.shape == (3, 32) and enc.codes.dtype == torch.long
    assert torch.allclose(model.decode_codes(enc.codes, batch.captions),
                          model.decode(enc.latents, batch.captions), atol=1e-5)
    with pytest.raises(ValueError, match="vq bottleneck"):
        _model().decode_codes(enc.codes, batch.captions)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_latent_tokens 48"):
        TexTokConfig(num_latent_tokens=48)
    with pytest.raises(ValueError, match="text_encoder 't5'"):
        TexTokConfig(text_encoder="t5")
    paper = TexTok.preset_config("paper-B")
    assert (paper.image_size, paper.patch_size, paper.encoder_width, paper.encoder_depth) == (256, 8, 768, 12)
    tiny, tiny_64 = TexTok.preset_config("tiny"), TexTok.preset_config("tiny-64")
    assert (tiny_64.image_size, tiny_64.patch_size, tiny_64.num_patches) == (64, 8, tiny.num_patches)


def test_a_few_training_steps_reduce_the_loss(batch) -> None:
    model = _model().train()
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = model(batch.images, batch.captions, generator=torch.Generator().manual_seed(0))
        loss = (out.reconstruction - batch.images).pow(2).mean() + 1e-6 * out.encoding.loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
