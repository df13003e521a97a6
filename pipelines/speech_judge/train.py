"""Train the intelligibility judge (``mediaforge train speech-judge``): a phoneme CTC recogniser on espeak speech.

Data: codec-corpus sentences (``make_sentences``) and Flow-Omni dialogue sentences (``all_sentences``) of the
``train`` split, spoken by ``JUDGE_VOICES`` (never the generator's answer voice) at random speed and pitch,
labelled with their ``en-us`` phonemes. The model card reports PER on held-out (``eval``) sentences in the judge
voices and in the answer voice at its fixed speed and pitch: the latter is the judge's ceiling on the speech
Flow-Omni is trained to produce.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from pipelines.data.dialogue import ANSWER_PITCH, ANSWER_SPEED, ANSWER_VOICE, JUDGE_VOICES, all_sentences
from pipelines.data.phonemes import PHONEME_INVENTORY, phoneme_ids, phonemize
from pipelines.data.speech import (
    PITCH_RANGE,
    SPEED_RANGE,
    default_cache_dir,
    load_int16_clips,
    make_sentences,
    save_int16_clips,
    synthesize,
    to_int16,
)
from pipelines.evaluation.speech_metrics import phone_error_rate
from pipelines.training.progress import TrainProgress
from tokenizers_media.speech.mel import LogMel
from tokenizers_media.speech.recognizer import PhonemeRecognizer

logger = logging.getLogger(__name__)

JUDGE_CORPUS_VERSION = 1
"""Bump when synthesis or phonemisation changes so stale caches are not reused."""


@dataclass(frozen=True)
class JudgeTrainConfig:
    preset: str = "tiny"
    steps: int = 1200
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    codec_sentences: int = 2500
    dialogue_sentences: int = 2500
    eval_sentences: int = 100
    seed: int = 0


@dataclass
class JudgeCorpus:
    """Utterances as log-mel ``(F_i, 80)`` with their texts, voices and phoneme units."""

    mels: list[torch.Tensor]
    texts: list[str]
    voices: list[str]
    phonemes: list[list[str]]


def judge_texts(split: str, codec_count: int, dialogue_count: int, seed: int) -> list[str]:
    return make_sentences(split, codec_count, seed) + all_sentences(split, dialogue_count, seed)


def judge_corpus(split: str, codec_count: int, dialogue_count: int, seed: int = 0, answer_voice: bool = False,
                 cache_dir: str | Path | None = None) -> JudgeCorpus:
    """Synthesise (or load from the cache) the judge's utterances.

    ``answer_voice=False``: the texts cycle through ``JUDGE_VOICES`` with seeded random speed and pitch;
    ``True``: every text in ``ANSWER_VOICE`` at ``ANSWER_SPEED`` / ``ANSWER_PITCH``.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = "answer" if answer_voice else "judge"
    path = cache / f"judge-v{JUDGE_CORPUS_VERSION}-{split}-{tag}-c{codec_count}-d{dialogue_count}-s{seed}.pt"
    if not path.is_file():
        _synthesize_to(path, split, judge_texts(split, codec_count, dialogue_count, seed), seed, answer_voice)
    clips, saved = load_int16_clips(path)
    log_mel = LogMel()
    with torch.no_grad():
        mels = [log_mel(clip[None])[0].half() for clip in clips]
    return JudgeCorpus(mels, saved["texts"], saved["voices"], saved["phonemes"])


def _synthesize_to(path: Path, split: str, texts: list[str], seed: int, answer_voice: bool) -> None:
    rng = np.random.default_rng([seed, 20 if split == "train" else 21])
    voices, clips = [], []
    with Progress() as bar:
        task = bar.add_task(f"espeak {split} {'answer' if answer_voice else 'judge'} voices", total=len(texts))
        for i, text in enumerate(texts):
            if answer_voice:
                voice, speed, pitch = ANSWER_VOICE, ANSWER_SPEED, ANSWER_PITCH
            else:
                voice = JUDGE_VOICES[i % len(JUDGE_VOICES)]
                speed, pitch = rng.integers(*SPEED_RANGE), rng.integers(*PITCH_RANGE)
            voices.append(voice)
            clips.append(to_int16(synthesize(text, voice, speed, pitch)))
            bar.update(task, advance=1)
    save_int16_clips(path, clips, texts=texts, voices=voices, phonemes=phonemize(texts))
    logger.info("synthesised %d %s utterances into %s", len(texts), split, path)


