"""Every job kind's params are refused at submit when a job could only fail later: numbers finite and bounded,
strings and lists of bounded length, limits visible in the JSON schema, dumps that validate again (``class``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from pipelines.base import SEED_MAX, InputError, Params
from pipelines.registry import PIPELINES, import_pipeline
from workers.jobspec import parse_params

SHIPPED = sorted({target for target in PIPELINES.values() if target.startswith("pipelines.")})
"""The registry's own pipelines (tests register test pipelines of their own into it)."""

REQUIRED = {
    "GenerateClassParams": {"class": 3},
    "GenerateParams": {"prompt": "a red circle and a blue square"},
    "GenerateGroupParams": {"prompts": ["a red circle", "a red square"]},
    "SpeechGenerateParams": {"text": "a red ball"},
    "TexTokTokenizeParams": {"caption": "a white cross on a plum background"},
}
"""The smallest valid params of each schema with required fields."""

NOT_FINITE = [math.inf, -math.inf, math.nan, 1e308, -1e308]


def _valid(model: type[Params]) -> dict[str, Any]:
    return dict(REQUIRED.get(model.__name__, {}))


def _members(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("anyOf", [node])


def _walk(node: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (path, schema) of a property's union members, list items and tuple positions."""
    found = []
    for member in _members(node):
        found.append((where, member))
        for i, item in enumerate(member.get("prefixItems", [])):
            found += _walk(item, f"{where}.{i}")
        if isinstance(member.get("items"), dict):
            found += _walk(member["items"], f"{where}[]")
    return found


def _unbounded(schema: dict[str, Any]) -> list[str]:
    problems = []
    for name, prop in schema["properties"].items():
        for where, node in _walk(prop, name):
            kind = node.get("type")
            if kind in ("integer", "number"):
                has_low = "minimum" in node or "exclusiveMinimum" in node
                has_high = "maximum" in node or "exclusiveMaximum" in node
                if not (has_low and has_high):
                    problems.append(f"{where}: {kind} without both bounds")
            elif kind == "string" and "maxLength" not in node and "enum" not in node:
                problems.append(f"{where}: string without maxLength")
            elif kind == "array" and "maxItems" not in node:
                problems.append(f"{where}: array without maxItems")
    return problems


def _numeric_fields(model: type[Params]) -> list[str]:
    schema = model.model_json_schema()
    return [name for name, prop in schema["properties"].items()
            if any(m.get("type") in ("integer", "number") for m in _members(prop))]


@pytest.mark.parametrize("target", SHIPPED)
def test_every_param_has_finite_limits_in_the_json_schema_and_a_description(target: str) -> None:
    schema = import_pipeline(target).params_model.model_json_schema()
    assert schema.get("additionalProperties") is False
    assert _unbounded(schema) == []
    assert [name for name, prop in schema.get("properties", {}).items() if not prop.get("description")] == []


@pytest.mark.parametrize("target", SHIPPED)
def test_not_finite_and_huge_numbers_are_refused_naming_the_field_and_its_range(target: str) -> None:
    pipeline = import_pipeline(target)
    base = _valid(pipeline.params_model)
    parse_params(pipeline, base)  # the base is valid: each refusal below is the bad number's doing
    for name in _numeric_fields(pipeline.params_model):
        for value in NOT_FINITE:
            with pytest.raises(InputError) as err:
                parse_params(pipeline, {**base, name: value})
            message = str(err.value)
            assert message.startswith(f"invalid params for {pipeline.kind}: {name}: ")
            assert f"{name} <" in message, message  # the range, e.g. "(allowed: 0 < max_seconds <= 60)"


@pytest.mark.parametrize("target", SHIPPED)
def test_a_dump_validates_again_as_the_host_reads_it(target: str) -> None:
    model = import_pipeline(target).params_model
    params = model.model_validate(_valid(model))
    assert model.model_validate(params.model_dump(mode="json")) == params


def test_the_class_alias_round_trips_by_its_json_name() -> None:
    xar = import_pipeline(PIPELINES[("image.generate", "XAR")])
    dumped = parse_params(xar, {"class": 0, "num_inference_steps": 2}).model_dump(mode="json")
    assert dumped["class"] == 0 and "class_" not in dumped
    assert parse_params(xar, dumped).class_ == 0


def test_the_error_names_the_field_and_what_it_allows() -> None:
    speech = import_pipeline(PIPELINES[("speech.generate", "FlowOmni")])
    with pytest.raises(InputError) as err:
        parse_params(speech, {"text": "hi", "max_seconds": math.inf})
    assert str(err.value) == ("invalid params for speech.generate: max_seconds: Input should be a finite number "
                              "(allowed: 0 < max_seconds <= 60)")
    sd = import_pipeline(PIPELINES[("image.generate", "StableDiffusionPipeline")])
    with pytest.raises(InputError, match=r"token_merge\.0\.1\.0: .*\(allowed: 1 <= token_merge\.0\.1\.0 <= 75\)"):
        parse_params(sd, {"prompt": "a red circle", "token_merge": [[[2], [90]]]})
    gdt = import_pipeline(PIPELINES[("image.generate_group", "GroupDiffusionPipeline")])
    with pytest.raises(InputError, match=r"prompts: .*\(allowed: 2 to 16 items\)"):
        parse_params(gdt, {"prompts": ["a red circle"] * 17})
    with pytest.raises(InputError, match=r"prompts\.1: .*\(allowed: 1 to 500 characters\)"):
        parse_params(gdt, {"prompts": ["a red circle", "x" * 501]})


def test_values_at_the_limits_are_accepted() -> None:
    speech = import_pipeline(PIPELINES[("speech.generate", "FlowOmni")])
    params = parse_params(speech, {"text": "hi", "max_seconds": 60.0, "seed": SEED_MAX, "temperature": 0.0})
    assert (params.max_seconds, params.seed) == (60.0, SEED_MAX)
    torch.Generator().manual_seed(SEED_MAX)  # the largest seed the schema takes, the generator takes too
    with pytest.raises(ValueError, match="Overflow"):
        torch.Generator().manual_seed(SEED_MAX + 1)
    with pytest.raises(InputError, match="seed"):
        parse_params(speech, {"text": "hi", "seed": SEED_MAX + 1})
