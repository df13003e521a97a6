"""Mel vocoder training loop (Vocos recipe, Siuzdak 2023 §3-4; WavTokenizer's losses and discriminators).

Generator loss = mel_coeff x mel L1 (:class:`MelLoss`, 100-bin, 45 as in Vocos) + hinge-GAN(MPD) +
mrd_coeff x hinge-GAN(MRD) + FM(MPD) + mrd_coeff x FM(MRD); discriminator loss = hinge(MPD) + mrd_coeff x
hinge(MRD). AdamW (betas 0.8/0.9) with the warm-up + cosine schedule for both. The vocoder input is the log-mel of the
crop itself (:class:`LogMel`), so the target is the crop.

CPU-budget departures (options): ``mel_only_steps`` first trains on the mel loss alone (Vocos has no such phase),
and the discriminators are narrower than the official ones (``mpd_width``, ``mrd_width``).

Data: espeak-ng speech (``pipelines/data/speech.py``), the codec corpus's 10 training voices plus Flow-Omni's
answer voice (``en-us``, speed 165, pitch 50) speaking the dialogue sentences it will answer with; random 1 s crops
with the official gain augmentation (:class:`CropSampler`). The output directory holds ``checkpoint.pt``
(resumable), the final model (``save_pretrained``) and a ``README.md`` model card with the held-out table of
:mod:`pipelines.vocoder.evaluate` (vocoder vs Griffin-Lim).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.data.crops import CropSampler
from pipelines.data.dialogue import ANSWER_PITCH, ANSWER_SPEED, ANSWER_VOICE, all_sentences
from pipelines.data.speech import build_corpus, synthesize
from pipelines.training.gan import GanTrainConfig, GanTrainer
from pipelines.training.run_dir import RunDir
from tokenizers_media.speech.mel import LogMel
from tokenizers_media.speech.vocoder import MelVocoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocoderTrainConfig(GanTrainConfig):
    """Every knob of a vocoder run (saved as ``train_config.json``)."""

    lr: float = 5e-4
    mpd_width: int = 8
    mrd_width: int = 16
    input_mel_coeff: float = 0.0
    """Weight of an extra L1 between the output's log-mel and the input frames (80-bin, floor 1e-5): not in
    Vocos; the 100-bin loss's 1e-7 floor makes near-silent bins dominate it, this one weighs what is heard."""
    answer_utterances: int = 200
    """Dialogue sentences spoken by the answer voice."""
    init: str = ""
    """A trained MelVocoder directory to start from (e.g. a GAN phase after a mel-only run); "" = fresh preset."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.answer_utterances < 0:
            raise ValueError(f"answer_utterances must be >= 0, got {self.answer_utterances}")


def training_clips(config: VocoderTrainConfig, cache_dir: str | Path | None = None) -> list[torch.Tensor]:
    """Codec-corpus clips (10 voices) + the answer voice speaking dialogue sentences, all train split."""
    clips = list(build_corpus("train", config.train_utterances, seed=config.seed, cache_dir=cache_dir).clips)
    if config.answer_utterances:
        texts = all_sentences("train", config.answer_utterances, seed=config.seed)
        clips += [synthesize(text, ANSWER_VOICE, ANSWER_SPEED, ANSWER_PITCH) for text in texts]
    return clips


class VocoderTrainer(GanTrainer):
    """The vocoder, the two discriminators, their optimizers and schedules; ``train_step`` runs one step."""

    config: VocoderTrainConfig
    NAME = "vocoder"

    def __init__(self, config: VocoderTrainConfig, sampler: CropSampler) -> None:
        super().__init__(config, sampler)
        self.log_mel = LogMel(self.model.config.mel_spec)

    def build_model(self) -> MelVocoder:
        if self.config.init:
            return MelVocoder.from_pretrained(self.config.init)
        return MelVocoder.from_preset(self.config.preset, **dict(self.config.model_overrides))

    def train_step(self) -> dict[str, float]:
        """One generator step (after the mel-only phase preceded by one discriminator step)."""
        cfg = self.config
        self.model.train()
        wav = self.sampler.sample(cfg.batch_size)
        frames = self.log_mel(wav)  # (B, ceil(T / hop), n_mels)
        fake = self.model(frames)[..., : wav.shape[-1]]
        logs: dict[str, float] = {}
        use_gan = self.gan_active
        if use_gan:
            logs["disc"] = self._discriminator_step(wav, fake.detach())
        mel = self.mel_loss(fake, wav)
        loss = cfg.mel_coeff * mel
        if cfg.input_mel_coeff:
            input_mel = (self.log_mel(fake) - frames).abs().mean()
            loss = loss + cfg.input_mel_coeff * input_mel
            logs["input_mel"] = input_mel.item()
        if use_gan:
            gan, fm = self._adversarial_terms(wav, fake)
            loss = loss + gan + fm
            logs.update(gan=gan.item(), fm=fm.item())
        self._generator_step(loss)
        logs.update(gen=loss.item(), mel=mel.item())
        return logs


def train_vocoder(config: VocoderTrainConfig, out_dir: str | Path, *, resume: bool = False, show_progress: bool = True,
                  cache_dir: str | Path | None = None, evaluate_clips: int = 10, command: str = "") -> Path:
    """Train (or, with ``resume``, continue) a mel vocoder; saves the model and its card in ``out_dir``.

    ``evaluate_clips`` held-out sentences per voice set go into the card's table (0: no evaluation, no card).
    """
    run, config = RunDir.open(out_dir, config, resume, extendable=("steps", "mel_only_steps"))
    clips = training_clips(config, cache_dir)
    logger.info("training clips: %d, %.0f s", len(clips), sum(len(c) for c in clips) / 24_000)
    sampler = CropSampler(clips, round(config.crop_seconds * 24_000), seed=config.seed)
    trainer = VocoderTrainer(config, sampler)
    if resume:
        trainer.load_checkpoint(run.load())
        logger.info("resumed from step %d", trainer.step)
    trainer.fit(run, show_progress)
    elapsed_s = run.elapsed_s
    trainer.model.eval()
    trainer.model.save_pretrained(run.path)
    if evaluate_clips:
        write_model_card(run.path, trainer.model, config, elapsed_s, evaluate_clips, command)
    return run.path


def write_model_card(output_dir: Path, model: MelVocoder, config: VocoderTrainConfig, elapsed_s: float,
                     clips_per_voice: int, command: str, name: str = "") -> None:
    """README.md: command, data, steps, wall time and the held-out vocoder-vs-Griffin-Lim table."""
    from pipelines.vocoder.evaluate import compare_with_griffin_lim, format_table

    table = format_table(compare_with_griffin_lim(model, clips_per_voice))
    params = sum(p.numel() for p in model.parameters())
    gan_steps = config.steps - min(config.steps, config.mel_only_steps)
    gan = (f"then {gan_steps} steps adding hinge GAN + feature matching with the multi-period (width "
           f"{config.mpd_width}) and multi-resolution (width {config.mrd_width}, weight {config.mrd_coeff:g}) "
           "discriminators" if gan_steps else "no GAN phase (all steps mel-only)")
    start = f", starting from the trained vocoder in `{config.init}`" if config.init else ""
    extra = (f" + {config.input_mel_coeff:g} x L1 between the output's 80-bin log-mel and the input frames"
             if config.input_mel_coeff else "")
    card = f"""# {name or output_dir.name}

