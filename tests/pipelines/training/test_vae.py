"""The shared KL-autoencoder loop, driven through both of its callers (xAR's and GDT's latent spaces)."""

from __future__ import annotations

import math

import pytest
from diffusers import AutoencoderKL

from pipelines.gdt import vae as gdt_vae
from pipelines.xar import vae as xar_vae


@pytest.mark.parametrize("module", [xar_vae, gdt_vae], ids=["xar", "gdt"])
def test_few_steps_save_a_vae_with_its_scaling_factor(module, tmp_path):
    config = module.VAETrainConfig(steps=3, batch_size=2, image_size=32)
    metrics = module.train_vae(config, tmp_path)
    loaded = AutoencoderKL.from_pretrained(tmp_path)
    assert loaded.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert metrics["scaling_factor"] > 0 and math.isfinite(metrics["eval_mse"])
    again = module.train_vae(config, tmp_path / "again")
    assert again["eval_mse"] == pytest.approx(metrics["eval_mse"])  # seeded: the same run twice
