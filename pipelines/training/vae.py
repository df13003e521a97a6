"""The one trainer of the KL autoencoders behind the latent spaces here (xAR, GDT, SD), with a preset for each.

Reconstruction (MSE, plus L1 for SD) and a small KL term: the latent-diffusion KL recipe (Rombach et al.,
arXiv 2112.10752, sec. 3) without its perceptual and GAN losses, which flat-coloured shapes do not need. AdamW;
afterwards ``scaling_factor`` is set to 1 / std of the posterior means of 256 held-out images, so the generator
sees unit-variance latents. A run lives in a run directory (``train_config.json``, ``checkpoint.pt``, the
harness's resume rule) that ends up holding the diffusers ``AutoencoderKL`` folder too.

Schedules: the ``xar`` and ``gdt`` presets keep PyTorch's one-cycle rate (cosine warm-up over 30 % of the steps
from 1/25 of the peak, cosine decay, beta1 cycled 0.95 -> 0.85 -> 0.95), the recipe the shipped xar-tiny and
gdt-tiny VAEs were trained with, so their recorded commands still reproduce them step for step; ``sd`` keeps its
constant rate, which is the harness's warm-up + cosine with ``min_lr_ratio=1``. New runs may take the harness's
schedule with ``schedule="warmup_cosine"``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import CHECKPOINT_NAME, RunDir
from pipelines.training.schedule import warmup_cosine

logger = logging.getLogger(__name__)

SCHEDULES = ("one_cycle", "warmup_cosine")
VAE_RUN = "vae-run"
"""Where a larger run (GDT, SD) trains its VAE phase: a run directory of its own inside the run's."""
EVAL_IMAGES = 256
"""Held-out images (``eval`` batch 0) for the scaling factor and the reported MSE."""


@dataclass(frozen=True)
class VAETrainConfig:
    """An autoencoder, the images it learns and its recipe (saved as ``train_config.json``).

    The defaults are xAR's; :meth:`from_preset` gives each latent space's own values.
    """

    block_out_channels: tuple[int, ...] = (8, 16, 32, 32)
    """One ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` level each; the latent is ``2 ** (levels - 1)`` times
    smaller than the image."""
    latent_channels: int = 16
    norm_num_groups: int = 4
    mid_attention: bool = False
    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 1
    min_radius: float = 0.1
    max_radius: float = 0.22
    class_conditional: bool = True
    """Draw the ``train`` images with uniform classes (:func:`class_batch`, one object each) instead of the
    world's own draw; batch i is seen at step i either way."""
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    l1_weight: float = 0.0
    kl_weight: float = 1e-4
    kl_per_pixel: bool = True
    """Divide each image's KL by its element count (xAR, GDT) or not (SD)."""
    schedule: str = "one_cycle"
    """``one_cycle`` (its step budget is fixed: a resume cannot extend it) or ``warmup_cosine``."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    """``warmup_cosine`` only: the warm-up and the floor of the decay as a share of ``lr``."""
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; schedules are {SCHEDULES}")
        if self.class_conditional and self.max_objects != 1:
            raise ValueError(f"class_conditional images hold one object, got max_objects={self.max_objects}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VAETrainConfig:
        """The ``PRESETS[name]`` config with ``overrides`` (a step budget, a seed) applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown VAE preset {name!r}; presets are {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @property
    def latent_size(self) -> int:
        """Side of the latent grid."""
        return self.image_size // 2 ** (len(self.block_out_channels) - 1)

    def world(self) -> ShapesWorld:
        """The shapes world the images come from."""
        return ShapesWorld(self.image_size, self.min_objects, self.max_objects, self.min_radius, self.max_radius)


PRESETS: dict[str, VAETrainConfig] = {
    # xAR: MAR's KL-16 keeps 16 channels at stride 16 on ImageNet; 64 px shapes keep the channels at stride 8
    # (8 x 8 tokens of 16 dims, about 0.25 M parameters).
    "xar": VAETrainConfig(),
    # GDT: 32 px -> (4, 8, 8), one large-ish object per image (``pipelines.gdt.groups.group_world``), 0.4 M.
    "gdt": VAETrainConfig(block_out_channels=(16, 32, 32), latent_channels=4, norm_num_groups=8, image_size=32,
                          min_radius=0.2, max_radius=0.3, class_conditional=False, steps=800),
    # SD: 32 px scenes of 1-3 objects -> (8, 8, 8), L1 + L2 + a per-image KL, constant rate.
    "sd": VAETrainConfig(block_out_channels=(16, 32, 32), latent_channels=8, norm_num_groups=16, mid_attention=True,
                         image_size=32, max_objects=3, class_conditional=False, steps=300, l1_weight=1.0,
                         kl_weight=1e-6, kl_per_pixel=False, schedule="warmup_cosine", min_lr_ratio=1.0),
}


def build_vae(config: VAETrainConfig) -> AutoencoderKL:
    """An untrained ``AutoencoderKL`` of the config's sizes."""
    levels = len(config.block_out_channels)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.block_out_channels, layers_per_block=1, latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups, sample_size=config.image_size,
        mid_block_add_attention=config.mid_attention,
    )


