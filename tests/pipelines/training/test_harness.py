"""The shared training harness: run directory rule, atomic checkpoints, resume state, the schedule's values."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME, RunDir, config_from_dict, config_to_dict
from pipelines.training.schedule import warmup_cosine, warmup_cosine_factor


@dataclass(frozen=True)
class Inner:
    alpha: float = 1.0


@dataclass(frozen=True)
class ToyConfig:
    steps: int = 4
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    overrides: tuple[tuple[str, int], ...] = ()
    inner: Inner | None = None


def _toy() -> tuple[torch.nn.Linear, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optim, warmup_cosine(optim, total_steps=4, warmup_steps=1)


def _update(model: torch.nn.Linear, optim: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
            step: int) -> None:
    x = torch.arange(6.0).reshape(2, 3) + step
    optim.zero_grad()
    model(x).pow(2).mean().backward()
    optim.step()
    sched.step()


def test_config_survives_the_json_round_trip() -> None:
    config = ToyConfig(overrides=(("a", 1),), inner=Inner(0.5))
    assert config_from_dict(ToyConfig, json.loads(json.dumps(config_to_dict(config)))) == config


def test_a_non_empty_directory_without_resume_is_refused(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        RunDir.open(tmp_path, ToyConfig(), resume=False)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "train_config.json").exists()
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME):
        RunDir.open(tmp_path / "new", ToyConfig(), resume=True)


def test_resume_keeps_the_saved_config_except_the_extendable_fields(tmp_path) -> None:
    run, _ = RunDir.open(tmp_path / "run", ToyConfig(inner=Inner(2.0)), resume=False)
    model, optim, sched = _toy()
    run.save(0, model.state_dict(), optim.state_dict(), sched.state_dict())
    _, config = RunDir.open(tmp_path / "run", ToyConfig(steps=9, lr=5.0), resume=True)
    assert config == ToyConfig(steps=9, inner=Inner(2.0))


def test_checkpoint_round_trip_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / CHECKPOINT_NAME
    first = Checkpoint(3, 1.5, {"lr": 0.1}, {"w": torch.ones(2)}, {"state": {}}, None, {"ema": {"w": torch.zeros(2)}})
    first.save(path)
    loaded = Checkpoint.load(path)
    assert (loaded.step, loaded.elapsed_s, loaded.config, loaded.scheduler) == (3, 1.5, {"lr": 0.1}, None)
    assert torch.equal(loaded.model["w"], torch.ones(2)) and torch.equal(loaded.extra["ema"]["w"], torch.zeros(2))

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)  # a save interrupted before the file is complete
    with pytest.raises(KeyboardInterrupt):
        Checkpoint(4, 2.0, {}, {}, {}).save(path)
    assert Checkpoint.load(path).step == 3


def test_resume_continues_at_the_saved_step_with_the_same_optimizer_state(tmp_path) -> None:
    model, optim, sched = _toy()
    for step in range(4):
        _update(model, optim, sched, step)
    straight = model.state_dict()

    run, _ = RunDir.open(tmp_path / "run", ToyConfig(), resume=False)
    model, optim, sched = _toy()
    for step in range(2):
        _update(model, optim, sched, step)
    run.save(2, model.state_dict(), optim.state_dict(), sched.state_dict())

    run, _ = RunDir.open(tmp_path / "run", ToyConfig(), resume=True)
    checkpoint = run.load()
    model, optim, sched = _toy()
    model.load_state_dict(checkpoint.model)
    optim.load_state_dict(checkpoint.optimizer)
    sched.load_state_dict(checkpoint.scheduler)
    assert checkpoint.step == 2 and checkpoint.elapsed_s > 0 and run.elapsed_s >= checkpoint.elapsed_s
    assert optim.state_dict()["state"][0]["step"] == 2
    for step in range(checkpoint.step, 4):
        _update(model, optim, sched, step)
    for name, value in straight.items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_schedule_values() -> None:
    assert [warmup_cosine_factor(s, 10, 2) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert warmup_cosine_factor(6, 10, 2) == pytest.approx(0.5)  # halfway through the decay
    assert warmup_cosine_factor(6, 10, 2, min_ratio=0.1) == pytest.approx(0.55)
    assert warmup_cosine_factor(10, 10, 2, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(50, 10, 2, min_ratio=0.1) == pytest.approx(0.1)  # held past the end
    assert [warmup_cosine_factor(s, 10, 4, min_ratio=1.0) for s in (1, 3, 9)] == [0.5, 1.0, 1.0]  # flat
    assert warmup_cosine_factor(3, 8, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 8)))


def test_scheduler_applies_the_factor_before_each_update() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2, min_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [pytest.approx(2.0 * warmup_cosine_factor(s, 10, 2, 0.1)) for s in range(10)]
    with pytest.raises(ValueError, match="min_ratio"):
        warmup_cosine(opt, total_steps=10, min_ratio=1.5)
