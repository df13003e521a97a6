"""The model contract, checked on every model class: save -> load equality, seeded determinism, output shapes on
the tiny preset, strict loading that names the bad key. The cases live in ``tests/model_contract.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.model_contract import CASES, ContractCase, Outputs, project_model_classes
from tokenizers_media.modeling import WEIGHTS_NAME, PretrainedModel, load_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
by_name = pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)


def _tiny(case: ContractCase) -> PretrainedModel:
    torch.manual_seed(0)
    return case.build().eval()


def _seeded_run(case: ContractCase, model: PretrainedModel) -> Outputs:
    """Models that draw noise (dropout kept at inference, flow-matching times) repeat only from the same seed."""
    torch.manual_seed(123)
    with torch.no_grad():
        return case.run(model)


def _assert_same(first: Outputs, second: Outputs) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_every_model_class_has_a_case() -> None:
    assert project_model_classes() == {case.model_class for case in CASES}


@by_name
def test_save_load_gives_the_same_model(case: ContractCase, tmp_path: Path) -> None:
    model = _tiny(case)
    loaded = load_pretrained(model.save_pretrained(tmp_path))  # found through config.json: registered
    assert type(loaded) is case.model_class and not loaded.training
    assert loaded.config == model.config
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert list(loaded_state) == list(state)
    for key, value in state.items():
        assert torch.equal(value, loaded_state[key]), key
    _assert_same(_seeded_run(case, model), _seeded_run(case, loaded))


@by_name
def test_same_input_gives_the_same_output_in_eval_mode(case: ContractCase) -> None:
    model = _tiny(case)
    _assert_same(_seeded_run(case, model), _seeded_run(case, model))


@by_name
def test_outputs_have_the_shapes_of_the_tiny_preset(case: ContractCase) -> None:
    model = _tiny(case)
    outputs = _seeded_run(case, model)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == case.shapes(model)


@by_name
@pytest.mark.parametrize("problem", ["missing", "unexpected"])
def test_strict_loading_names_the_bad_key(case: ContractCase, problem: str, tmp_path: Path) -> None:
    model = _tiny(case)
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / WEIGHTS_NAME))
    if problem == "missing":
        # The model's first key, not the file's (sorted): BatchNorm forgives a missing num_batches_tracked.
        bad_key = next(iter(model.state_dict()))
        del weights[bad_key]
    else:
        bad_key = "contract_extra.weight"
        weights[bad_key] = torch.zeros(1)
    save_file(weights, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(RuntimeError, match=rf"{problem.capitalize()} key\(s\).*\"{re.escape(bad_key)}\""):
        case.model_class.from_pretrained(tmp_path)
