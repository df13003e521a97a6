"""Score Flow-Omni on held-out dialogue: intelligibility, duration, mel distance, answers, and robustness.

Everything is judged offline (spec flow_omni.md §7): the phoneme CTC judge (trained on voices the generator never
speaks) transcribes generated log-mel, and its error against the espeak phonemes of the text is the phone error
rate (PER); its PER on the espeak references is the ceiling. The codec baseline's codes are decoded by their
codec and re-analysed into the same log-mel, so both models are judged on the same features.

Tasks scored on unseen sentences / questions:
- ``tts``: PER, teacher-forced PER (frames sampled from the ground-truth history: the head alone), DTW log-mel
  distance to the reference with a mean-frame baseline, duration ratio, stop rate, real-time factor;
- ``asr``: character error rate of the transcript, clean and with white noise at ``snr_db``;
- ``s2s``: answer accuracy of the text stream and PER of the speech stream against the answer, clean and noisy;
- ``t2t``: answer accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from pipelines.data.phonemes import phonemize
from pipelines.data.speech import from_int16
from pipelines.evaluation.speech_metrics import dtw_mel_distance, edit_distance, phone_error_rate
from pipelines.flow_omni.codec import CodecBridge
from pipelines.flow_omni.data import DialogueCorpus, Exchange, make_item
from pipelines.flow_omni.generate import GenerationOptions, generate
from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.streams import collate
from tokenizers_media.speech.mel import LogMel
from tokenizers_media.speech.recognizer import PhonemeRecognizer


@dataclass
class TTSScores:
    per: float
    teacher_forced_per: float
    reference_per: float
    dtw_mel: float
    dtw_mean_frame: float
    duration_ratio: float
    abs_log_duration_ratio: float
    stop_rate: float
    real_time_factor: float
    utterances: int


@dataclass
class DialogueScores:
    asr_cer: float
    s2s_accuracy: float
    s2s_per: float
    t2t_accuracy: float
    questions: int


@dataclass(frozen=True)
class FlowOmniEvalConfig:
    """What ``mediaforge eval flow-omni`` may set (unseen material, noise level, flow steps)."""

    num_statements: int = 30
    """Unseen sentences (TTS and ASR)."""
    num_dialogues: int = 30
    """Unseen questions (speech-to-speech and text-to-text)."""
    snr_db: float = 10.0
    """White-noise level of the noisy spoken prompts."""
    flow_steps: int | None = GenerationOptions.flow_steps
    """Euler steps per frame group (``None``: the model's)."""


def add_noise(wav: torch.Tensor, snr_db: float | None, seed: int) -> torch.Tensor:
    """White noise at ``snr_db`` dB below the clip's power (None: the clean clip)."""
    if snr_db is None:
        return wav
    noise = torch.randn(wav.shape, generator=torch.Generator().manual_seed(seed))
    scale = math.sqrt(wav.pow(2).mean().item() / 10 ** (snr_db / 10))
    return wav + scale * noise


def _judge(judge: PhonemeRecognizer, mel: torch.Tensor) -> list[str]:
    with torch.inference_mode():
        return judge.transcribe(mel[None].float())[0]


def _as_mel(model: FlowOmni, frames: torch.Tensor, codec: CodecBridge | None) -> torch.Tensor:
    if model.config.output == "mel":
        return frames
    if codec is None:
        raise ValueError("scoring a codes model needs its codec (a CodecBridge)")
    return codec.to_mel(frames)


@torch.inference_mode()
def teacher_forced_frames(model: FlowOmni, exchange: Exchange, codec: CodecBridge | None = None) -> torch.Tensor:
    """Frames sampled at every position from the ground-truth history (one pass; isolates the head)."""
    if model.config.output == "codes":
        if codec is None:
            raise ValueError("teacher forcing a codes model needs its codec (a CodecBridge)")
        exchange = replace(exchange, answer_mel=codec.to_codes(from_int16(exchange.answer_wav)).float())
    item = make_item("tts", exchange, model)
    batch = collate([item.streams])
    e = model.embed(batch.text, batch.state, batch.frames, torch.Generator().manual_seed(0))
    hidden = model.llm(inputs_embeds=e).last_hidden_state
    cond = model.output_module(inputs_embeds=hidden).last_hidden_state[batch.frame_mask]
    groups = model.sample_group(cond, generator=torch.Generator().manual_seed(0))
    frames = model.groups_to_frames(groups)
    return model.denormalize_mel(frames) if model.config.output == "mel" else frames.long()


def score_tts(model: FlowOmni, judge: PhonemeRecognizer, exchanges: list[Exchange], options: GenerationOptions,
              codec: CodecBridge | None = None) -> TTSScores:
    refs = phonemize([e.answer for e in exchanges])
    hyps, forced, ref_hyps, dtw, dtw_mean, ratios, stops = [], [], [], [], [], [], []
    wall, audio_seconds = 0.0, 0.0
    mean_frame = model.mel_mean
    for exchange in exchanges:
        ref_mel = exchange.answer_mel.float()
        start = time.perf_counter()
        result = generate(model, "tts", exchange.answer, options=options)
        wall += time.perf_counter() - start
        gen_mel = _as_mel(model, result.frames, codec)
        audio_seconds += gen_mel.shape[0] / model.config.mel_spec.frame_rate
        hyps.append(_judge(judge, gen_mel))
        forced.append(_judge(judge, _as_mel(model, teacher_forced_frames(model, exchange, codec), codec)))
        ref_hyps.append(_judge(judge, ref_mel))
        dtw.append(dtw_mel_distance(gen_mel, ref_mel))
        dtw_mean.append(dtw_mel_distance(mean_frame.expand(ref_mel.shape[0], -1), ref_mel))
        ratios.append(gen_mel.shape[0] / ref_mel.shape[0])
        stops.append(result.stopped)
    return TTSScores(phone_error_rate(hyps, refs), phone_error_rate(forced, refs), phone_error_rate(ref_hyps, refs),
                     float(np.mean(dtw)), float(np.mean(dtw_mean)), float(np.mean(ratios)),
                     float(np.mean(np.abs(np.log(ratios)))), float(np.mean(stops)), wall / max(audio_seconds, 1e-9),
                     len(exchanges))


def codec_ceiling_per(judge: PhonemeRecognizer, exchanges: list[Exchange], codec: CodecBridge) -> float:
    """The judge's PER on a codec's resynthesis of the references: the best its codes can do."""
    hyps = [_judge(judge, codec.to_mel(codec.to_codes(from_int16(e.answer_wav)))) for e in exchanges]
    return phone_error_rate(hyps, phonemize([e.answer for e in exchanges]))


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


def score_dialogue(model: FlowOmni, judge: PhonemeRecognizer, corpus: DialogueCorpus, options: GenerationOptions,
                   snr_db: float | None = None, codec: CodecBridge | None = None) -> DialogueScores:
    """ASR on the statements, S2S and T2T on the dialogues; spoken prompts get noise at ``snr_db``."""
    log_mel = LogMel(model.config.mel_spec)

    def heard(exchange: Exchange, i: int) -> torch.Tensor:
        if exchange.prompt_wav is None:
            raise ValueError("scoring spoken prompts needs an eval corpus that kept its prompt waveforms")
        with torch.inference_mode():
            return log_mel(add_noise(from_int16(exchange.prompt_wav), snr_db, seed=i)[None])[0]

    edits = chars = 0
    for i, exchange in enumerate(corpus.statements):
        text = generate(model, "asr", speech_mel=heard(exchange, i), options=options).text
        edits += edit_distance(_normalized(text), _normalized(exchange.prompt))
        chars += len(_normalized(exchange.prompt))
    s2s_right, t2t_right, hyps = 0, 0, []
    for i, exchange in enumerate(corpus.dialogues):
        spoken = generate(model, "s2s", speech_mel=heard(exchange, 10_000 + i), options=options)
        s2s_right += _normalized(spoken.text) == _normalized(exchange.answer)
        frames = _as_mel(model, spoken.frames, codec) if spoken.frames.shape[0] else None
        hyps.append(_judge(judge, frames) if frames is not None else [])
        written = generate(model, "t2t", exchange.prompt, options=options).text
        t2t_right += _normalized(written) == _normalized(exchange.answer)
    n = max(1, len(corpus.dialogues))
    s2s_per = phone_error_rate(hyps, phonemize([e.answer for e in corpus.dialogues])) if corpus.dialogues else 0.0
    return DialogueScores(edits / max(1, chars), s2s_right / n, s2s_per, t2t_right / n, len(corpus.dialogues))


def as_rows(scores: TTSScores | DialogueScores) -> dict[str, float]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(scores).items()}
