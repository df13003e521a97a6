"""Attribute-binding benchmark on shapes world (``mediaforge eval binding``).

Prompts name two or three objects with distinct colours and shapes ("a red circle and a blue square"). Each
method generates the same images (same seeds, same initial noise) and a judge says which prompted
(colour, shape) pairs each image holds: an image is *bound* when all of them are there; object recall is
the fraction found. The swap rate is the fraction of prompted objects drawn in another prompted object's
colour and not their own ("a blue circle" for "a red circle and a blue square"): the attribute-binding error
ToMe targets, as opposed to an object the model did not draw at all. Judges: ``detector``
(``pipelines.evaluation.shape_detector``: colour segmentation + shape templates, per object, training-free) and
``classifier`` (the shapes classifier's multi-label presence logits > 0). The same judge on real shapes-world
eval images with 2..3 objects gives its ceiling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from pipelines.data.shapes import COLOUR_NAMES, COLOURS, SHAPES, ShapesWorld, class_id
from pipelines.evaluation.shape_detector import objects_present
from pipelines.shapes_classifier.model import ShapesClassifier
from pipelines.tome.pipeline import ToMeStableDiffusionPipeline

Judge = Callable[[torch.Tensor, tuple[tuple[str, str], ...]], torch.Tensor]
"""(images (B, 3, H, W) in [0, 1], prompted (colour, shape) pairs) -> (B, n_pairs) bool: which are present."""

logger = logging.getLogger(__name__)

METHODS: dict[str, dict] = {
    "plain": {"token_merge": False},
    "tome-merge-only": {"tome_control_steps": (0, 0)},
    "tome": {},
}
"""Method name -> extra pipeline arguments: the plain pipeline, ToMe's token merging + end-token
substitution without the two losses, and full ToMe."""


@dataclass(frozen=True)
class BindingEvalConfig:
    """What ``mediaforge eval binding`` may set; :func:`evaluate_binding`'s defaults are these."""

    num_prompts: int = 24
    """Prompts (alternately two and three objects)."""
    images_per_prompt: int = 4
    """Images per prompt and method (the same seeds for every method)."""
    num_inference_steps: int = 20
    guidance_scale: float = 7.5
    methods: tuple[str, ...] = tuple(METHODS)
    """Methods to compare (names of :data:`METHODS`)."""
    judge: str = "detector"
    """``detector`` (per object, training-free) or ``classifier`` (the shapes classifier)."""
    noun_weight: float | None = None
    """ToMe composite token: weight of the noun (paper 1.1; ``None``: the pipeline folder's)."""
    attribute_weight: float | None = None
    """ToMe composite token: weight of the attributes (paper 1.2; ``None``: the pipeline folder's)."""
    seed: int = 0
    """Seed of the prompts and of the initial noise."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
        if self.judge not in ("detector", "classifier"):
            raise ValueError(f"unknown judge {self.judge!r}; choose detector or classifier")


@dataclass(frozen=True)
class BindingPrompt:
    text: str
    objects: tuple[tuple[str, str], ...]
    """(colour, shape) of each object."""


@dataclass(frozen=True)
class BindingResult:
    bound: float
    """Fraction of images in which every prompted object is detected."""
    object_recall: float
    swap_rate: float
    """Fraction of prompted objects found only in another prompted object's colour."""
    images: int

    def to_dict(self) -> dict[str, float | int]:
        return {"accuracy": self.bound, "object_recall": self.object_recall, "swap_rate": self.swap_rate,
                "images": self.images}


def binding_prompts(count: int, seed: int = 0, sizes: tuple[int, ...] = (2, 3)) -> list[BindingPrompt]:
    """``count`` prompts with 2 or 3 objects of distinct colours and distinct shapes (seeded)."""
    if count < 1:
        raise ValueError(f"need at least one prompt, got {count}")
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(count):
        n = sizes[i % len(sizes)]
        colours = rng.choice(len(COLOURS), n, replace=False)
        shapes = rng.choice(len(SHAPES), n, replace=False)
        objects = tuple((COLOUR_NAMES[c], SHAPES[s]) for c, s in zip(colours, shapes, strict=True))
        names = [f"a {c} {s}" for c, s in objects]
        text = names[0] if n == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        prompts.append(BindingPrompt(text, objects))
    return prompts