def pad_batch(mels: list[torch.Tensor], phonemes: list[list[str]]) -> tuple[torch.Tensor, ...]:
    """Mels ``(B, F, 80)`` float32 + lengths, targets ``(B, S)`` + target lengths, zero-padded."""
    lengths = torch.tensor([m.shape[0] for m in mels])
    batch = torch.zeros(len(mels), int(lengths.max()), mels[0].shape[1])
    for i, m in enumerate(mels):
        batch[i, :m.shape[0]] = m.float()
    ids = [phoneme_ids(p) for p in phonemes]
    target_lengths = torch.tensor([len(t) for t in ids])
    targets = torch.zeros(len(ids), max(1, int(target_lengths.max())), dtype=torch.long)
    for i, t in enumerate(ids):
        targets[i, :len(t)] = torch.tensor(t, dtype=torch.long)
    return batch, lengths, targets, target_lengths


def length_buckets(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches: shuffled, then sorted by length within groups of 8 batches (less padding)."""
    order = rng.permutation(len(lengths))
    group = batch_size * 8
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size) if len(chunk[i:])
                    >= batch_size // 2]
    return [batches[i] for i in rng.permutation(len(batches))]


def augment(mel: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Robustness to generated mel: Gaussian noise, two frequency masks and two time masks filled with the
    utterance's mean frame (the recogniser normalises per utterance, so the mean is neutral)."""
    b, frames, bins = mel.shape
    mean = mel.sum(1, keepdim=True) / lengths[:, None, None]
    noisy = mel + torch.randn(mel.shape, generator=generator) * torch.rand(b, 1, 1, generator=generator) * 0.5
    keep = torch.ones(b, frames, bins, dtype=torch.bool)
    for size, axis in ((10, 2), (8, 1)):
        for _ in range(2):
            width = torch.randint(0, size + 1, (b,), generator=generator)
            extent = bins if axis == 2 else frames
            start = (torch.rand(b, generator=generator) * (extent - width)).long()
            pos = torch.arange(extent)[None]
            band = (pos >= start[:, None]) & (pos < (start + width)[:, None])
            keep &= ~(band[:, None, :] if axis == 2 else band[:, :, None])
    return torch.where(keep, noisy, mean)


@torch.no_grad()
def corpus_per(model: PhonemeRecognizer, corpus: JudgeCorpus, batch_size: int = 32) -> float:
    """Greedy-CTC phone error rate of ``model`` on a corpus."""
    model.eval()
    hyps = []
    for start in range(0, len(corpus.mels), batch_size):
        mel, lengths, _, _ = pad_batch(corpus.mels[start:start + batch_size],
                                       corpus.phonemes[start:start + batch_size])
        hyps += model.transcribe(mel, lengths)
    return phone_error_rate(hyps, corpus.phonemes)


def train_speech_judge(config: JudgeTrainConfig, out_dir: Path, *, resume: bool = False, show_progress: bool = True,
                       command: str = "") -> dict[str, float]:
    """Train, evaluate on held-out sentences, save the model directory with a README; returns the metrics.

    A run keeps no checkpoint (minutes on a CPU), so ``resume`` is refused rather than silently ignored."""
    if resume:
        raise ValueError("speech-judge runs keep no checkpoint: nothing to resume, start over instead")
    torch.manual_seed(config.seed)
    train = judge_corpus("train", config.codec_sentences, config.dialogue_sentences, config.seed)
    model = PhonemeRecognizer.from_preset(config.preset, vocab_size=len(PHONEME_INVENTORY),
                                          symbols=PHONEME_INVENTORY)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=config.lr, total_steps=config.steps,
                                                pct_start=min(0.3, config.warmup / config.steps))
    rng, gen = np.random.default_rng(config.seed), torch.Generator().manual_seed(config.seed)
    lengths = [m.shape[0] for m in train.mels]
    batches: list[np.ndarray] = []
    start, first_loss, loss_value = time.perf_counter(), float("nan"), float("nan")
    model.train()
    with TrainProgress("speech-judge", config.steps, enabled=show_progress) as bar:
        for step in range(config.steps):
            if not batches:
                batches = length_buckets(lengths, config.batch_size, rng)
            idx = batches.pop()
            mel, mel_lengths, targets, target_lengths = pad_batch([train.mels[i] for i in idx],
                                                                  [train.phonemes[i] for i in idx])
            loss = model.ctc_loss(augment(mel, mel_lengths, gen), mel_lengths, targets, target_lengths)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            loss_value = loss.item()
            first_loss = loss_value if step == 0 else first_loss
            bar.update(step + 1, {"ctc": loss_value})
            if step % 100 == 0:
                logger.info("step %d ctc %.4f", step, loss_value)
    wall = time.perf_counter() - start
    metrics = {"first_loss": first_loss, "final_loss": loss_value, **evaluate(model, config)}
    model.save_pretrained(out_dir)
    (Path(out_dir) / "README.md").write_text(_model_card(config, model, metrics, wall, len(train.mels), command))
    return metrics


