"""pscore: a *proxy* pFID for discrete image tokenizers (robust latent perturbation; spec, RobustTok).

pFID is the FID between real images and decodings of *perturbed* tokens (each token replaced, with probability
alpha, by one of its delta nearest codes, index 0 = itself). The paper's evaluation alpha/delta are unreleased,
so they are explicit parameters here, always reported with the seed. Features come from the shapes-world
classifier trained in this repo (``pipelines/shapes_classifier.py``), not Inception-v3, and the images are
held-out shapes-world images: the numbers are a **proxy**, never comparable with paper (p)FID.

The unperturbed score (alpha = 0) is the matching proxy rFID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipelines.data.shapes import ShapesWorld
from pipelines.metrics import frechet_distance
from pipelines.shapes_classifier import ShapesClassifier
from tokenizers_media.image.karl import KARL

RoundTrip = Callable[[torch.Tensor, "Perturbation | None", torch.Generator], torch.Tensor]
"""(images (B, 3, H, W), perturbation or None, generator) -> decoded images (B, 3, H, W)."""


@dataclass(frozen=True)
class Perturbation:
    """Token perturbation at evaluation: every sample (beta = 1), each token with probability ``alpha``."""

    alpha: float
    delta: int
    seed: int


@dataclass(frozen=True)
class PScoreResult:
    """Proxy Frechet distances, clean (proxy rFID) and perturbed (proxy pFID), with what produced them."""

    clean: float
    perturbed: float
    perturbation: Perturbation
    num_images: int

    def describe(self) -> str:
        p = self.perturbation
        return (f"proxy pFID (pscore; shapes-classifier features, {self.num_images} held-out shapes-world "
                f"images; alpha={p.alpha:g} delta={p.delta} seed={p.seed}): {self.perturbed:.3f}\n"
                f"proxy rFID (unperturbed, same images and features): {self.clean:.3f}")


def karl_round_trip(model: KARL, target_error: float = 0.05, max_tokens: int | None = None) -> RoundTrip:
    """Round trip through a quantised KARL; perturbation touches only the active (unpadded) tokens."""
    if model.quantizer is None:
        raise ValueError("pscore needs a quantised KARL: a continuous one has no codes to perturb")
    quantizer = model.quantizer

    def round_trip(images: torch.Tensor, perturbation: Perturbation | None,
                   generator: torch.Generator) -> torch.Tensor:
        enc = model.encode(images, target_error=target_error, max_tokens=max_tokens)
        codes = enc.codes
        if perturbation is not None:
            active = torch.arange(codes.shape[1], device=codes.device) < enc.lengths[:, None]
            moved = quantizer.perturb(codes.clamp(min=0), perturbation.alpha, 1.0, perturbation.delta, generator)
            codes = torch.where(active, moved, codes)
        return model.decode(codes, enc.lengths)

    return round_trip


@torch.no_grad()
def pscore(round_trip: RoundTrip, classifier: ShapesClassifier, image_size: int, perturbation: Perturbation,
           num_images: int = 1000, batch_size: int = 100, max_objects: int = 4) -> PScoreResult:
    """Proxy FD of clean and perturbed round trips of ``num_images`` held-out (``eval`` split) images.

    The eval batches start at index 1000 so they never overlap the training runs' fixed sample batch (index 0).
    """
    if num_images < 2 or batch_size < 1:
        raise ValueError(f"need num_images >= 2 and batch_size >= 1, got {num_images}, {batch_size}")
    world = ShapesWorld(image_size, min_objects=1, max_objects=max_objects)
    generator = torch.Generator().manual_seed(perturbation.seed)
    real, clean, perturbed = [], [], []
    for index, start in enumerate(range(0, num_images, batch_size)):
        images = world.batch("eval", 1000 + index, min(batch_size, num_images - start)).images
        real.append(classifier.features(images))
        clean.append(classifier.features(round_trip(images, None, generator)))
        perturbed.append(classifier.features(round_trip(images, perturbation, generator)))
    real_f = torch.cat(real)
    return PScoreResult(frechet_distance(real_f, torch.cat(clean)), frechet_distance(real_f, torch.cat(perturbed)),
                        perturbation, num_images)