@torch.no_grad()
def _classifier_presence(classifier: ShapesClassifier, images: torch.Tensor,
                         objects: tuple[tuple[str, str], ...]) -> torch.Tensor:
    logits = classifier(images).class_logits
    return logits[:, [class_id(shape, colour) for colour, shape in objects]] > 0


def classifier_judge(classifier: ShapesClassifier) -> Judge:
    return partial(_classifier_presence, classifier)


def _detector_presence(images: torch.Tensor, objects: tuple[tuple[str, str], ...]) -> torch.Tensor:
    return torch.stack([objects_present(image, objects) for image in images])


def detector_judge() -> Judge:
    return _detector_presence


def swapped_pairs(objects: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Every prompted shape in each other prompted object's colour: what a binding error draws."""
    return tuple((c, shape) for i, (_, shape) in enumerate(objects) for j, (c, _) in enumerate(objects) if i != j)


def judge_objects(judge: Judge, images: torch.Tensor, objects: tuple[tuple[str, str], ...]
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: (found (n,), swapped (n,)) for the n prompted objects, from one call of the judge."""
    n = len(objects)
    hits = judge(images, objects + swapped_pairs(objects))
    found, wrong = hits[:, :n], hits[:, n:].reshape(len(images), n, n - 1).any(-1)
    return list(zip(found, ~found & wrong, strict=True))


def reference_binding(judge: Judge, image_size: int, images: int = 256) -> BindingResult:
    """The judge on real shapes-world eval images with 2..3 objects: the ceiling of the benchmark."""
    batch = ShapesWorld(image_size, min_objects=2, max_objects=3).batch("eval", 0, images)
    hits = []
    for scene, image in zip(batch.scenes, batch.images, strict=True):
        hits += judge_objects(judge, image[None], tuple((o.colour, o.shape) for o in scene.objects))
    return _summarise(hits)


def evaluate_binding(pipe: ToMeStableDiffusionPipeline, judge: Judge,
                     prompts: list[BindingPrompt], images_per_prompt: int = BindingEvalConfig.images_per_prompt,
                     num_inference_steps: int = BindingEvalConfig.num_inference_steps,
                     guidance_scale: float = BindingEvalConfig.guidance_scale, methods: dict[str, dict] | None = None,
                     tome_kwargs: dict | None = None, seed: int = BindingEvalConfig.seed,
                     progress: Callable[[str], None] | None = None) -> dict[str, BindingResult]:
    """Generate every prompt with every method from the same seeds and score binding."""
    methods = METHODS if methods is None else methods
    hits: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in methods}
    for index, prompt in enumerate(prompts):
        for name, extra in methods.items():
            args = {**(tome_kwargs or {}), **extra} if extra.get("token_merge", True) else extra
            images = pipe(prompt.text, num_images_per_prompt=images_per_prompt,
                          num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                          generator=torch.Generator().manual_seed(seed + index), output_type="pt", **args).images
            hits[name] += judge_objects(judge, images.float().clamp(0, 1).cpu(), prompt.objects)
        if progress:
            progress(f"prompt {index + 1}/{len(prompts)}: " + ", ".join(
                f"{n} {_summarise(h).bound:.3f}" for n, h in hits.items()))
    return {name: _summarise(h) for name, h in hits.items()}


def _summarise(hits: list[tuple[torch.Tensor, torch.Tensor]]) -> BindingResult:
    if not hits:
        raise ValueError("no images were scored")
    bound = float(np.mean([bool(found.all()) for found, _ in hits]))
    recall = float(torch.cat([found.float() for found, _ in hits]).mean())
    swaps = float(torch.cat([swapped.float() for _, swapped in hits]).mean())
    return BindingResult(bound, recall, swaps, len(hits))