A Vocos-style mel vocoder (Siuzdak 2023, arXiv 2306.00814) for Flow-Omni: 80-bin natural-log mel frames
(24 kHz, hop 320, n_fft 1280, 75 frames/s; `tokenizers_media.speech.mel.LogMel`) -> waveform, F frames ->
F x 320 samples. ConvNeXt backbone + ISTFT head shared with WavTokenizer (`tokenizers_media/nn/vocos.py`);
preset `{config.preset}`, {params / 1e6:.2f} M parameters.

## How it was made

```bash
{command or "(called from Python)"}
```

- **Steps:** {config.steps} generator steps{start}, batch {config.batch_size} x {config.crop_seconds:g} s crops;
  AdamW lr {config.lr:g} (discriminators {config.disc_lr:g}), betas {config.betas}, cosine decay.
- **Losses:** {config.mel_coeff:g} x mel L1 (100-bin){extra}; {gan}.
- **Wall time:** {elapsed_s:.0f} s ({elapsed_s / 60:.1f} min) on 1 torch thread.
- **Data:** espeak-ng speech, nothing downloaded: {config.train_utterances} template sentences in the 10 codec
  training voices (random speed 130-190, pitch 25-75) + {config.answer_utterances} dialogue sentences in
  Flow-Omni's answer voice (`en-us`, speed 165, pitch 50); random {config.crop_seconds:g} s crops, gain
  U(-6, -1) dB; seed {config.seed}.

## Held-out quality (vs Griffin-Lim)

{clips_per_voice} `eval`-split sentences per voice set (never trained on), peak -3 dB; each clip -> LogMel ->
system -> compared with the clip. RTF = vocoding time / audio time on 1 CPU thread.

{table}
"""
    (output_dir / "README.md").write_text(card)
