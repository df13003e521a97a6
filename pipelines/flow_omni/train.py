"""Train Flow-Omni on spoken dialogue (``mediaforge train flow-omni``): all four task formats in one model.

One stage with everything trainable (the paper's stage 2; there is no pretrained LLM or Whisper to freeze here).
Each batch mixes the tasks by ``task_weights``; spoken prompts are encoded inside the step. AdamW with warm-up
and cosine decay, gradient clipping, resumable checkpoints, a progress bar, and a JSON log of the losses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.data.speech import from_int16
from pipelines.flow_omni.codec import CodecBridge, codec_bridge
from pipelines.flow_omni.data import DialogueCorpus, TrainingItem, build_dialogue_corpus, make_item, mel_statistics
from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.streams import TASKS, collate
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowOmniTrainConfig:
    preset: str = "tiny"
    output: str = "mel"
    codec: str = "wavtokenizer-tiny"
    """Codec whose codes the ``codes`` baseline predicts (a zoo name or directory)."""
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    num_statements: int = 2000
    num_dialogues: int = 600
    task_weights: tuple[float, float, float, float] = (0.2, 0.4, 0.3, 0.1)
    """Sampling weights of ``asr``, ``tts``, ``s2s``, ``t2t``."""
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0
    save_dtype: str = "float32"
    """dtype of the saved model.safetensors (``float16`` halves a shipped file; training is always float32)."""

    def __post_init__(self) -> None:
        if len(self.task_weights) != len(TASKS) or min(self.task_weights) < 0 or sum(self.task_weights) <= 0:
            raise ValueError(f"task_weights must be {len(TASKS)} non-negative weights (asr, tts, s2s, t2t) with a "
                             f"positive sum, got {self.task_weights}")
        if self.save_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"save_dtype must be float32, float16 or bfloat16, got {self.save_dtype!r}")


class ItemSampler:
    """Draws (task, exchange) pairs: statements for ASR / TTS, dialogues for S2S / T2T."""

    def __init__(self, corpus: DialogueCorpus, model: FlowOmni, weights: tuple[float, ...], seed: int) -> None:
        self.corpus, self.model = corpus, model
        self.weights = np.asarray(weights, dtype=float) / sum(weights)
        self.rng = np.random.default_rng(seed)

    def draw(self) -> TrainingItem:
        task = TASKS[self.rng.choice(len(TASKS), p=self.weights)]
        pool = self.corpus.statements if task in ("asr", "tts") else self.corpus.dialogues
        return make_item(task, pool[self.rng.integers(len(pool))], self.model)


def training_loss(model: FlowOmni, items: list[TrainingItem]) -> dict[str, torch.Tensor]:
    """Teacher-forced losses of a list of items (spoken prompts encoded in one padded encoder call)."""
    spoken = [item.prompt_mel for item in items if item.prompt_mel is not None]
    speech = None
    if spoken:
        lengths = torch.tensor([m.shape[0] for m in spoken])
        padded = torch.nn.utils.rnn.pad_sequence(spoken, batch_first=True)
        speech = model.encode_speech(padded, lengths)
    return model(collate([item.streams for item in items]), speech)


def attach_codes(corpus: DialogueCorpus, codec: CodecBridge) -> None:
    """Replace each answer's mel by its codec codes (as floats), for the discrete baseline."""
    for exchange in corpus.statements + corpus.dialogues:
        exchange.answer_mel = codec.to_codes(from_int16(exchange.answer_wav)).float()


def train_flow_omni(config: FlowOmniTrainConfig, out_dir: str | Path, *, resume: bool = False,
                    show_progress: bool = True, stop_at: int | None = None,
                    cache_dir: str | Path | None = None) -> FlowOmni:
    """Train (with ``resume``, continue the run in ``out_dir``) and save the model to ``out_dir``."""
    run, config = RunDir.open(out_dir, config, resume, extendable=("steps", "task_weights", "save_dtype"))
    out = run.path
    torch.manual_seed(config.seed)
    model = FlowOmni.from_preset(config.preset, output=config.output)
    corpus = build_dialogue_corpus("train", config.num_statements, config.num_dialogues, config.seed, cache_dir,
                                   model.config.mel_spec)
    model.set_mel_stats(*mel_statistics(corpus))
    if config.output == "codes":
        attach_codes(corpus, codec_bridge(config.codec, model.config.mel_spec))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.steps, config.warmup_steps, min_ratio=0.05)
    step, log = 0, []
    if resume:
        saved = run.restore(model, optimizer, schedule)
        step, log = saved.step, saved.extra["log"]
    sampler = ItemSampler(corpus, model, config.task_weights, config.seed + step)
    last = min(config.steps, stop_at or config.steps)
    model.train()
    with TrainProgress("flow-omni", config.steps, step, show_progress) as bar:
        while step < last:
            losses = training_loss(model, [sampler.draw() for _ in range(config.batch_size)])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            values = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            if step % config.log_every == 0 or step == last:
                log.append({"step": step, "elapsed_s": round(run.elapsed_s, 1), **values})
                logger.info("step %d %s", step, values)
            bar.update(step, values)
            if step % config.checkpoint_every == 0 or step == last:
                run.save(step, model.state_dict(), optimizer.state_dict(), schedule.state_dict(), log=log)
    model.eval()
    model.save_pretrained(out, dtype=getattr(torch, config.save_dtype))
    (out / "train_log.json").write_text(json.dumps({"config": asdict(config), "steps": step, "elapsed_s": run.elapsed_s,
                                                    "log": log}, indent=1) + "\n")
    return model
