"""WavTokenizer: faithfulness to the official code (golden vectors), shape contract, batching, save/load, safety."""

from __future__ import annotations

import math

import pytest
import torch

from tests.tokenizers_media.audio.wavtokenizer_golden import GOLDEN, compare_model, convert_recipe_model
from tokenizers_media.audio.wavtokenizer import PAD_CODE, WavTokenizer
from tokenizers_media.modeling import load_pretrained


@pytest.fixture(scope="module")
def tiny() -> WavTokenizer:
    """A tiny model with distinct codes: k-means (few iterations) on more latent-scale vectors than codes.

    (k-means on a batch smaller than the codebook duplicates codes, and float noise then breaks the exact ties.)
    """
    torch.manual_seed(0)
    model = WavTokenizer.from_preset("tiny", kmeans_iters=1).eval()
    scale = model.encode_latents(0.1 * torch.randn(1, 8000)).std()
    vectors = scale * torch.randn(model.codebook_size, model.config.latent_dim)
    model.feature_extractor.quantizer.codebook.init_embed_(vectors)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["75", "40"])
def test_golden_outputs_of_the_official_code(variant, tmp_path):
    # Recipe weights -> Lightning ckpt (with training-only keys) -> converter -> from_pretrained.
    model = convert_recipe_model(variant, seed=1234, workdir=tmp_path)
    assert model.token_rate == float(variant)
    results = compare_model(model, GOLDEN, variant, seed=1234)
    assert len(results) == 2
    for r in results:
        assert r.codes_equal, r.tag
        assert r.encoder_max_abs <= 1e-4 and r.audio_max_abs <= 1e-4, r


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 24000, 24001])
def test_frames_are_ceil_of_samples_over_hop(tiny, samples):
    wav = 0.1 * torch.randn(2, samples)
    codes = tiny.encode(wav)
    frames = math.ceil(samples / 320)
    assert codes.shape == (2, 1, frames) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < tiny.codebook_size
    assert tiny.decode(codes).shape == (2, frames * 320)
    if samples == 24001:
        assert frames == 76


def test_properties_and_presets():
    model = WavTokenizer.from_preset("tiny")
    assert (model.sample_rate, model.hop_length, model.token_rate, model.codebook_size) == (24000, 320, 75.0, 4096)
    paper40 = WavTokenizer.preset_config("paper-40")
    assert (paper40.hop_length, paper40.n_fft, paper40.encoder_ratios) == (600, 2400, (6, 5, 5, 4))
    with pytest.raises(ValueError, match="product of encoder_ratios"):
        WavTokenizer.preset_config("tiny").replace(hop_length=600)


def test_tiny_checkpoint_fits_in_10_mb(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size <= 10_000_000


def test_save_load_round_trip_is_exact(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, WavTokenizer) and not loaded.training and loaded.config == tiny.config
    for key, value in tiny.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    wav = 0.1 * torch.randn(1, 8000)
    codes = tiny.encode(wav)
    assert torch.equal(loaded.encode(wav), codes)
    assert torch.equal(loaded.decode(codes), tiny.decode(codes))


def test_inference_is_deterministic(tiny):
    wav = 0.1 * torch.randn(2, 9000)
    codes = tiny.encode(wav)
    assert torch.equal(tiny.encode(wav), codes)
    assert torch.equal(tiny.decode(codes), tiny.decode(codes))


def test_padded_batch_gives_each_clip_its_own_codes(tiny):
    # Lengths cover a multiple of the hop, odd remainders and clips shorter than the reflect padding.
    lengths = torch.tensor([24001, 7000, 640, 321, 5])
    clips = [0.1 * torch.randn(int(n)) for n in lengths]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    out = tiny.encode_with_lengths(batch, lengths)
    latents = tiny.encode_latents(batch, lengths)
    assert out.codes.shape == (5, 1, 76)
    assert out.num_frames.tolist() == [math.ceil(int(n) / 320) for n in lengths]
    for i, clip in enumerate(clips):
        frames = int(out.num_frames[i])
        alone = tiny.encode(clip[None])
        assert torch.equal(out.codes[i : i + 1, :, :frames], alone), f"clip {i}"
        assert bool((out.codes[i, :, frames:] == PAD_CODE).all())
        torch.testing.assert_close(latents[i, :, :frames], tiny.encode_latents(clip[None])[0], atol=1e-5, rtol=1e-5)


def test_full_lengths_equal_no_lengths(tiny):
    wav = 0.1 * torch.randn(3, 5000)
    assert torch.equal(tiny.encode(wav, lengths=torch.tensor([5000, 5000, 5000])), tiny.encode(wav))


def test_eval_never_initialises_the_codebook():
    model = WavTokenizer.from_preset("tiny").eval()
    codebook = model.feature_extractor.quantizer.codebook
    with pytest.raises(RuntimeError, match="not initialised"):
        model.encode(0.1 * torch.randn(1, 4000))
    with pytest.raises(RuntimeError, match="not initialised"):
        model(0.1 * torch.randn(1, 4000))
    assert not codebook.is_initialized and not bool(codebook.embed.any())


def test_training_forward_initialises_then_updates_the_codebook():
    torch.manual_seed(1)
    model = WavTokenizer.from_preset("tiny", kmeans_iters=3, codebook_size=64).train()
    codebook = model.feature_extractor.quantizer.codebook
    out = model(0.1 * torch.randn(2, 16000))
    assert codebook.is_initialized
    assert out.audio.shape == (2, 16000) and out.codes.shape == (2, 1, 50)
    assert out.features.shape == out.latents.shape == (2, 64, 50)
    before = codebook.embed.clone()
    out = model(0.1 * torch.randn(2, 16000))
    assert not torch.equal(codebook.embed, before)  # EMA step (and dead-code replacement) moved the codes
    assert torch.isfinite(out.commit_loss) and float(out.commit_loss.detach()) > 0
    (out.audio.square().mean() + out.commit_loss).backward()
    first_conv = model.feature_extractor.encoder.model[0].conv.conv
    assert first_conv.weight_v.grad is not None and bool(first_conv.weight_v.grad.abs().sum() > 0)


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(ValueError, match="batch, samples"):
        tiny.encode(torch.randn(100))
    with pytest.raises(ValueError, match="floating-point"):
        tiny.encode(torch.ones(1, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="at least one sample"):
        tiny.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="lengths must lie"):
        tiny.encode(torch.zeros(2, 100), lengths=torch.tensor([100, 101]))
    with pytest.raises(ValueError, match="lengths must be an integer"):
        tiny.encode(torch.zeros(2, 100), lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4096\)"):
        tiny.decode(torch.tensor([[[0, 4096]]]))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4096\)"):
        tiny.decode(torch.tensor([[[PAD_CODE, 3]]]))
    with pytest.raises(ValueError, match="batch, 1, frames"):
        tiny.decode(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="bandwidth_id"):
        tiny.decode(torch.zeros(1, 1, 5, dtype=torch.long), bandwidth_id=4)


def test_folded_weight_norm_follows_parameter_updates(tiny):
    conv = tiny.feature_extractor.encoder.model[0].conv.conv
    with torch.inference_mode():
        folded = conv.weight()
    torch.testing.assert_close(folded, conv.compute_weight().detach())
    original = conv.weight_g.detach().clone()
    try:
        with torch.no_grad():
            conv.weight_g.mul_(2.0)
            torch.testing.assert_close(conv.weight(), 2.0 * folded)  # cache rebuilt after the in-place update
    finally:
        with torch.no_grad():
            conv.weight_g.copy_(original)
    with torch.no_grad():
        torch.testing.assert_close(conv.weight(), folded)