def evaluate(model: PhonemeRecognizer, config: JudgeTrainConfig) -> dict[str, float]:
    """PER on held-out sentences in the judge voices and in the answer voice."""
    n = config.eval_sentences
    judge = judge_corpus("eval", n, n, config.seed)
    answer = judge_corpus("eval", n, n, config.seed, answer_voice=True)
    return {"per_judge_voices": corpus_per(model, judge), "per_answer_voice": corpus_per(model, answer)}


def _model_card(config: JudgeTrainConfig, model: PhonemeRecognizer, metrics: dict[str, float], wall: float,
                utterances: int, command: str) -> str:
    params = sum(p.numel() for p in model.parameters())
    n = config.eval_sentences
    return f"""# speech-judge

Phoneme CTC recogniser (`tokenizers_media/speech/recognizer.py`, preset `{config.preset}`, {params / 1e6:.2f} M
parameters) on 75 frames/s log-mel (`LogMel`, 80 bins). Flow-Omni's offline intelligibility judge: it reads
generated log-mel directly (no vocoder) and its greedy transcription is scored as phone error rate (PER) against
the `en-us` espeak-ng phonemes of the text (`pipelines/data/phonemes.py`: no stress, no word boundaries,
{len(PHONEME_INVENTORY)} symbols incl. blank and `<unk>`).

- Command: `{command or 'mediaforge train speech-judge'}`
- Data: {utterances} espeak-ng utterances of `train`-split sentences ({config.codec_sentences} codec-corpus
  sentences from `make_sentences` + {config.dialogue_sentences} dialogue sentences from `all_sentences`), spoken
  by the {len(JUDGE_VOICES)} judge voices ({", ".join(JUDGE_VOICES)}) at random speed
  {SPEED_RANGE[0]}-{SPEED_RANGE[1]} wpm and pitch {PITCH_RANGE[0]}-{PITCH_RANGE[1]}; labels: `en-us` phonemes
  of the text whatever the voice's accent; augmentation: Gaussian noise, 2 frequency masks, 2 time masks.
- Steps: {config.steps} x batch {config.batch_size} (AdamW, one-cycle LR {config.lr}), seed {config.seed};
  CTC loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f}
- Wall time: {wall:.0f} s on CPU ({torch.get_num_threads()} thread(s), shared machine), after synthesis

## Held-out PER (`eval`-split sentences: {n} codec + {n} dialogue)

| speech | PER |
|---|---|
| judge voices (random speed/pitch) | {metrics['per_judge_voices']:.4f} |
| answer voice `{ANSWER_VOICE}`, speed {ANSWER_SPEED}, pitch {ANSWER_PITCH} (never trained on) | \
{metrics['per_answer_voice']:.4f} |

The answer-voice row is the judge's ceiling on the voice Flow-Omni speaks: a generated utterance cannot be
expected to score better than espeak's own rendering of it.
"""
