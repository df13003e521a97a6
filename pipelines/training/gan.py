"""The adversarial half both audio trainers share (WavTokenizer, mel vocoder; Vocos/WavTokenizer recipe).

A generator against a multi-period and a multi-resolution discriminator: hinge loss for the discriminators, hinge +
feature matching for the generator (MRD terms weighted by ``mrd_coeff``), AdamW with the warm-up + cosine
schedule on both sides (the discriminators' schedule spans only the steps after ``mel_only_steps``), and one resumable
state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipelines.data.crops import CropSampler
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from tokenizers_media.audio.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from tokenizers_media.audio.losses import (
    MelLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GanTrainConfig:
    """The knobs every GAN audio run has (saved as ``train_config.json``); trainers subclass it, add their own
    fields and override defaults by redeclaring them."""

    preset: str = "tiny"
    model_overrides: tuple[tuple[str, Any], ...] = ()
    """``(field, value)`` pairs applied to the preset config (tests use them for a tinier model)."""
    steps: int = 3000
    batch_size: int = 8
    crop_seconds: float = 1.0
    lr: float = 2e-4
    disc_lr: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.9)
    weight_decay: float = 0.01
    warmup_steps: int = 0
    """Linear learning-rate warm-up before the cosine decay (official: 0)."""
    min_lr_ratio: float = 0.0
    mel_only_steps: int = 0
    """Generator steps on the reconstruction losses alone before the discriminators start."""
    mel_coeff: float = 45.0
    mrd_coeff: float = 1.0
    mpd_width: int = 32
    mrd_width: int = 64
    grad_clip: float = 1000.0
    train_utterances: int = 400
    """Utterances of the espeak-ng codec corpus (10 voices)."""
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_utterances", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.mel_only_steps, self.warmup_steps) < 0:
            raise ValueError("mel_only_steps and warmup_steps must be >= 0")
        if self.crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {self.crop_seconds}")


class GanTrainer:
    """The generator ``model`` (from :meth:`build_model`), both discriminators, their optimizers and schedules.

    A subclass writes ``build_model`` and ``train_step`` from the helpers below.
    """

    NAME = "gan"
    """The progress bar's label."""
    EXTRA_PARTS = ("mpd", "mrd", "opt_d", "sched_d", "sampler")
    """What a checkpoint holds besides the generator, its optimizer and schedule (and the torch RNG state)."""

    def __init__(self, config: GanTrainConfig, sampler: CropSampler) -> None:
        self.config, self.sampler = config, sampler
        torch.manual_seed(config.seed)
        self.model = self.build_model()
        self.mpd = MultiPeriodDiscriminator(width=config.mpd_width)
        self.mrd = MultiResolutionDiscriminator(width=config.mrd_width)
        self.mel_loss = MelLoss(sample_rate=self.model.sample_rate)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), config.lr, config.betas,
                                       weight_decay=config.weight_decay)
        self.opt_d = torch.optim.AdamW(self._disc_params(), config.disc_lr, config.betas,
                                       weight_decay=config.weight_decay)
        self.sched_g = warmup_cosine(self.opt_g, config.steps, config.warmup_steps, config.min_lr_ratio)
        gan_steps = max(1, config.steps - config.mel_only_steps)
        self.sched_d = warmup_cosine(self.opt_d, gan_steps, config.warmup_steps, config.min_lr_ratio)
        self.step = 0

    def build_model(self) -> Any:
        """The generator, built right after seeding so its initialisation is reproducible."""
        raise NotImplementedError

    @property
    def gan_active(self) -> bool:
        """Whether this step trains against the discriminators (the mel-only phase is over)."""
        return self.step >= self.config.mel_only_steps

    def _disc_params(self) -> list[nn.Parameter]:
        return [*self.mpd.parameters(), *self.mrd.parameters()]

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One hinge update of both discriminators on detached generator output."""
        cfg = self.config
        self.mpd.train()
        self.mrd.train()
        loss = hinge_discriminator_loss(self.mpd(real)[0], self.mpd(fake)[0])
        loss = loss + cfg.mrd_coeff * hinge_discriminator_loss(self.mrd(real)[0], self.mrd(fake)[0])
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self._disc_params(), cfg.grad_clip)
        self.opt_d.step()
        self.sched_d.step()
        return loss.item()

    def _adversarial_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generator hinge loss and feature matching, MRD terms weighted by ``mrd_coeff``."""
        gan, fm = [], []
        for disc, weight in ((self.mpd, 1.0), (self.mrd, self.config.mrd_coeff)):
            with torch.no_grad():  # feature matching detaches the real side anyway
                _, real_features = disc(real)
            fake_logits, fake_features = disc(fake)
            gan.append(weight * hinge_generator_loss(fake_logits))
            fm.append(weight * feature_matching_loss(real_features, fake_features))
        return sum(gan), sum(fm)

    def _generator_step(self, loss: torch.Tensor) -> None:
        """Backpropagate the generator loss, clip, step the optimizer and schedule, count the step."""
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        self.step += 1

    def save_checkpoint(self, run: RunDir) -> None:
        run.save(self.step, self.model.state_dict(), self.opt_g.state_dict(), self.sched_g.state_dict(),
                 torch_rng=torch.get_rng_state(),
                 **{name: getattr(self, name).state_dict() for name in self.EXTRA_PARTS})

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.step = checkpoint.step
        self.model.load_state_dict(checkpoint.model)
        self.opt_g.load_state_dict(checkpoint.optimizer)
        self.sched_g.load_state_dict(checkpoint.scheduler)
        torch.set_rng_state(checkpoint.extra["torch_rng"])
        for name in self.EXTRA_PARTS:
            getattr(self, name).load_state_dict(checkpoint.extra[name])

    def after_step(self, run: RunDir) -> None:
        """Called after each step and its checkpoint (snapshots, say); nothing by default."""

    def fit(self, run: RunDir, progress: bool, stop_at: int | None = None) -> None:
        """Train up to ``config.steps`` (or ``stop_at``: a session ending early, the schedule still that of the
        whole run), checkpointing every ``checkpoint_every`` steps and at the session's end."""
        cfg = self.config
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        with TrainProgress(self.NAME, cfg.steps, self.step, progress) as bar:
            while self.step < end:
                logs = self.train_step()
                bar.update(self.step, logs)
                if self.step % cfg.log_every == 0:
                    logger.info("step %d %s (%.0f s)", self.step, logs, run.elapsed_s)
                if self.step % cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint(run)
                self.after_step(run)

    def train_step(self) -> dict[str, float]:
        """One update; returns the step's losses by name."""
        raise NotImplementedError
