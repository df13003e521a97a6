"""WavTokenizer training loop (spec ``audio.md`` §1 "Configs", "Losses"; paper arXiv 2408.16532 §3.4).

Generator loss = hinge-GAN(MPD) + hinge-GAN(MRD) + FM(MPD) + FM(MRD) + 45 x mel L1 + 1000 x commitment;
discriminator loss = hinge(MPD) + hinge(MRD) (each averaged over its sub-discriminators). The EMA codebook
(k-means init, dead-code replacement) updates itself inside the model's train-mode forward. AdamW (betas
0.8/0.9 as in Vocos) with a cosine schedule for both the generator and the discriminators.

Departures from the official recipe, for a CPU budget:

- ``mel_only_steps``: the first steps train the generator on mel + commitment only, without discriminators
  (the official config has ``pretrain_mel_steps: 0``). A small model trained for a few thousand steps gets most
  of its intelligibility from the mel loss; the GAN then sharpens the waveform.
- the DAC discriminator is left out: in the official code it is never updated (spec §1 "Losses"), so it acts as
  a fixed random-feature loss.
- discriminator ``width`` is configurable (the official sizes are ``mpd_width=32``, ``mrd_width=64``).
- ``dead_code_threshold`` defaults to the official 2 scaled by the batch's frame count relative to the official
  per-GPU batch (40 x 3 s = 9000 frames at 75 tokens/s): a code is replaced when its EMA usage falls under
  ~0.9x the mean usage, as in the official run. Unscaled, a CPU batch (600 frames) would expire every code at
  every step (spec §4, "dead-code threshold vs batch size").

The output directory holds the harness's ``checkpoint.pt`` (model, discriminators, optimizers, schedulers, step,
data and torch RNG state) written every ``checkpoint_every`` steps, snapshots ``snapshots/step-N/`` (a loadable model
directory each), and at the end the final model via ``save_pretrained(out_dir)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipelines.data.crops import CropSampler
from pipelines.data.speech import build_corpus
from pipelines.training.gan import GanTrainConfig, GanTrainer
from pipelines.training.run_dir import RunDir
from tokenizers_media.audio.wavtokenizer import WavTokenizer
from tokenizers_media.nn.conv import WeightNormConv1d

logger = logging.getLogger(__name__)

OFFICIAL_DEAD_CODE_THRESHOLD = 2.0
OFFICIAL_BATCH_FRAMES = 40 * 3 * 75
"""Codebook vectors per step and GPU in the official run (batch 40 x 3 s crops at 75 tokens/s)."""


@dataclass(frozen=True)
class TrainConfig(GanTrainConfig):
    """Every knob of a WavTokenizer training run (saved as ``train_config.json`` next to the checkpoints)."""

    steps: int = 6000
    quantizer_warmup_steps: int = 0
    """First steps bypass the quantizer (a plain autoencoder); k-means then initialises the codebook on trained
    encoder features. Not in the official recipe: with a tiny, freshly initialised encoder the first-batch k-means
    sees near-constant latents and the 1000x commitment locks the encoder onto a handful of codes (measured: 4 codes
    in use, encoder std 1e-4 after 400 steps)."""
    encoder_init: str = "default"
    """``default`` (torch's conv init, as the official code) or ``kaiming``: He-normal encoder kernels and zero
    biases. torch's default init shrinks the signal ~0.58x per conv, so a fresh SEANet's latents vary by ~1e-3 over
    time and the encoder receives ~1000x smaller gradients than the decoder; a CPU-budget run never recovers from
    that (measured: latent std over time 0.001 -> 2.1 with ``kaiming``)."""
    commit_coeff: float = 1000.0
    dead_code_threshold: float | None = None
    """EMA usage under which a code is replaced; ``None`` scales the official 2 by the batch size (see above)."""
    tone_prob: float = 0.1
    seed: int = 3407
    checkpoint_every: int = 250
    snapshot_every: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {self.snapshot_every}")
        if self.quantizer_warmup_steps < 0:
            raise ValueError(f"quantizer_warmup_steps must be >= 0, got {self.quantizer_warmup_steps}")
        if self.encoder_init not in ("default", "kaiming"):
            raise ValueError(f"encoder_init must be 'default' or 'kaiming', got {self.encoder_init!r}")


@torch.no_grad()
def kaiming_init_encoder_(model: WavTokenizer) -> None:
    """He-normal directions for every weight-normed encoder conv, gains = their norms (a plain conv), zero biases."""
    for module in model.feature_extractor.encoder.modules():
        if isinstance(module, WeightNormConv1d):
            nn.init.kaiming_normal_(module.weight_v, nonlinearity="relu")
            module.weight_g.copy_(module.weight_v.norm(dim=(1, 2), keepdim=True))
            if module.bias is not None:
                module.bias.zero_()


class WavTokenizerTrainer(GanTrainer):
    """Holds the model, the discriminators, their optimizers and schedulers, and runs steps."""

    config: TrainConfig
    NAME = "wavtokenizer"

    def build_model(self) -> WavTokenizer:
        """The preset with the overrides, the batch-scaled dead-code threshold and the chosen encoder init."""
        config = self.config
        overrides = dict(config.model_overrides)
        model_config = WavTokenizer.preset_config(config.preset).replace(**overrides)
        if config.dead_code_threshold is not None:
            overrides["dead_code_threshold"] = config.dead_code_threshold
        elif "dead_code_threshold" not in overrides:
            frames = config.batch_size * math.ceil(config.crop_seconds * model_config.sample_rate
                                                   / model_config.hop_length)
            overrides["dead_code_threshold"] = OFFICIAL_DEAD_CODE_THRESHOLD * frames / OFFICIAL_BATCH_FRAMES
        model = WavTokenizer(model_config.replace(**overrides))
        if config.encoder_init == "kaiming":
            kaiming_init_encoder_(model)
        return model

    def _generator_forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.step < self.config.quantizer_warmup_steps:
            latents = self.model.feature_extractor.encoder(wav[:, None, :])
            audio = self.model.decode_features(latents)
            return audio[..., : wav.shape[-1]], latents.new_zeros(())
        out = self.model(wav)
        return out.audio[..., : wav.shape[-1]], out.commit_loss

    def train_step(self) -> dict[str, float]:
        """One generator step (and, after the mel-only phase, one discriminator step first)."""
        cfg = self.config
        self.model.train()
        wav = self.sampler.sample(cfg.batch_size)
        fake, commit = self._generator_forward(wav)
        logs: dict[str, float] = {}
        use_gan = self.gan_active
        if use_gan:
            logs["disc"] = self._discriminator_step(wav, fake.detach())
        mel = self.mel_loss(fake, wav)
        loss_g = cfg.mel_coeff * mel + cfg.commit_coeff * commit
        if use_gan:
            gan, fm = self._adversarial_terms(wav, fake)
            loss_g = loss_g + gan + fm
            logs.update(gan=gan.item(), fm=fm.item())
        self._generator_step(loss_g)
        logs.update(gen=loss_g.item(), mel=mel.item(), commit=commit.item())
        return logs

    def after_step(self, run: RunDir) -> None:
        """A loadable model directory ``snapshots/step-N`` every ``snapshot_every`` steps."""
        if self.step % self.config.snapshot_every == 0:
            self.model.save_pretrained(run.path / "snapshots" / f"step-{self.step}")


def train_wavtokenizer(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, show_progress: bool = True,
                       cache_dir: str | Path | None = None, stop_at: int | None = None) -> Path:
    """Train (or, with ``resume``, continue) a WavTokenizer; returns ``out_dir`` holding the final model.

    ``resume`` continues the run in ``out_dir`` with the config saved there (``steps`` and ``mel_only_steps``
    from this call); without it ``out_dir`` must be new or empty. ``stop_at`` ends this session after that
    many steps (checkpoint and current model saved), leaving the schedule of the full run intact for a resume.
    """
    run, config = RunDir.open(out_dir, config, resume, extendable=("steps", "mel_only_steps"))
    corpus = build_corpus("train", config.train_utterances, seed=config.seed, cache_dir=cache_dir)
    logger.info("training corpus: %d utterances, %.0f s", len(corpus), corpus.seconds)
    sampler = CropSampler(corpus.clips, round(config.crop_seconds * corpus.sample_rate), config.tone_prob,
                          seed=config.seed, sample_rate=corpus.sample_rate)
    trainer = WavTokenizerTrainer(config, sampler)
    if resume:
        trainer.load_checkpoint(run.load())
        logger.info("resumed from step %d", trainer.step)
    trainer.fit(run, show_progress, stop_at)
    trainer.model.eval()
    trainer.model.save_pretrained(run.path)
    return run.path
