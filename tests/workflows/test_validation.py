"""Workflow documents checked before anything runs: every refusal names the step and the field."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.base import InputError
from workers.workflows import WorkflowSpec, check_workflow

TOKENIZE = {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": "a1"}}


def _ref(step: str, output: str) -> dict[str, str]:
    return {"from": step, "output": output}


def _check(steps: dict[str, Any]) -> Any:
    return check_workflow(WorkflowSpec.model_validate({"steps": steps}), zoo_only=True)


def test_a_chain_is_ordered_producers_first_and_its_last_step_is_the_output() -> None:
    checked = _check({
        "speech": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": _ref("codes",
                                                                                                     "tokens")}},
        "codes": TOKENIZE,
        "other": TOKENIZE,
    })
    assert checked.order.index("codes") < checked.order.index("speech")
    assert sorted(checked.sinks()) == ["other", "speech"]
    assert checked.steps["speech"].resolved.job_kind.family == "audio"


def test_a_group_output_is_one_of_the_images_asked_for() -> None:
    generate = {"kind": "image.generate", "model": "xar-tiny", "params": {"class": 1, "num_images": 2}}
    tokenize = {"kind": "image.tokenize", "model": "karl-tiny", "inputs": {"image": _ref("gen", "image_001")}}
    assert _check({"gen": generate, "tok": tokenize}).order == ["gen", "tok"]
    tokenize["inputs"] = {"image": _ref("gen", "image_002")}
    with pytest.raises(InputError, match=r"step 'tok' inputs.image: step 'gen' \(image.generate\) has no output "
                                         r"'image_002'; it writes \['image_000', 'image_001'\]"):
        _check({"gen": generate, "tok": tokenize})


@pytest.mark.parametrize(("steps", "message"), [
    ({"b": {**TOKENIZE, "inputs": {"audio": _ref("nope", "audio")}}},
     r"step 'b' inputs.audio: no step named 'nope'"),
    ({"a": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": _ref("b", "tokens")}},
      "b": {**TOKENIZE, "inputs": {"audio": _ref("a", "audio")}}},
     r"steps \['a', 'b'\]: their inputs form a cycle"),
    ({"a": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": _ref("a", "tokens")}}},
     r"step 'a' inputs.tokens: step 'a' \(audio.detokenize\) has no output 'tokens'"),
    ({"speak": {"kind": "speech.generate", "model": "flow-omni-tiny", "params": {"text": "hi"}},
      "b": {**TOKENIZE, "inputs": {"audio": _ref("speak", "tokens")}}},
     r"step 'b' inputs.audio: step 'speak' \(speech.generate\) has no output 'tokens'; it writes \['audio'\]"),
    ({"gen": {"kind": "image.generate", "model": "xar-tiny", "params": {"class": 1}},
      "b": {**TOKENIZE, "inputs": {"audio": _ref("gen", "image_000")}}},
     r"step 'b' inputs.audio: audio.tokenize reads audio there, but gen.image_000 is image"),
    ({"codes": TOKENIZE,
      "img": {"kind": "image.detokenize", "model": "karl-tiny", "inputs": {"tokens": _ref("codes", "tokens")}}},
     r"step 'img' inputs.tokens: codes.tokens are tokens of model 'wavtokenizer-tiny' \(WavTokenizer\); "
     r"image.detokenize on 'karl-tiny' reads only its own tokens"),
    ({"a": {**TOKENIZE, "model": "karl-tiny"}},
     r"step 'a': job kind 'audio.tokenize' cannot run on a KARL model"),
    ({"a": {**TOKENIZE, "model": "no-such-model"}}, r"step 'a': unknown model 'no-such-model'"),
    ({"a": {**TOKENIZE, "params": {"speed": 2}}}, r"step 'a': invalid params for audio.tokenize: speed"),
    ({"a": {**TOKENIZE, "inputs": {}}}, r"step 'a': audio.tokenize takes inputs \['audio'\]; got \[\]"),
    ({"1st": TOKENIZE}, r"step '1st': a step name is a letter"),
])
def test_a_bad_workflow_is_refused_naming_the_step_and_field(steps: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        _check(steps)


def test_the_document_itself_is_strict() -> None:
    for bad in ({"steps": {}}, {"steps": {"a": TOKENIZE}, "extra": 1},
                {"steps": {"a": {**TOKENIZE, "inputs": {"audio": {"from": "x"}}}}}):
        with pytest.raises(ValueError):
            WorkflowSpec.model_validate(bad)
