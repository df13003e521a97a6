"""The latent space of GDT-tiny: a small diffusers ``AutoencoderKL`` trained here on shapes world.

32 px images -> (4, 8, 8) latents (two stride-2 stages). Trained with MSE reconstruction plus a small KL term
(the KL-f4 recipe of latent diffusion, without the perceptual/GAN terms, which shapes world does not need).
After training, ``scaling_factor`` is set to 1 / std of the latents so the diffusion model sees unit variance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from pipelines.gdt.groups import group_world

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
    optim = torch.optim.AdamW(vae.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=config.lr, total_steps=config.steps)
    start = time.perf_counter()
    vae.train()
    for step, batch in zip(range(config.steps), world.iterate("train", config.batch_size), strict=False):
        x = batch.images * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = (recon - x).pow(2).mean()
        loss = mse + config.kl_weight * posterior.kl().mean() / x[0].numel()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % 50 == 0:
            logger.info("vae step %d mse %.5f (%.0f s)", step, mse.item(), time.perf_counter() - start)
    vae.eval()
    with torch.no_grad():
        x = world.batch("eval", 0, 256).images * 2 - 1
        latents = vae.encode(x).latent_dist.mode()
        mse = (vae.decode(latents).sample - x).pow(2).mean().item()
        factor = 1.0 / latents.std().item()
    vae.register_to_config(scaling_factor=factor)
    vae.save_pretrained(out_dir)
    return {"eval_mse": mse, "scaling_factor": factor, "wall_s": time.perf_counter() - start}
