"""The model contract: config round trip, strict loading, presets, class lookup from config.json."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from tokenizers_media.modeling import ModelConfig, PretrainedModel, load_pretrained, register_model


@dataclasses.dataclass(frozen=True)
class ToyConfig(ModelConfig):
    width: int = 4
    sizes: tuple[int, ...] = (2, 3)


@register_model
class ToyModel(PretrainedModel):
    config_class = ToyConfig
    presets = {"tiny": lambda: ToyConfig(width=2)}

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.proj = torch.nn.Linear(config.width, config.width)


def test_save_load_round_trip_is_exact_and_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    model = ToyModel(ToyConfig())
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, ToyModel) and not loaded.training
    assert loaded.config == model.config  # tuples survive the JSON round trip
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_unknown_config_field_is_named(tmp_path):
    ToyModel(ToyConfig()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 3}))
    with pytest.raises(ValueError, match="depth"):
        ToyModel.from_pretrained(tmp_path)


def test_strict_load_names_the_missing_key(tmp_path):
    ToyModel(ToyConfig()).save_pretrained(tmp_path)
    save_file({"proj.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="proj.bias"):
        ToyModel.from_pretrained(tmp_path)


def test_presets_and_missing_files(tmp_path):
    assert ToyModel.from_preset("tiny").config.width == 2
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ToyModel.from_preset("huge")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
