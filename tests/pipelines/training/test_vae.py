"""The one VAE trainer: a tiny run per preset, the presets against the shipped VAEs, resume and its rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME
from pipelines.training.vae import PRESETS, VAETrainConfig, build_vae, train_vae, trained_vae

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHTS = Path(__file__).parents[3] / "pipelines" / "weights"
SHIPPED = {"xar": "xar-tiny/vae", "gdt": "gdt-tiny/vae", "sd": "sd-shapes-tiny/vae"}


def _tiny(name: str, **overrides) -> VAETrainConfig:
    return VAETrainConfig.from_preset(name, **{"steps": 2, "batch_size": 2, "image_size": 32, **overrides})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_few_steps_save_a_vae_with_its_scaling_factor(name, tmp_path):
    metrics = train_vae(_tiny(name), tmp_path / "a", show_progress=False)
    loaded = AutoencoderKL.from_pretrained(tmp_path / "a")
    assert loaded.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert loaded.config.latent_channels == PRESETS[name].latent_channels and metrics["step"] == 2
    assert metrics["scaling_factor"] > 0 and math.isfinite(metrics["eval_mse"])
    again = train_vae(_tiny(name), tmp_path / "b", show_progress=False)
    assert again["eval_mse"] == metrics["eval_mse"]  # seeded: the same run twice


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_preset_is_the_architecture_of_its_shipped_vae(name):
    shipped = load_file(str(WEIGHTS / SHIPPED[name] / "diffusion_pytorch_model.safetensors"))
    model = build_vae(PRESETS[name])
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in shipped.items()}
    model.load_state_dict(shipped, strict=True)
    assert AutoencoderKL.from_pretrained(WEIGHTS / SHIPPED[name]).config.sample_size == PRESETS[name].image_size


def test_resume_continues_from_the_checkpoint_as_if_never_stopped(tmp_path):
    # The sd preset's rate is constant, so a 2-step run extended to 4 follows the 4-step run exactly.
    straight = train_vae(_tiny("sd", steps=4), tmp_path / "straight", show_progress=False)
    train_vae(_tiny("sd"), tmp_path / "run", show_progress=False)
    assert Checkpoint.load(tmp_path / "run" / CHECKPOINT_NAME).step == 2
    with pytest.raises(FileExistsError, match="not empty"):
        train_vae(_tiny("sd", steps=4), tmp_path / "run", show_progress=False)
    resumed = train_vae(_tiny("sd", steps=4, lr=1.0), tmp_path / "run", resume=True, show_progress=False)
    assert resumed["step"] == 4 and resumed["eval_mse"] == straight["eval_mse"]  # the saved lr, not 1.0
    a, b = (Checkpoint.load(tmp_path / d / CHECKPOINT_NAME) for d in ("straight", "run"))
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    moments = [(s["step"], s["exp_avg"]) for s in a.optimizer["state"].values()]
    assert all(torch.equal(x, y) and int(n) == 4 for (n, x), (_, y) in
               zip(moments, [(s["step"], s["exp_avg"]) for s in b.optimizer["state"].values()], strict=True))


def test_a_one_cycle_run_cannot_be_extended(tmp_path):
    train_vae(_tiny("xar"), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="steps=2, not 3"):
        train_vae(_tiny("xar", steps=3), tmp_path, resume=True, show_progress=False)


def test_a_vae_phase_leaves_the_callers_random_stream_alone_and_resumes(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = trained_vae(_tiny("gdt"), tmp_path / "vae-run", show_progress=False)
    assert torch.equal(torch.rand(3), expected)
    again = trained_vae(_tiny("gdt"), tmp_path / "vae-run", show_progress=False)  # finished: resumed, same weights
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    assert not any(p.requires_grad for p in again.parameters())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown VAE preset 'mar'"):
        VAETrainConfig.from_preset("mar")
    with pytest.raises(ValueError, match="one object"):
        VAETrainConfig(max_objects=3)
    with pytest.raises(ValueError, match="unknown schedule"):
        VAETrainConfig(schedule="linear")
