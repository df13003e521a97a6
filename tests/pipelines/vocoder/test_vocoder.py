"""Mel vocoder: shape contract, save/load, Griffin-Lim baseline, streaming, training progress, shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.data.crops import CropSampler
from pipelines.data.speech import synthesize
from pipelines.vocoder.evaluate import eval_voice_clips
from pipelines.vocoder.train import VocoderTrainConfig, VocoderTrainer
from tokenizers_media.modeling import load_pretrained
from tokenizers_media.speech.griffin_lim import griffin_lim
from tokenizers_media.speech.mel import LogMel, MelSpec, mel_floor_value
from tokenizers_media.speech.vocoder import MelVocoder, StreamingVocoder, vocode_chunks

SHIPPED = Path(__file__).resolve().parents[3] / "pipelines" / "weights" / "vocoder-tiny"
MICRO = {"dim": 32, "intermediate_dim": 64, "num_layers": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def speech_mel() -> torch.Tensor:
    """Log-mel (1, F, 80) of a short espeak sentence."""
    wav = synthesize("the boy sees a red ball", "en-us", 165, 50)
    return LogMel()(wav[None])


def _trained_like(seed: int = 0) -> MelVocoder:
    """A micro vocoder with non-trivial ConvNeXt residuals (layer scale raised from its 1/L init)."""
    torch.manual_seed(seed)
    model = MelVocoder.from_preset("tiny", **MICRO).eval()
    with torch.no_grad():
        for block in model.backbone.convnext:
            block.gamma.fill_(0.5)
    return model


@pytest.mark.parametrize("frames", [1, 7, 75, 120])
def test_output_length_is_frames_times_hop(frames: int) -> None:
    model = _trained_like()
    out = model.vocode(torch.randn(2, frames, 80) - 4)
    assert out.shape == (2, frames * 320)
    assert torch.isfinite(out).all()


def test_presets_sizes_and_properties() -> None:
    tiny, paper = MelVocoder.from_preset("tiny"), MelVocoder.from_preset("paper")
    assert sum(p.numel() for p in tiny.parameters()) <= 2_500_000
    assert (paper.config.dim, paper.config.intermediate_dim, paper.config.num_layers) == (512, 1536, 8)
    assert (tiny.sample_rate, tiny.hop_length) == (24_000, 320)
    assert tiny.config.mel_spec == MelSpec()


def test_input_is_clamped_to_the_silence_floor() -> None:
    model = _trained_like()
    frames = torch.randn(1, 20, 80) - 4
    below = frames.clone()
    below[:, 5:9] = -40.0  # far below log(1e-5)
    at_floor = below.clamp(min=mel_floor_value())
    assert torch.equal(model.vocode(below), model.vocode(at_floor))


def test_save_load_round_trip_is_strict_and_deterministic(tmp_path: Path) -> None:
    model = _trained_like(seed=3)
    frames = torch.randn(1, 30, 80) - 4
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, MelVocoder) and loaded.config == model.config
    assert torch.equal(loaded.vocode(frames), model.vocode(frames))
    assert torch.equal(loaded.vocode(frames), loaded.vocode(frames))


def test_griffin_lim_baseline_is_aligned_and_finite(speech_mel: torch.Tensor) -> None:
    wav = griffin_lim(speech_mel)
    assert wav.shape == (1, speech_mel.shape[1] * 320)
    assert torch.isfinite(wav).all() and wav.abs().max() > 1e-3
    # On the frame grid: re-analysing the output gives back the input mel far better than a one-hop shift does.
    log_mel = LogMel()
    error = (log_mel(wav) - speech_mel)[:, 2:-2].abs().mean()
    shifted = (log_mel(torch.roll(wav, 320, dims=1)) - speech_mel)[:, 2:-2].abs().mean()
    assert error < 0.3 and error < 0.6 * shifted


@pytest.mark.parametrize("chunk", [8, 16, 32])
def test_streaming_matches_whole_clip(speech_mel: torch.Tensor, chunk: int) -> None:
    model = _trained_like()
    whole = model.vocode(speech_mel)
    stream = torch.cat(list(vocode_chunks(model.vocode, speech_mel, 320, chunk)), dim=1)
    assert stream.shape == whole.shape
    assert (stream - whole).abs().max() < 0.02 * whole.abs().max()


def test_streaming_with_uneven_pushes_covers_every_frame(speech_mel: torch.Tensor) -> None:
    model = _trained_like()
    stream = StreamingVocoder(model.vocode, 320, chunk_frames=16, left_context=8, lookahead=2)
    pieces, begin = [], 0
    for size in (3, 1, 20, 5, 40, 2):
        pieces.append(stream.push(speech_mel[:, begin : begin + size]))
        begin += size
    pieces.append(stream.push(speech_mel[:, begin:]))
    pieces.append(stream.flush())
    assert sum(p.shape[1] for p in pieces) == speech_mel.shape[1] * 320
    assert sum(p.shape[1] > 0 for p in pieces) >= 3  # audio came out before the end


def test_training_steps_reduce_the_mel_loss() -> None:
    clips = [synthesize(text, "en-us", 165, 50) for text in ("the cat has a hat", "two plus two is four")]
    config = VocoderTrainConfig(model_overrides=tuple(MICRO.items()), batch_size=4, lr=3e-3, mel_only_steps=20,
                                input_mel_coeff=45.0, mpd_width=2, mrd_width=2, steps=22)
    trainer = VocoderTrainer(config, CropSampler(clips, 6400, seed=0))
    held = CropSampler(clips, 6400, seed=1).sample(4)

    def held_losses() -> tuple[float, float]:
        """(100-bin training mel loss, L1 to the input log-mel) on a fixed held batch."""
        with torch.no_grad():
            frames = trainer.log_mel(held)
            fake = trainer.model(frames)[..., : held.shape[-1]]
            return float(trainer.mel_loss(fake, held)), float((trainer.log_mel(fake) - frames).abs().mean())

    before = held_losses()
    mel_phase = [trainer.train_step() for _ in range(config.mel_only_steps)]
    after = held_losses()
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1]
    gan_phase = [trainer.train_step() for _ in range(config.steps - config.mel_only_steps)]
    assert "disc" not in mel_phase[-1] and all({"disc", "gan", "fm"} <= set(logs) for logs in gan_phase)
    assert all(torch.isfinite(torch.tensor(list(logs.values()))).all() for logs in mel_phase + gan_phase)


def test_trainer_can_start_from_a_trained_vocoder(tmp_path: Path) -> None:
    torch.manual_seed(3)
    MelVocoder.from_preset("tiny", **MICRO).save_pretrained(tmp_path)
    config = VocoderTrainConfig(init=str(tmp_path), mpd_width=2, mrd_width=2)
    trainer = VocoderTrainer(config, CropSampler([torch.zeros(8000)], 6400, seed=0))
    saved = load_pretrained(tmp_path).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())


def test_shipped_vocoder_learned_but_trails_griffin_lim() -> None:
    """vocoder-tiny (22 min of CPU) does NOT beat Griffin-Lim (log-mel L1 ~0.21 vs ~0.14 on these clips, see its
    card): pin what is true, far better than its untrained twin and within 2x of Griffin-Lim."""
    model = MelVocoder.from_pretrained(SHIPPED)
    torch.manual_seed(0)
    untrained = MelVocoder(model.config).eval()
    log_mel = LogMel(model.config.mel_spec)
    for clip in eval_voice_clips("en-us", 2):
        frames = log_mel(clip[None])
        ours, twin, baseline = ((log_mel(vocode(frames)) - frames).abs().mean()
                                for vocode in (model.vocode, untrained.vocode, griffin_lim))
        assert ours < 0.2 * twin and ours < 2 * baseline
