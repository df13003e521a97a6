"""Zero-shot consistency of group generation, judged by the shapes classifier (GDT's claim, arXiv 2410.15027).

A test group is one reference image (index 0, full caption) and G - 1 captions that leave out one attribute
of the reference and name a different value of the other one:

- ``colour``: reference "a red circle ...", others "a square ...", "a cross ..." -> should come out red;
- ``shape``: reference "a red circle ...", others "a blue object ...", ... -> should come out circles.

The classifier's top-1 class of each generated image gives its (shape, colour). ``consistency`` is the rate at
which the left-out attribute equals the reference's (chance: 1/8 for colour, 1/5 for shape); ``adherence`` the
rate at which the named attribute matches its caption. Test groups come from the ``eval`` split.

With ``with_reference=False`` image 0 is generated from its full caption too (joint generation, no
conditioning image), and the kept value is the judge's reading of that generated image 0: whether the group
agrees with itself, which separates what group attention learned from how the reference is injected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from pipelines.data.shapes import COLOUR_NAMES, COLOURS, SHAPES, split_rng
from pipelines.gdt.groups import GroupSampler, object_caption
from pipelines.gdt.pipeline import GroupDiffusionPipeline
from pipelines.shapes_classifier.model import ShapesClassifier

ATTRIBUTES = ("colour", "shape")


@dataclass
class ConsistencyCase:
    references: torch.Tensor
    """(B, 3, S, S) the reference image of each group."""
    prompts: list[str]
    """B * G prompts, the reference's first in each group."""
    kept: list[str]
    """The reference's value of the left-out attribute, per group."""
    named: list[str]
    """The captioned value of the other attribute for each generated image (B * (G - 1))."""


def consistency_case(attribute: str, groups: int, group_size: int, image_size: int = 32, index: int = 0
                     ) -> ConsistencyCase:
    """Reference scenes and captions for ``groups`` test groups (a pure function of its arguments)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; choose one of {ATTRIBUTES}")
    sampler = GroupSampler(group_size, image_size)
    rng = split_rng("eval", index)
    refs, prompts, kept, named = [], [], [], []
    for _ in range(groups):
        scenes = sampler.world.sample_scenes(group_size, rng)
        ref = scenes[0].objects[0]
        refs.append(scenes[0])
        prompts.append(object_caption(ref))
        own = ref.colour if attribute == "colour" else ref.shape
        kept.append(own)
        pool = SHAPES if attribute == "colour" else COLOUR_NAMES
        others = [pool[i] for i in _distinct(rng, len(pool), group_size - 1)]
        for scene, value in zip(scenes[1:], others, strict=True):
            obj = scene.objects[0]
            if attribute == "colour":  # name a shape, leave the colour out
                prompts.append(object_caption(replace(obj, shape=value), colour=False))
            else:  # name a colour, leave the shape out
                prompts.append(object_caption(replace(obj, colour=value), shape=False))
            named.append(value)
    return ConsistencyCase(sampler.world.render(refs).images, prompts, kept, named)


def _distinct(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(n)[:k] if k <= n else rng.integers(0, n, k)


@torch.no_grad()
def classify(judge: ShapesClassifier, images: torch.Tensor) -> tuple[list[str], list[str]]:
    """Top-1 (shape, colour) names of single-object images."""
    top = judge(images).class_logits.argmax(1).tolist()
    return [SHAPES[i // len(COLOURS)] for i in top], [COLOUR_NAMES[i % len(COLOURS)] for i in top]


def measure(pipe: GroupDiffusionPipeline, judge: ShapesClassifier, case: ConsistencyCase, attribute: str,
            group_size: int, seed: int = 0, groups_per_call: int = 16, with_reference: bool = True,
            **call: object) -> dict[str, float]:
    """Generate every test group with ``group_size``-way attention (1 = images independent)."""
    g = len(case.prompts) // len(case.kept)
    images = []
    for start in range(0, len(case.kept), groups_per_call):
        refs = case.references[start: start + groups_per_call]
        prompts = case.prompts[start * g: (start + len(refs)) * g]
        references = {k * g: r for k, r in enumerate(refs)} if with_reference else {}
        out = pipe(prompts, reference_images=references, group_size=group_size,
                   generator=torch.Generator().manual_seed(seed + start), **call).images
        images.append(out.reshape(len(refs), g, *out.shape[1:]))
    groups = torch.cat(images)
    shapes, colours = classify(judge, groups[:, 1:].flatten(0, 1))
    left_out, captioned = (colours, shapes) if attribute == "colour" else (shapes, colours)
    kept = case.kept
    if not with_reference:  # the group should agree with its own generated image 0
        first_shapes, first_colours = classify(judge, groups[:, 0])
        kept = first_colours if attribute == "colour" else first_shapes
    kept = [v for v in kept for _ in range(g - 1)]
    return {"consistency": float(np.mean([a == b for a, b in zip(left_out, kept, strict=True)])),
            "adherence": float(np.mean([a == b for a, b in zip(captioned, case.named, strict=True)])),
            "images": len(left_out)}
