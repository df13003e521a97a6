"""Official KARL: the released layout, golden vectors of the official code, batching with per-image masks.

The golden vectors are the only oracle of faithfulness here: outputs of the official code for the recipe weights
(``karl_recipe.py``) at one seed, 1234 in ``tests/data/karl_golden/``. Nothing in this file re-derives them, so
the checks are exactly as good as those files. The weights are a function of the seed, so the same checks run on
another seed's vectors made the same way (``shared/reference/karl_golden/README.md``)::

    KARL_GOLDEN_DIR=<folder> KARL_GOLDEN_SEED=<seed> pytest tests/tokenizers_media/image/test_karl_official.py

That folder needs ``summary_<variant>_seed<seed>.json`` next to the ``.npy`` files: the halting-bias constant and
the cases (T, eps, active count) are read from it. ``tests/data/karl_golden/`` holds no summaries; for seed 1234
the values the README states are used instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.hooks import RemovableHandle

from tests.tokenizers_media.image.karl_recipe import HALTING_BIAS, recipe_state_dict
from tokenizers_media.image.karl import PAD_CODE
from tokenizers_media.image.karl_official import KARLOfficial

pytestmark = pytest.mark.usefixtures("one_thread")

GOLDEN = Path(os.environ.get("KARL_GOLDEN_DIR", Path(__file__).parents[2] / "data" / "karl_golden"))
SEED = int(os.environ.get("KARL_GOLDEN_SEED", "1234"))
REFERENCE = Path(__file__).parents[2] / "data" / "karl_reference"
"""The released state dicts' key -> shape layouts (copied from ../shared/reference, facts about the official code)."""
PRESETS = {"vqgan": "paper-small", "vae": "paper-small-vae"}
README_SEED_1234 = {"vqgan": [(256, 0.05, 199), (128, 0.1, 112)], "vae": [(256, 0.05, 172), (128, 0.1, 108)]}
"""(T, eps, active count) of each seed-1234 case as the golden README states them (its summaries are not copied);
all of them are scattered."""
BASE_DECODER_INPUT = {"vqgan": "decoder", "vae": "post_quant_conv"}
"""The base tokenizer's submodule whose input is the golden ``base_decoder_input``."""


@dataclass(frozen=True)
class GoldenCase:
    """One official ``encode`` call: budget T, target eps, its active count, the files' tag, and whether its
    active positions are scattered (not a prefix: what a ``lengths`` tokens file could not hold)."""

    variant: str
    budget: int
    target: float
    active_count: int
    tag: str
    scattered: bool = True


def golden_summary(variant: str) -> tuple[float, list[GoldenCase]]:
    """(halting-bias constant, cases) of ``variant`` at ``SEED``: from the summary file, else the README's seed 1234."""
    path = GOLDEN / f"summary_{variant}_seed{SEED}.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        cases = [GoldenCase(variant, c["input_token_budget"], c["desired_reconstruction_quality"], c["active_count"],
                            c["tag"], not c["active_positions_are_prefix"]) for c in summary["cases"]]
        return float(summary["halting_mlp.2.bias"]), cases
    if SEED != 1234:
        raise FileNotFoundError(f"{path} is missing: seed {SEED} needs its summary (halting bias and cases)")
    return HALTING_BIAS[variant], [GoldenCase(variant, t, eps, n, f"{variant}_seed1234_T{t}_eps{eps}")
                                   for t, eps, n in README_SEED_1234[variant]]


def recipe_model(preset: str, seed: int, halting_bias: float) -> KARLOfficial:
    """A model of ``preset`` holding the recipe weights (built on the meta device: no wasted init)."""
    with torch.device("meta"):
        model = KARLOfficial.from_preset(preset)
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(recipe_state_dict(layout, seed, halting_bias), strict=True, assign=True)
    return model.eval()


def _golden(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(GOLDEN / f"{name}.npy"))


@dataclass
class GoldenRun:
    """What one variant's recipe model computed on the golden input: its base latent and, per case tag, the
    outputs of one ``encode`` and one ``decode`` with what forward hooks read inside them (as the vectors were)."""

    model: KARLOfficial
    base_latent: torch.Tensor
    cases: list[GoldenCase]
    outputs: dict[str, dict[str, torch.Tensor]]


