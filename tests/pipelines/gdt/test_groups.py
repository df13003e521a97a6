"""Shapes-world groups for GDT and the consistency test cases built from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.data.shapes import COLOUR_NAMES
from pipelines.gdt.evaluate import consistency_case
from pipelines.gdt.groups import GROUP_KINDS, GroupSampler, object_caption


@pytest.mark.parametrize("kind", GROUP_KINDS)
def test_each_kind_shares_its_attribute(kind):
    sampler = GroupSampler(4)
    scenes = sampler.group_scenes(kind, np.random.default_rng(3))
    objects = [s.objects[0] for s in scenes]
    shapes, colours = {o.shape for o in objects}, {o.colour for o in objects}
    if kind == "same_shape":
        assert len(shapes) == 1 and len(colours) == 4
    elif kind == "same_colour":
        assert len(colours) == 1 and len(shapes) == 4
    elif kind == "moving":
        assert len(shapes) == len(colours) == len({o.radius for o in objects}) == 1
        xs = [o.x for o in objects]
        assert xs == sorted(xs) and xs[0] < xs[-1]
    else:
        assert len({(s.background, s.gradient, s.stripes) for s in scenes}) == 1


def test_kinds_restrict_the_training_mix():
    batch = GroupSampler(4, kinds=("same_colour", "same_shape")).batch("train", 1, 16)
    assert set(batch.kinds) == {"same_colour", "same_shape"}
    with pytest.raises(ValueError, match="group kinds"):
        GroupSampler(4, kinds=("same_colour", "rotating"))
    with pytest.raises(ValueError, match="group kinds"):
        GroupSampler(4, kinds=())


def test_batches_are_seeded_and_drop_only_the_shared_words():
    sampler = GroupSampler(4, drop_shared=1.0)
    a, b = sampler.batch("train", 5, 6), sampler.batch("train", 5, 6)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert a.images.shape == (24, 3, 32, 32)
    for k, kind in enumerate(a.kinds):
        first, *rest = a.captions[4 * k: 4 * k + 4]
        obj = a.scenes[4 * k].objects[0]
        assert first == object_caption(obj)
        if kind == "same_shape":
            assert all(obj.shape not in c and "object" in c for c in rest)
        if kind == "same_style":
            assert rest == [object_caption(s.objects[0]) for s in a.scenes[4 * k + 1: 4 * k + 4]]


def test_consistency_case_leaves_out_the_kept_attribute():
    case = consistency_case("colour", groups=3, group_size=4)
    assert case.references.shape == (3, 3, 32, 32) and len(case.prompts) == 12 and len(case.named) == 9
    for k, colour in enumerate(case.kept):
        assert colour in case.prompts[4 * k]
        assert all(not set(p.split()) & set(COLOUR_NAMES) for p in case.prompts[4 * k + 1: 4 * k + 4])
    with pytest.raises(ValueError, match="attribute"):
        consistency_case("size", 1, 4)
