"""Shapes world: determinism, exact labels, split disjointness, class-conditional mode."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from pipelines.data.shapes import (
    COLOURS,
    NUM_CLASSES,
    SHAPES,
    Scene,
    ShapeObject,
    ShapesWorld,
    class_id,
    class_name,
)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_batches_are_deterministic_per_split_and_index(size: int) -> None:
    world = ShapesWorld(size)
    a, b = world.batch("train", 7, 6), world.batch("train", 7, 6)
    assert a.images.shape == (6, 3, size, size)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, world.batch("train", 8, 6).images)
    assert a.images.min() >= 0 and a.images.max() <= 1


@pytest.mark.parametrize("size", [32, 64, 256])
def test_pixel_at_each_object_centre_has_exactly_its_colour(size: int) -> None:
    world = ShapesWorld(size, min_objects=1, max_objects=4)
    batch = world.batch("eval", 3, 16)
    checked = 0
    for b, scene in enumerate(batch.scenes):
        for obj in scene.objects:
            pixel = batch.images[b, :, int(obj.y), int(obj.x)]
            assert torch.allclose(pixel, torch.tensor(COLOURS[obj.colour])), (scene.caption, obj)
            checked += 1
    assert checked >= 16


def test_labels_match_scenes_and_captions() -> None:
    batch = ShapesWorld(64, min_objects=2, max_objects=3).batch("train", 0, 12)
    for b, scene in enumerate(batch.scenes):
        assert batch.counts[b] == scene.count == len(scene.objects)
        for j, obj in enumerate(scene.objects):
            assert SHAPES[batch.shape_ids[b, j]] == obj.shape
            assert f"{obj.size} {obj.colour} {obj.shape}" in scene.caption
        assert (batch.shape_ids[b, scene.count:] == -1).all()
        for rel in scene.relations:
            a, o = scene.objects[rel.subject], scene.objects[rel.obj]
            assert (a.x < o.x) if rel.predicate == "left of" else (a.y < o.y)
        if scene.count >= 2:  # every ordered pair is related one way or the other along each axis
            assert len(scene.relations) == scene.count * (scene.count - 1)


def test_objects_do_not_overlap() -> None:
    for scene in ShapesWorld(64, max_objects=5).batch("train", 1, 32).scenes:
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1:]:
                assert ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5 > a.radius + b.radius


def test_eval_split_is_disjoint_from_train() -> None:
    world = ShapesWorld(32)
    train = world.batch("train", 0, 256).images.flatten(1)
    evals = world.batch("eval", 0, 256).images.flatten(1)
    assert torch.cdist(train, evals).min() > 0
    with pytest.raises(ValueError, match="unknown split"):
        world.batch("test", 0, 1)


def test_class_conditional_mode_draws_the_requested_class() -> None:
    ids = list(range(0, NUM_CLASSES, 3))
    batch = ShapesWorld(32).batch("train", 5, len(ids), class_ids=ids)
    assert batch.class_ids.tolist() == ids
    assert (batch.counts == 1).all()
    assert class_name(class_id("triangle", "blue")) == "blue triangle"
    with pytest.raises(ValueError, match="class_ids"):
        ShapesWorld(32).batch("train", 0, 2, class_ids=[0, NUM_CLASSES])


def test_render_is_a_group_hook_scene_edits_change_only_what_was_edited() -> None:
    world = ShapesWorld(64, min_objects=1, max_objects=1)
    scene = world.sample_scenes(1, np.random.default_rng(0))[0]
    moved = type(scene)(scene.objects, "black" if scene.background != "black" else "gray", scene.gradient,
                        scene.stripes, scene.image_size, scene.caption)
    a, b = world.render([scene]).images[0], world.render([moved]).images[0]
    obj = scene.objects[0]
    assert torch.equal(a[:, int(obj.y), int(obj.x)], b[:, int(obj.y), int(obj.x)])
    assert not torch.equal(a[:, 0, 0], b[:, 0, 0])


def _scene_from_exact_caption(caption: str, size: int) -> Scene:
    """Parse ``exact_caption`` back into a scene (the test's own reading of the format)."""
    *objects, background = caption.split("; ")
    parsed = []
    for text in objects:
        colour, shape, _, x, _, y, _, r = text.split(" ")
        parsed.append(ShapeObject(shape, colour, float(r), float(x), float(y), "", ""))
    bg = re.fullmatch(r"(.+) background, gradient (\d+) percent toward (\d+) degrees, "
                      r"(?:no stripes|stripes (\d+) percent every ([\d.]+) pixels at (\d+) degrees)", background)
    assert bg is not None, background
    name, amp, direction, strength, period, angle = bg.groups()
    stripes = (math.radians(float(angle)), float(period), float(strength) / 100) if strength else (0.0, 8.0, 0.0)
    return Scene(tuple(parsed), name, (math.radians(float(direction)), float(amp) / 100, 0.0), stripes, size, "")


def test_exact_captions_pin_the_whole_image_up_to_rounding() -> None:
    world = ShapesWorld(64, min_objects=1, max_objects=4)
    batch = world.batch("eval", 0, 16)
    exact = batch.captions_in("exact")
    assert batch.captions_in("coarse") == batch.captions and exact != batch.captions
    redrawn = world.render([_scene_from_exact_caption(c, 64) for c in exact]).images
    other = world.batch("eval", 1, 16).images
    error = (redrawn - batch.images).abs().mean(dim=(1, 2, 3))
    assert error.max() < 0.02 < (other - batch.images).abs().mean(dim=(1, 2, 3)).min()
    with pytest.raises(ValueError, match="caption style"):
        batch.captions_in("poetic")
