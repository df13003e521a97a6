"""The latent space of GDT-tiny: a small diffusers ``AutoencoderKL`` trained here on shapes world.

32 px images -> (4, 8, 8) latents (two stride-2 stages). Trained with MSE reconstruction plus a small KL term
(the KL-f4 recipe of latent diffusion, without the perceptual/GAN terms, which shapes world does not need).
After training, ``scaling_factor`` is set to 1 / std of the latents so the diffusion model sees unit variance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from pipelines.gdt.groups import group_world
from pipelines.training.vae import fit_vae

logger = logging.getLogger(__name__)


def tiny_vae(image_size: int = 32) -> AutoencoderKL:
    """An untrained f4 autoencoder with 4 latent channels (about 0.4 M parameters)."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
        sample_size=image_size, mid_block_add_attention=False,
    )


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 800
    batch_size: int = 16
    lr: float = 2e-3
    kl_weight: float = 1e-4
    image_size: int = 32
    seed: int = 0


def train_vae(config: VAETrainConfig, out_dir: Path) -> dict[str, float]:
    """Train on the ``train`` split, set ``scaling_factor``, save; returns held-out MSE and the factor."""
    torch.manual_seed(config.seed)
    world = group_world(config.image_size)
    vae = tiny_vae(config.image_size)
    batches = world.iterate("train", config.batch_size)
    return fit_vae(vae, lambda _step: next(batches).images * 2 - 1, world.batch("eval", 0, 256).images * 2 - 1,
                   steps=config.steps, lr=config.lr, kl_weight=config.kl_weight, out_dir=out_dir)
