"""Shapes-world groups for GDT: G images that share something, each with its own caption.

GDT learns group generation from sets of related images (arXiv 2410.15027, sec. 3.2: galleries, video frames,
picture books). Here a group is one of four kinds, all from the seeded shapes world (one object per image):

- ``same_shape``: one shape in different colours;
- ``same_colour``: one colour on different shapes;
- ``moving``: one object (shape, colour, size) moving left to right across the frames;
- ``same_style``: a picture book: different objects on one background (base colour, gradient, stripes).

Captions are short (``"a red circle at the top left"``; the background is never named). In training groups,
with probability ``drop_shared`` the images after the first lose the words of the attribute the group shares
(``"a red object ..."``, ``"a circle ..."``), so the model must read it from the other images; the zero-shot
consistency test gives exactly such captions next to a reference image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.data.shapes import (
    COLOUR_NAMES,
    SHAPES,
    SMALL_LARGE_THRESHOLD,
    Scene,
    ShapeObject,
    ShapesWorld,
    split_rng,
)

GROUP_KINDS = ("same_shape", "same_colour", "moving", "same_style")
SHARED_WORDS = {"same_shape": ("shape",), "same_colour": ("colour",), "moving": ("shape", "colour"),
                "same_style": ()}
"""Which caption words a group kind may drop from its later images (they are implied by the group)."""


def group_world(image_size: int = 32) -> ShapesWorld:
    """The GDT data world: one large-ish object per image."""
    return ShapesWorld(image_size, min_objects=1, max_objects=1, min_radius=0.2, max_radius=0.3)


def object_caption(obj: ShapeObject, colour: bool = True, shape: bool = True) -> str:
    """``"a red circle at the top left"``; a dropped shape reads ``object``, a dropped colour is left out."""
    words = " ".join(([obj.colour] if colour else []) + [obj.shape if shape else "object"])
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words} at the {obj.position}"


@dataclass
class GroupBatch:
    images: torch.Tensor
    """(B * G, 3, S, S) in [0, 1]; group k is rows [k * G, (k + 1) * G)."""
    captions: list[str]
    scenes: list[Scene]
    kinds: list[str]
    """The kind of each group (length B)."""


class GroupSampler:
    """Seeded groups: batch ``index`` of a split is a pure function of its arguments."""

    def __init__(self, group_size: int, image_size: int = 32, drop_shared: float = 0.5,
                 kinds: tuple[str, ...] = GROUP_KINDS) -> None:
        if group_size < 2:
            raise ValueError(f"a group needs at least 2 images, got group_size={group_size}")
        unknown = sorted(set(kinds) - set(GROUP_KINDS))
        if not kinds or unknown:
            raise ValueError(f"group kinds must be a non-empty subset of {GROUP_KINDS}, got {tuple(kinds)}")
        self.group_size, self.drop_shared, self.kinds = group_size, drop_shared, tuple(kinds)
        self.world = group_world(image_size)

    def batch(self, split: str, index: int, groups: int) -> GroupBatch:
        """``groups`` groups, each of a kind drawn uniformly from ``kinds`` (a repeated kind weighs more)."""
        rng = split_rng(split, index)
        kinds = [self.kinds[k] for k in rng.integers(0, len(self.kinds), size=groups)]
        scenes: list[Scene] = []
        captions: list[str] = []
        for kind in kinds:
            group = self.group_scenes(kind, rng)
            drop = rng.random() < self.drop_shared
            scenes += group
            captions += self.group_captions(group, kind, drop)
        return GroupBatch(self.world.render(scenes).images, captions, scenes, kinds)

    def group_scenes(self, kind: str, rng: np.random.Generator) -> list[Scene]:
        """G scenes of one kind (geometry from the world's sampler, then the shared attribute imposed)."""
        g = self.group_size
        scenes = self.world.sample_scenes(g, rng)
        first = scenes[0].objects[0]
        if kind == "same_shape":
            colours = rng.permutation(len(COLOUR_NAMES))[:g]
            return [_with(s, shape=first.shape, colour=COLOUR_NAMES[c]) for s, c in zip(scenes, colours, strict=False)]
        if kind == "same_colour":
            shapes = rng.permutation(len(SHAPES))[: g] if g <= len(SHAPES) else rng.integers(0, len(SHAPES), g)
            return [_with(s, shape=SHAPES[k], colour=first.colour) for s, k in zip(scenes, shapes, strict=False)]
        if kind == "moving":
            # Every sampled centre fits the largest radius of the group, so it fits the smallest one.
            radius = min(s.objects[0].radius for s in scenes)
            size = "large" if radius >= SMALL_LARGE_THRESHOLD * self.world.image_size else "small"
            ordered = sorted(scenes, key=lambda s: s.objects[0].x)
            return [_with(s, shape=first.shape, colour=first.colour, radius=radius, size=size,
                          background=scenes[0]) for s in ordered]
        if kind == "same_style":
            return [_with(s, background=scenes[0]) for s in scenes]
        raise ValueError(f"unknown group kind {kind!r}; kinds are {GROUP_KINDS}")

    def group_captions(self, group: list[Scene], kind: str, drop: bool) -> list[str]:
        """One caption per image; with ``drop`` the images after the first lose the shared attribute's words."""
        return [self.caption(s.objects[0], kind, drop and i > 0) for i, s in enumerate(group)]

    @staticmethod
    def caption(obj: ShapeObject, kind: str, drop: bool) -> str:
        """The object's caption, without the words of the attribute ``kind`` groups share when ``drop``."""
        dropped = SHARED_WORDS[kind] if drop else ()
        return object_caption(obj, colour="colour" not in dropped, shape="shape" not in dropped)


def _with(scene: Scene, background: Scene | None = None, **changes: object) -> Scene:
    """The scene with its single object changed (and optionally another scene's background)."""
    obj = dataclasses.replace(scene.objects[0], **changes)
    style = background or scene
    return dataclasses.replace(scene, objects=(obj,), background=style.background, gradient=style.gradient,
                               stripes=style.stripes, caption=object_caption(obj))
