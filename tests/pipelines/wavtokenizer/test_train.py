"""WavTokenizer training loop: losses move, checkpoints resume exactly, the final model loads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.data.crops import CropSampler
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME, RunDir
from pipelines.wavtokenizer.train import TrainConfig, WavTokenizerTrainer, train_wavtokenizer
from tokenizers_media.audio.wavtokenizer import WavTokenizer

TINY_TINY = (("encoder_n_filters", 4), ("latent_dim", 16), ("codebook_size", 32), ("kmeans_iters", 3),
             ("backbone_dim", 32), ("backbone_intermediate_dim", 64), ("backbone_layers", 1))


def _config(**changes) -> TrainConfig:
    base = TrainConfig(steps=6, batch_size=2, crop_seconds=0.2, lr=2e-3, disc_lr=2e-3, mel_only_steps=3,
                       mpd_width=1, mrd_width=2, train_utterances=6, checkpoint_every=2, snapshot_every=3,
                       log_every=1, model_overrides=TINY_TINY)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech-cache")


def test_mel_loss_drops_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    clip = torch.sin(torch.arange(24000) * 2 * torch.pi * 220 / 24000) * 0.5
    sampler = CropSampler([clip], 2400, seed=0)
    trainer = WavTokenizerTrainer(_config(mel_only_steps=100, steps=100, lr=5e-3), sampler)
    losses = [trainer.train_step()["mel"] for _ in range(12)]
    assert sum(losses[-3:]) < 0.85 * sum(losses[:3])


def test_gan_phase_trains_discriminators(cache_dir) -> None:
    sampler = CropSampler([torch.randn(6000) * 0.1], 2400, seed=0)
    trainer = WavTokenizerTrainer(_config(mel_only_steps=1), sampler)
    first = trainer.train_step()
    assert set(first) == {"gen", "mel", "commit"}
    before = [p.detach().clone() for p in trainer.mpd.parameters()]
    logs = trainer.train_step()
    assert {"disc", "gan", "fm"} <= set(logs) and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.mpd.parameters(), strict=True))


def test_resume_continues_exactly(tmp_path, cache_dir) -> None:
    straight = train_wavtokenizer(_config(), tmp_path / "straight", show_progress=False, cache_dir=cache_dir)
    split = tmp_path / "split"
    train_wavtokenizer(_config(), split, show_progress=False, cache_dir=cache_dir, stop_at=4)
    assert Checkpoint.load(split / CHECKPOINT_NAME).step == 4
    with pytest.raises(FileExistsError):
        train_wavtokenizer(_config(), split, show_progress=False, cache_dir=cache_dir)
    train_wavtokenizer(_config(), split, resume=True, show_progress=False, cache_dir=cache_dir)
    assert Checkpoint.load(split / CHECKPOINT_NAME).step == 6
    a, b = WavTokenizer.from_pretrained(straight), WavTokenizer.from_pretrained(split)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    assert (straight / "snapshots" / "step-3" / "model.safetensors").is_file()
    codes = a.encode(torch.randn(1, 4800) * 0.1)
    assert codes.shape == (1, 1, 15) and int(codes.max()) < 32


def test_quantizer_warmup_defers_codebook_init() -> None:
    sampler = CropSampler([torch.randn(6000) * 0.1], 2400, seed=0)
    trainer = WavTokenizerTrainer(_config(quantizer_warmup_steps=2, mel_only_steps=10, steps=10), sampler)
    codebook = trainer.model.feature_extractor.quantizer.codebook
    for _ in range(2):
        assert trainer.train_step()["commit"] == 0.0
    assert not codebook.is_initialized
    trainer.train_step()
    assert codebook.is_initialized


def test_resume_extends_the_budget_and_the_mel_only_phase_but_keeps_the_recipe(tmp_path) -> None:
    run = tmp_path / "run"
    RunDir.open(run, _config(), resume=False)
    (run / CHECKPOINT_NAME).write_bytes(b"")  # a run exists
    _, resumed = RunDir.open(run, _config(steps=20, mel_only_steps=12, lr=1.0), resume=True,
                             extendable=("steps", "mel_only_steps"))
    assert (resumed.steps, resumed.mel_only_steps, resumed.lr) == (20, 12, _config().lr)
