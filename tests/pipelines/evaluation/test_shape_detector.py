"""The training-free shapes-world detector that judges binding: colour regions + shape templates."""

from __future__ import annotations

import torch

from pipelines.data.shapes import COLOUR_NAMES, ShapesWorld
from pipelines.evaluation.shape_detector import detect_objects, objects_present
from pipelines.tome.evaluate import (
    binding_prompts,
    detector_judge,
    judge_objects,
    reference_binding,
    swapped_pairs,
)


def test_detector_finds_every_object_of_real_64px_scenes():
    batch = ShapesWorld(64, 2, 3).batch("eval", 0, 4)
    for scene, image in zip(batch.scenes, batch.images, strict=True):
        found = {(d.colour, d.shape) for d in detect_objects(image)}
        assert found == {(o.colour, o.shape) for o in scene.objects}


def test_swapped_attributes_are_not_bound():
    scene = ShapesWorld(64, 2, 2).batch("eval", 3, 1).scenes[0]
    a, b = scene.objects[:2]
    image = ShapesWorld(64).render([scene]).images[0]
    if a.colour != b.colour and a.shape != b.shape:
        swapped = ((a.colour, b.shape), (b.colour, a.shape))
        assert not objects_present(image, swapped).any()
    assert objects_present(image, ((a.colour, a.shape),)).all()
    assert detect_objects(torch.full((3, 64, 64), 0.45)) == []


def test_reference_binding_and_prompts():
    assert reference_binding(detector_judge(), 64, images=4).bound == 1.0
    prompts = binding_prompts(4, seed=1)
    assert [len(p.objects) for p in prompts] == [2, 3, 2, 3]
    for p in prompts:
        assert len({c for c, _ in p.objects}) == len(p.objects) == len({s for _, s in p.objects})
        assert all(f"a {c} {s}" in p.text for c, s in p.objects)


def test_swapped_colours_count_as_swaps_and_missing_objects_do_not():
    scene = ShapesWorld(64, 2, 2).batch("eval", 3, 1).scenes[0]
    a, b = scene.objects[:2]
    assert a.colour != b.colour and a.shape != b.shape
    image = ShapesWorld(64).render([scene]).images
    swapped_prompt = ((b.colour, a.shape), (a.colour, b.shape))
    [(found, swapped)] = judge_objects(detector_judge(), image, swapped_prompt)
    assert not found.any() and swapped.all()
    [(found, swapped)] = judge_objects(detector_judge(), image, ((a.colour, a.shape), (b.colour, b.shape)))
    assert found.all() and not swapped.any()
    absent = next(c for c in COLOUR_NAMES if c not in (a.colour, b.colour))
    [(found, swapped)] = judge_objects(detector_judge(), image, ((absent, a.shape), (b.colour, b.shape)))
    assert found.tolist() == [False, True] and not swapped.any()
    assert swapped_pairs(((a.colour, a.shape), (b.colour, b.shape))) == swapped_prompt
    assert reference_binding(detector_judge(), 64, images=4).swap_rate == 0.0
