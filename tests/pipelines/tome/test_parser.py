"""The ToMe token-group parser: noun + attribute groups aligned to CLIP word pieces, explicit groups."""

from __future__ import annotations

import pytest

from pipelines.sd.clip_tokenizer import CLIP_VOCAB_SIZE, clip_vocab, offline_clip_tokenizer
from pipelines.tome.parser import parse_prompt


@pytest.fixture(scope="module")
def tokenizer():
    return offline_clip_tokenizer()


def test_offline_tokenizer_has_clips_ids(tokenizer):
    vocab = clip_vocab()
    assert len(vocab) == CLIP_VOCAB_SIZE
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    # Known CLIP ids ("a" 320, "red" 736, "circle" 7117, "and" 537).
    assert tokenizer("a red circle and").input_ids == [49406, 320, 736, 7117, 537, 49407]


def _words(tokenizer, prompt, indices):
    ids = tokenizer(prompt).input_ids
    return tokenizer.convert_ids_to_tokens([ids[i] for i in indices])


def test_two_objects_give_two_groups(tokenizer):
    parsed = parse_prompt("a red circle and a blue square", tokenizer)
    assert [(g.noun, g.attributes) for g in parsed.groups] == [((3,), (2,)), ((7,), (6,))]
    assert [g.phrase for g in parsed.groups] == ["a red circle", "a blue square"]
    assert parsed.cleaned_prompt == "a circle and a square"
    assert _words(tokenizer, parsed.prompt, parsed.groups[1].tokens) == ["square</w>", "blue</w>"]


def test_multi_word_attributes_and_conjoined_adjectives(tokenizer):
    parsed = parse_prompt("A red and blue square next to a small green triangle.", tokenizer)
    first, second = parsed.groups
    assert _words(tokenizer, parsed.prompt, first.attributes) == ["red</w>", "blue</w>"]
    assert _words(tokenizer, parsed.prompt, second.tokens) == ["triangle</w>", "small</w>", "green</w>"]
    assert parsed.cleaned_prompt == "A square next to a triangle."


def test_locations_and_backgrounds_are_not_groups(tokenizer):
    prompt = "a large red circle at the top left and a small blue square, on a striped gray background"
    parsed = parse_prompt(prompt, tokenizer)
    assert [g.noun_text for g in parsed.groups] == ["circle", "square"]
    with_places = parse_prompt(prompt, tokenizer, include_prepositional=True)
    assert [g.noun_text for g in with_places.groups] == ["circle", "square", "background"]


def test_word_split_into_several_pieces(tokenizer):
    parsed = parse_prompt("a dark-gray elephant", tokenizer)
    (group,) = parsed.groups
    assert _words(tokenizer, parsed.prompt, group.attributes) == ["dark</w>", "-</w>", "gray</w>"]
    assert parsed.cleaned_prompt == "a elephant"


def test_explicit_groups_phrases_and_indices(tokenizer):
    parsed = parse_prompt("a red circle and a blue square", tokenizer, groups=["blue square", ([3], [2])])
    assert [(g.noun, g.attributes) for g in parsed.groups] == [((7,), (6,)), ((3,), (2,))]
    assert parsed.cleaned_prompt == "a circle and a square"
    with pytest.raises(ValueError, match="not a phrase"):
        parse_prompt("a red circle", tokenizer, groups=["green circle"])
    with pytest.raises(ValueError, match="outside"):
        parse_prompt("a red circle", tokenizer, groups=[([9], [2])])


def test_groups_cut_by_truncation_are_dropped(tokenizer):
    short = offline_clip_tokenizer(model_max_length=6)
    parsed = parse_prompt("a red circle and a blue square", short)
    assert [g.noun_text for g in parsed.groups] == ["circle"]