def _recorded(module: torch.nn.Module, into: dict[str, torch.Tensor], name: str, *,
              pre: bool = False) -> RemovableHandle:
    """A hook handle that stores the module's first input (``pre``) or its output under ``name``."""
    if pre:
        return module.register_forward_pre_hook(lambda _m, args: into.__setitem__(name, args[0]))
    return module.register_forward_hook(lambda _m, _args, out: into.__setitem__(name, out))


@pytest.fixture(scope="module", params=sorted(PRESETS))
def golden_run(request: pytest.FixtureRequest) -> Iterator[GoldenRun]:
    """Every golden case of one variant, computed once: one ``encode`` and one ``decode`` per case (full size,
    about 6 s per case on one thread)."""
    variant = request.param
    halting_bias, cases = golden_summary(variant)
    model = recipe_model(PRESETS[variant], SEED, halting_bias)
    images = _golden("input")
    outputs: dict[str, dict[str, torch.Tensor]] = {}
    with torch.no_grad():
        base_latent = model.base.encode(images)
        for case in cases:
            out = outputs[case.tag] = {}
            hooks = [_recorded(model.pre_quantizer_mlp, out, "latents"),
                     _recorded(model.base.get_submodule(BASE_DECODER_INPUT[variant]), out, "base_input", pre=True)]
            enc = model.encode(images, target_error=case.target, max_tokens=case.budget)
            out |= {"halt_probs": enc.halt_probs, "mask": enc.mask, "tokens": enc.tokens}
            out["recon"] = model.decode(enc.tokens, enc.mask)
            for hook in hooks:
                hook.remove()
    yield GoldenRun(model, base_latent, cases, outputs)


@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_layout_is_the_official_one(variant: str) -> None:
    with torch.device("meta"):
        model = KARLOfficial.from_preset(PRESETS[variant])
    official = json.loads((REFERENCE / f"karl_small_{variant}_state_dict.json").read_text())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == official
    assert list(model.state_dict()) == list(official)


@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_golden_files_hold_every_case(variant: str) -> None:
    """The cases of ``SEED`` all have their files (a folder for another seed is checked before any compute)."""
    names = ["p_halt", "active", "latents", "base_decoder_input", "recon"] + ["codes"] * (variant == "vqgan")
    cases = golden_summary(variant)[1]
    missing = [f"{n}_{c.tag}.npy" for c in cases for n in names if not (GOLDEN / f"{n}_{c.tag}.npy").is_file()]
    assert cases and not missing, f"{GOLDEN} lacks {missing}"


def test_base_latent_matches_official(golden_run: GoldenRun) -> None:
    variant = golden_run.model.config.base
    assert (golden_run.base_latent - _golden(f"base_latent_{variant}_seed{SEED}")).abs().max() < 1e-4


def test_golden_cases(golden_run: GoldenRun, subtests: pytest.Subtests) -> None:
    """Halting, latents, codes, decoder input and reconstruction of each official case, within the README's
    tolerances (identical active set and codes; 1e-4 for the float arrays, 1e-3 for the image)."""
    for case in golden_run.cases:
        with subtests.test(case.tag):
            _check_golden_case(case, golden_run.outputs[case.tag])


def _check_golden_case(case: GoldenCase, out: dict[str, torch.Tensor]) -> None:
    active = _golden(f"active_{case.tag}")
    assert (out["halt_probs"] - _golden(f"p_halt_{case.tag}")).abs().max() < 1e-4
    assert torch.equal(out["mask"], active) and int(out["mask"].sum()) == case.active_count
    assert torch.equal(active[0], torch.arange(case.budget) < case.active_count) != case.scattered
    assert (out["latents"] - _golden(f"latents_{case.tag}")).abs().max() < 1e-4
    if case.variant == "vqgan":
        assert torch.equal(out["tokens"][active], _golden(f"codes_{case.tag}")[active])
        assert bool((out["tokens"][~active] == PAD_CODE).all())
    assert (out["base_input"] - _golden(f"base_decoder_input_{case.tag}")).abs().max() < 1e-4
    assert (out["recon"] - _golden(f"recon_{case.tag}")).abs().max() < 1e-3


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
