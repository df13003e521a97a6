"""The KL-autoencoder training loop shared by the latent spaces trained here (xAR, GDT).

MSE reconstruction + a small KL term (the latent-diffusion KL recipe without perceptual / GAN losses, which
flat-coloured shapes do not need), AdamW with a one-cycle schedule; afterwards ``scaling_factor`` is set to
1 / std of the held-out latents so the generator sees unit-variance tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from pipelines.training.progress import TrainProgress

logger = logging.getLogger(__name__)


def fit_vae(vae: AutoencoderKL, next_batch: Callable[[int], torch.Tensor], eval_images: torch.Tensor, *,
            steps: int, lr: float, kl_weight: float, out_dir: Path, show_progress: bool = False,
            log_every: int = 50) -> dict[str, float]:
    """Train ``vae`` on ``next_batch(step)`` images in [-1, 1], set its scaling factor, save it to ``out_dir``.

    Returns the held-out MSE on ``eval_images`` (in [-1, 1]), the scaling factor and the wall time.
    """
    optim = torch.optim.AdamW(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps)
    start = time.perf_counter()
    vae.train()
    with TrainProgress("vae", steps, enabled=show_progress) as progress:
        for step in range(steps):
            x = next_batch(step)
            posterior = vae.encode(x).latent_dist
            mse = (vae.decode(posterior.sample()).sample - x).pow(2).mean()
            loss = mse + kl_weight * posterior.kl().mean() / x[0].numel()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            progress.update(step + 1, {"mse": mse.item()})
            if step % log_every == 0:
                logger.info("vae step %d mse %.5f (%.0f s)", step, mse.item(), time.perf_counter() - start)
    vae.eval()
    with torch.no_grad():
        latents = vae.encode(eval_images).latent_dist.mode()
        mse = (vae.decode(latents).sample - eval_images).pow(2).mean().item()
        factor = 1.0 / latents.std().item()
    vae.register_to_config(scaling_factor=factor)
    vae.save_pretrained(out_dir)
    return {"eval_mse": mse, "scaling_factor": factor, "wall_s": time.perf_counter() - start}