def class_batch(world: ShapesWorld, split: str, index: int, batch_size: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``index``-th class-conditional batch: one object per image, uniform classes.

    Returns images ``(B, 3, S, S)`` in [-1, 1] and class ids ``(B,)``.
    """
    ids = np.random.default_rng([seed, index]).integers(0, NUM_CLASSES, size=batch_size)
    batch = world.batch(split, index, batch_size, class_ids=ids.tolist())
    return batch.images * 2 - 1, torch.from_numpy(ids)


def _images(world: ShapesWorld, config: VAETrainConfig, split: str, index: int, batch_size: int) -> torch.Tensor:
    """Batch ``index`` of ``split`` in [-1, 1], ``(B, 3, S, S)``."""
    if config.class_conditional:
        return class_batch(world, split, index, batch_size, config.seed)[0]
    return world.batch(split, index, batch_size).images * 2 - 1


def _scheduler(optim: torch.optim.Optimizer, config: VAETrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=config.lr, total_steps=config.steps)
    return warmup_cosine(optim, config.steps, config.warmup_steps, config.min_lr_ratio)


def _loss(vae: AutoencoderKL, x: torch.Tensor, config: VAETrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss and its MSE term on images ``x`` in [-1, 1]."""
    posterior = vae.encode(x).latent_dist
    error = vae.decode(posterior.sample()).sample - x
    mse = error.pow(2).mean()
    kl = config.kl_weight * posterior.kl().mean()
    if config.kl_per_pixel:
        kl = kl / x[0].numel()
    if config.l1_weight:
        return mse + config.l1_weight * error.abs().mean() + kl, mse
    return mse + kl, mse


def train_vae(config: VAETrainConfig, out_dir: Path, *, resume: bool = False,
              show_progress: bool = True) -> dict[str, float]:
    """Train (with ``resume``, continue the run in ``out_dir``), set ``scaling_factor`` and save the autoencoder
    to ``out_dir``.

    The run is checkpointed at step 0 too, so it resumes however early it stopped. Returns the steps done, the
    held-out MSE (images in [-1, 1]), the scaling factor and the training seconds over all sessions.
    """
    run, config = RunDir.open(out_dir, config, resume)
    torch.manual_seed(config.seed)
    vae = build_vae(config)
    optim = torch.optim.AdamW(vae.parameters(), lr=config.lr)
    sched = _scheduler(optim, config)
    step = 0
    if resume:
        state = run.restore(vae, optim, sched)
        step = state.step
        torch.set_rng_state(state.extra["torch_rng"])
        if config.schedule == "one_cycle" and sched.total_steps != config.steps:
            raise ValueError(f"a one-cycle run keeps its step budget: resume {run.path} with steps="
                             f"{sched.total_steps}, not {config.steps}")

    def save_checkpoint() -> None:
        run.save(step, vae.state_dict(), optim.state_dict(), sched.state_dict(), torch_rng=torch.get_rng_state())

    if not resume:
        save_checkpoint()
    world = config.world()
    vae.train()
    with TrainProgress("vae", config.steps, step, show_progress) as bar:
        while step < config.steps:
            loss, mse = _loss(vae, _images(world, config, "train", step, config.batch_size), config)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            step += 1
            bar.update(step, {"mse": mse.item()})
            if step % config.log_every == 0:
                logger.info("vae step %d mse %.5f (%.0f s)", step, mse.item(), run.elapsed_s)
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_checkpoint()
    vae.eval()
    eval_images = _images(world, config, "eval", 0, EVAL_IMAGES)
    with torch.no_grad():
        latents = vae.encode(eval_images).latent_dist.mode()
        mse = (vae.decode(latents).sample - eval_images).pow(2).mean().item()
        factor = 1.0 / latents.std().item()
    vae.register_to_config(scaling_factor=factor)
    vae.save_pretrained(run.path)
    return {"step": step, "eval_mse": mse, "scaling_factor": factor, "elapsed_s": run.elapsed_s}


def trained_vae(config: VAETrainConfig, path: Path, show_progress: bool = True) -> AutoencoderKL:
    """A larger run's VAE phase: train the VAE run in ``path`` (or resume and finish it when it holds a
    checkpoint, which only a resumed outer run can find there: a fresh one starts in an empty directory) and load
    the result frozen. The caller's torch RNG is left as it was, so the phase does not shift the run's own draws.
    """
    with torch.random.fork_rng(devices=[]):
        metrics = train_vae(config, path, resume=(Path(path) / CHECKPOINT_NAME).is_file(),
                            show_progress=show_progress)
    logger.info("vae phase done: %s", metrics)
    return AutoencoderKL.from_pretrained(path).eval().requires_grad_(False)
