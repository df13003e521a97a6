"""Flow-Omni: stream layout, model losses, speech encoder masking, flow head, cached generation, training progress."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.flow_omni.data import Exchange, make_item
from pipelines.flow_omni.flow_head import FlowHead
from pipelines.flow_omni.generate import GenerationOptions, generate, stream
from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.streams import (
    STATE_GEN,
    STATE_PAD,
    STATE_START,
    STATE_STOP,
    answer_streams,
    collate,
    concat,
    prompt_streams,
)
from pipelines.flow_omni.text import EOT, PAD, TASK_TOKENS, CharTokenizer
from pipelines.flow_omni.train import training_loss
from tokenizers_media.speech.mel import mel_floor_value

SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128,
         "encoder_dim": 32, "encoder_layers": 1, "encoder_heads": 2, "head_layers": 1, "flow_width": 64,
         "flow_blocks": 2, "codebook_size": 16, "n_mels": 16}


def small_model(**overrides) -> FlowOmni:
    torch.manual_seed(0)
    return FlowOmni.from_preset("tiny", **{**SMALL, **overrides}).eval()


def exchange(prompt: str, answer: str, frames: int = 10, n_mels: int = 16) -> Exchange:
    gen = torch.Generator().manual_seed(len(prompt) + frames)
    return Exchange(prompt, answer, torch.randn(frames + 5, n_mels, generator=gen) - 4,
                    torch.randn(frames, n_mels, generator=gen) - 4, torch.zeros(frames * 320, dtype=torch.int16))


def test_tokenizer_round_trip_and_errors() -> None:
    tok = CharTokenizer()
    assert tok.decode(tok.encode("What is two, plus ONE?")) == "what is two plus one"
    with pytest.raises(ValueError, match="outside this model's alphabet"):
        tok.encode("café 42")


def test_tts_layout_delays_speech_behind_text_and_scores_only_the_answer() -> None:
    groups = torch.arange(12.0).reshape(4, 3)
    prompt = prompt_streams("tts", 3, [10, 11])
    answer = answer_streams("tts", [10, 11], groups, delay=2, group_dim=3)
    assert prompt.text.tolist() == [TASK_TOKENS["tts"], 10, 11, EOT]
    assert answer.state.tolist() == [STATE_PAD, STATE_PAD, STATE_START] + [STATE_GEN] * 4 + [STATE_STOP]
    assert answer.text.tolist() == [10, 11, EOT] + [PAD] * 5
    batch = collate([concat(prompt, answer)])
    # the hidden state at `start` predicts the first group; the last `generating` position predicts `stop`
    start = 4 + 2
    assert torch.equal(batch.frame_target[0, start], groups[0])
    assert batch.state_target[0, start + 4] == STATE_STOP
    assert batch.frame_mask[0].sum() == 4
    assert batch.loss_mask[0].tolist() == [False] * 3 + [True] * 8 + [False]


def test_speech_prompt_layout_and_padding() -> None:
    asr = concat(prompt_streams("asr", 2, speech_positions=3), answer_streams("asr", [7], None, 4, 2))
    t2t = concat(prompt_streams("t2t", 2, [7, 8]), answer_streams("t2t", [9], None, 4, 2))
    batch = collate([asr, t2t])
    assert batch.speech_slot[0].tolist() == [False, True, True, True, False, False]
    assert batch.attention_mask.sum(1).tolist() == [6, 6]
    with pytest.raises(ValueError, match="takes speech"):
        prompt_streams("s2s", 2, [1, 2])


@pytest.mark.parametrize("output", ["mel", "codes"])
def test_all_four_tasks_train_in_one_batch(output: str) -> None:
    model = small_model(output=output).train()
    data = exchange("say a red cat", "a red cat")
    if output == "codes":
        data.answer_mel = torch.randint(0, 16, (10,)).float()
    items = [make_item(task, data, model) for task in ("asr", "tts", "s2s", "t2t")]
    losses = training_loss(model, items)
    expected = {"text", "state", "loss"} | ({"flow", "readout"} if output == "mel" else {"codes"})
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0  # the spoken prompts reach the loss


def test_speech_encoder_is_padding_invariant() -> None:
    model = small_model()
    short, long = torch.randn(9, 16), torch.randn(14, 16)
    alone = model.encode_speech(short[None])[0]
    padded = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    batched = model.encode_speech(padded, torch.tensor([9, 14]))
    assert alone.shape[0] == int(model.encoder.output_lengths(torch.tensor(9))) == 3
    torch.testing.assert_close(batched[0], alone, atol=1e-5, rtol=1e-5)


def test_flow_head_learns_a_shifted_gaussian() -> None:
    torch.manual_seed(0)
    head = FlowHead(dim=4, cond_dim=8, width=64, blocks=2)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    target_mean = torch.tensor([2.0, -1.0, 0.5, 3.0])
    cond = torch.zeros(64, 8)
    for _ in range(200):
        x1 = target_mean + 0.1 * torch.randn(64, 4)
        loss = head.loss(x1, cond, draws=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    samples = head.sample(cond, steps=10, generator=torch.Generator().manual_seed(0))
    assert (samples.mean(0) - target_mean).abs().max() < 0.2


def test_cached_generation_equals_recomputation_and_is_seeded() -> None:
    model = small_model()
    options = GenerationOptions(max_groups=6, seed=3)
    cached = generate(model, "tts", "a cat", options=options)
    full = generate(model, "tts", "a cat", options=GenerationOptions(max_groups=6, seed=3, use_cache=False))
    other = generate(model, "tts", "a cat", options=GenerationOptions(max_groups=6, seed=4))
    assert cached.text == "a cat"  # TTS forces its text into the text stream
    assert cached.frames.shape[0] % model.config.frames_per_step == 0 and cached.frames.shape[1] == 16
    torch.testing.assert_close(cached.frames, full.frames, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(cached.frames, other.frames)
    assert bool((cached.frames >= mel_floor_value()).all())


def test_stream_yields_delay_then_frames_until_the_cap() -> None:
    model = small_model(delay=2)
    events = list(stream(model, "s2s", speech_mel=torch.randn(20, 16) - 4,
                         options=GenerationOptions(max_groups=3, max_text_tokens=4)))
    with_frames = [e.step for e in events if e.frames is not None]
    assert with_frames and with_frames[0] == 3  # pad, pad, start, then the first group
    assert len(with_frames) <= 3 and all(e.frames.shape == (3, 16) for e in events if e.frames is not None)
    text_only = generate(model, "t2t", "what is one plus one", options=GenerationOptions(max_text_tokens=5))
    assert text_only.frames.shape == (0, 16) and len(text_only.text) <= 5


def test_save_load_round_trip_is_strict_and_deterministic(tmp_path: Path) -> None:
    model = small_model()
    model.set_mel_stats(torch.full((16,), -4.0), torch.full((16,), 2.0))
    model.save_pretrained(tmp_path / "fo")
    loaded = FlowOmni.from_pretrained(tmp_path / "fo")
    assert torch.equal(loaded.mel_mean, model.mel_mean)
    a = generate(model, "tts", "a dog", options=GenerationOptions(max_groups=4))
    b = generate(loaded, "tts", "a dog", options=GenerationOptions(max_groups=4))
    torch.testing.assert_close(a.frames, b.frames)

    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = FlowOmni.from_pretrained(tmp_path / "half")
    size = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fo", "half")}
    assert size["half"] < 0.55 * size["fo"]
    weight = half.flow.input.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, model.flow.input.weight.half().float())


def test_training_steps_reduce_the_loss() -> None:
    model = small_model().train()
    data = [exchange(s, s, frames=9) for s in ("a red cat", "the big dog", "a blue box", "my friend")]
    items = [make_item(task, ex, model) for ex in data for task in ("tts", "asr")]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(40):
        loss = training_loss(model, items)["loss"]
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.7 * first


def test_paper_preset_has_qwen2_05b_decoder_sizes() -> None:
    with torch.device("meta"):
        model = FlowOmni.from_preset("paper")
    body = sum(p.numel() for n, p in model.llm.named_parameters() if "embed_tokens" not in n)
    assert 355e6 < body < 362e6  # Qwen2-0.5B: 494 M in all, 136 M of them the 151,936-token embedding
    assert model.config.hidden_size == 896 and len(model.llm.layers) == 24


@pytest.mark.parametrize("weights", ["1,2", "1,2,x,4", "0,0,0,0", "-1,1,1,1"])
def test_train_command_rejects_bad_task_weights(tmp_path: Path, weights: str) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    result = CliRunner().invoke(app, ["train", "flow-omni", "-o", str(tmp_path / "run"), "--task-weights", weights])
    assert result.exit_code == 2 and "weights" in result.output
    assert not (tmp_path / "run").exists()  # rejected before any data or model is built
