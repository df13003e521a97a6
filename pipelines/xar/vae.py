"""The default latent space of xAR here: a small diffusers ``AutoencoderKL`` trained on shapes world.

xAR uses MAR's KL-16 VAE (16 channels, stride 16) on ImageNet; for 64 px shapes-world images we keep the 16
channels and use stride 8, so an image is an 8 x 8 grid of 16-d tokens (4 cells of 4 x 4 with ``tiny``).
Training: MSE reconstruction + a small KL term (the latent-diffusion KL recipe without perceptual / GAN
losses, which flat-coloured shapes do not need). ``scaling_factor`` is then set to 1 / std of the latents on
held-out images so the flow model sees unit-variance tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld
from pipelines.training.vae import fit_vae

logger = logging.getLogger(__name__)


def shapes_vae(latent_channels: int = 16, image_size: int = 64) -> AutoencoderKL:
    """An untrained stride-8 KL autoencoder (three downsamplings, about 0.25 M parameters)."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32), layers_per_block=1, latent_channels=latent_channels,
        norm_num_groups=4, sample_size=image_size, mid_block_add_attention=False,
    )


def class_batch(world: ShapesWorld, split: str, index: int, batch_size: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``index``-th class-conditional batch: one object per image, uniform classes.

    Returns images ``(B, 3, S, S)`` in [-1, 1] and class ids ``(B,)``.
    """
    ids = np.random.default_rng([seed, index]).integers(0, NUM_CLASSES, size=batch_size)
    batch = world.batch(split, index, batch_size, class_ids=ids.tolist())
    return batch.images * 2 - 1, torch.from_numpy(ids)


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    kl_weight: float = 1e-4
    image_size: int = 64
    seed: int = 0


def train_vae(config: VAETrainConfig, out_dir: Path, show_progress: bool = True) -> dict[str, float]:
    """Train on the class-conditional ``train`` split, set ``scaling_factor``, save to ``out_dir``."""
    torch.manual_seed(config.seed)
    world = ShapesWorld(config.image_size, min_objects=1, max_objects=1)
    vae = shapes_vae(image_size=config.image_size)
    eval_images, _ = class_batch(world, "eval", 0, 256, config.seed)
    return fit_vae(vae, lambda step: class_batch(world, "train", step, config.batch_size, config.seed)[0],
                   eval_images, steps=config.steps, lr=config.lr, kl_weight=config.kl_weight, out_dir=out_dir,
                   show_progress=show_progress, log_every=10)
