"""Official KARL: the released layout, golden vectors of the official code, batching with per-image masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tokenizers_media.image.karl_recipe import HALTING_BIAS, recipe_state_dict
from tokenizers_media.image.karl import PAD_CODE
from tokenizers_media.image.karl_official import KARLOfficial

GOLDEN = Path(__file__).parents[2] / "data" / "karl_golden"
REFERENCE = Path(__file__).parents[4] / "shared" / "reference"
PRESETS = {"vqgan": "paper-small", "vae": "paper-small-vae"}
CASES = [(256, 0.05), (128, 0.1)]
ACTIVE = {("vqgan", 256): 199, ("vqgan", 128): 112, ("vae", 256): 172, ("vae", 128): 108}


def recipe_model(preset: str, seed: int, halting_bias: float) -> KARLOfficial:
    """A model of ``preset`` holding the recipe weights (built on the meta device: no wasted init)."""
    with torch.device("meta"):
        model = KARLOfficial.from_preset(preset)
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(recipe_state_dict(layout, seed, halting_bias), strict=True, assign=True)
    return model.eval()


def _golden(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(GOLDEN / f"{name}.npy"))


@pytest.fixture(scope="module", params=sorted(PRESETS))
def golden_run(request: pytest.FixtureRequest) -> tuple[str, KARLOfficial, torch.Tensor, torch.Tensor]:
    torch.set_num_threads(1)
    variant = request.param
    model = recipe_model(PRESETS[variant], 1234, HALTING_BIAS[variant])
    images = _golden("input")
    with torch.no_grad():
        return variant, model, images, model.base.encode(images)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared reference layouts not present")
@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_layout_is_the_official_one(variant: str) -> None:
    with torch.device("meta"):
        model = KARLOfficial.from_preset(PRESETS[variant])
    official = json.loads((REFERENCE / f"karl_small_{variant}_state_dict.json").read_text())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == official
    assert list(model.state_dict()) == list(official)


def test_base_latent_matches_official(golden_run) -> None:
    variant, _, _, base_latent = golden_run
    assert (base_latent - _golden(f"base_latent_{variant}_seed1234")).abs().max() < 1e-4


@pytest.mark.parametrize(("budget", "target"), CASES)
def test_golden_case(golden_run, budget: int, target: float) -> None:
    """Halting, latents, codes, decoder input and reconstruction of one official case (full size, ~25 s)."""
    variant, model, images, base_latent = golden_run
    tag = f"{variant}_seed1234_T{budget}_eps{target}"
    with torch.no_grad():
        out = model.encode_latents(images, base_latent, model.error_bin(target, 1), budget)
        enc = model.encode(images, target_error=target, max_tokens=budget)
        base_input = model.decode_to_base(enc.latents, enc.mask)
        recon = model.base.decode(base_input)
    active = _golden(f"active_{tag}")
    assert (out.halt_probs - _golden(f"p_halt_{tag}")).abs().max() < 1e-4
    assert torch.equal(enc.mask, active) and int(enc.mask.sum()) == ACTIVE[variant, budget]
    assert not torch.equal(active[0], torch.arange(budget) < int(active.sum()))  # scattered, not a prefix
    assert (out.latents - _golden(f"latents_{tag}")).abs().max() < 1e-4
    if variant == "vqgan":
        assert torch.equal(enc.codes[active], _golden(f"codes_{tag}")[active])
        assert bool((enc.codes[~active] == PAD_CODE).all())
    assert (base_input - _golden(f"base_decoder_input_{tag}")).abs().max() < 1e-4
    assert (recon - _golden(f"recon_{tag}")).abs().max() < 1e-3
    decoded = model.decode(enc.codes if enc.codes is not None else enc.latents, enc.mask)
    assert (decoded - recon).abs().max() < 1e-5


@pytest.mark.parametrize("preset", ["tiny", "tiny-vae"])
def test_batched_encode_and_decode_equal_one_at_a_time(preset: str) -> None:
    torch.manual_seed(0)
    model = KARLOfficial.from_preset(preset).eval()
    with torch.no_grad():
        model.halting_mlp[2].bias.fill_(1.1)  # roughly half the positions halt
    images = torch.rand(3, 3, 32, 32)
    targets = torch.tensor([0.02, 0.1, 0.3])
    batch = model.encode(images, target_error=targets)
    assert 0 < int(batch.mask.sum()) < batch.mask.numel()
    tokens = batch.codes if batch.codes is not None else batch.latents
    recon = model.decode(tokens, batch.mask)
    for i in range(3):
        one = model.encode(images[i : i + 1], target_error=float(targets[i]))
        assert torch.equal(one.mask, batch.mask[i : i + 1])
        if one.codes is not None:
            assert torch.equal(one.codes, batch.codes[i : i + 1])
        alone = model.decode(tokens[i : i + 1], batch.mask[i : i + 1])
        assert (alone - recon[i : i + 1]).abs().max() < 1e-4  # batched matmuls round differently


def test_halted_slots_do_not_change_the_image() -> None:
    torch.manual_seed(1)
    model = KARLOfficial.from_preset("tiny").eval()
    codes = torch.randint(0, model.config.codebook_size, (1, 8))
    mask = torch.tensor([[True, False, True, True, False, True, False, True]])
    other = codes.masked_fill(~mask, PAD_CODE)
    assert torch.equal(model.decode(codes, mask), model.decode(other, mask))
    assert not torch.allclose(model.decode(codes, mask), model.decode(codes, torch.ones_like(mask)))


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = KARLOfficial.from_preset("tiny").eval()
    loaded = KARLOfficial.from_pretrained(model.save_pretrained(tmp_path))
    assert loaded.config == model.config
    images = torch.rand(1, 3, 32, 32)
    assert torch.equal(model.encode(images).mask, loaded.encode(images).mask)


def test_bad_inputs_are_rejected() -> None:
    model = KARLOfficial.from_preset("tiny").eval()
    with pytest.raises(ValueError, match="expects images"):
        model.encode(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="token budget"):
        model.encode(torch.rand(1, 3, 32, 32), max_tokens=17)
    with pytest.raises(ValueError, match="mask must be"):
        model.decode(torch.zeros(1, 8, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool))
