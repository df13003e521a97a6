"""pscore: a *proxy* pFID for discrete image tokenizers (robust latent perturbation; spec, RobustTok).

pFID is the FID between real images and decodings of *perturbed* tokens (each token replaced, with probability
alpha, by one of its delta nearest codes, index 0 = itself). The paper's evaluation alpha/delta are unreleased,
so they are explicit parameters here, always reported with the seed. Features come from the shapes-world
classifier trained in this repo (``pipelines/shapes_classifier/model.py``), not Inception-v3, and the images are
held-out shapes-world images: the numbers are a **proxy**, never comparable with paper (p)FID.

The unperturbed score (alpha = 0) is the matching proxy rFID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipelines.data.shapes import ShapesBatch, ShapesWorld
from pipelines.evaluation.metrics import frechet_distance
from pipelines.shapes_classifier.model import ShapesClassifier
from tokenizers_media.image.karl import KARL
from tokenizers_media.image.textok import TexTok

Decoder = Callable[["Perturbation | None", torch.Generator], torch.Tensor]
"""Decodes one encoded batch, its codes perturbed or not -> images (B, 3, H, W)."""

RoundTrip = Callable[[ShapesBatch], Decoder]
"""Encodes a shapes-world batch once and returns its decoder. It takes the batch, not only its images, so
text-conditioned tokenizers (TexTok) can use the captions."""


@dataclass(frozen=True)
class Perturbation:
    """Token perturbation at evaluation: every sample (beta = 1), each token with probability ``alpha``."""

    alpha: float
    delta: int
    seed: int


@dataclass(frozen=True)
class PScoreConfig:
    """What ``mediaforge eval pscore`` may set; :func:`pscore` and :func:`karl_round_trip` default to these.

    ``alpha`` and ``delta`` have no default: the paper's evaluation values are unreleased."""

    alpha: float
    """Probability that a token is replaced."""
    delta: int
    """The replacement is drawn uniformly among the ``delta`` nearest codes (0 = the token itself)."""
    seed: int = 0
    num_images: int = 1000
    target_error: float = 0.05
    """KARL's target per-image L1."""
    max_tokens: int | None = None
    """KARL's token budget (``None``: the model's)."""

    @property
    def perturbation(self) -> Perturbation:
        return Perturbation(self.alpha, self.delta, self.seed)


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


def karl_round_trip(model: KARL, target_error: float = PScoreConfig.target_error,
                    max_tokens: int | None = PScoreConfig.max_tokens) -> RoundTrip:
    """Round trip through a quantised KARL; perturbation touches only the active (unpadded) tokens."""
    if model.quantizer is None:
        raise ValueError("pscore needs a quantised KARL: a continuous one has no codes to perturb")
    quantizer = model.quantizer

    def encode(batch: ShapesBatch) -> Decoder:
        enc = model.encode(batch.images, target_error=target_error, max_tokens=max_tokens)
        active = torch.arange(enc.codes.shape[1], device=enc.codes.device) < enc.lengths[:, None]

        def decode(perturbation: Perturbation | None, generator: torch.Generator) -> torch.Tensor:
            codes = enc.codes
            if perturbation is not None:
                moved = quantizer.perturb(codes.clamp(min=0), perturbation.alpha, 1.0, perturbation.delta,
                                          generator)
                codes = torch.where(active, moved, codes)
            return model.decode(codes, enc.lengths)

        return decode

    return encode


def textok_round_trip(model: TexTok) -> RoundTrip:
    """Round trip through a ``vq``-bottleneck TexTok, with each image's caption at encode and decode."""
    if model.config.bottleneck != "vq":
        raise ValueError("pscore needs a TexTok with the vq bottleneck: kl tokens have no codes to perturb")

    def encode(batch: ShapesBatch) -> Decoder:
        text = model.embed_text(batch.captions) if model.config.text_conditioning else None
        clean = model.encode(batch.images, text).codes

        def decode(perturbation: Perturbation | None, generator: torch.Generator) -> torch.Tensor:
            codes = clean
            if perturbation is not None:
                codes = model.quantizer.perturb(clean, perturbation.alpha, 1.0, perturbation.delta, generator)
            return model.decode_codes(codes, text)

        return decode

    return encode


@torch.no_grad()
def pscore(round_trip: RoundTrip, classifier: ShapesClassifier, image_size: int, perturbation: Perturbation,
           num_images: int = PScoreConfig.num_images, batch_size: int = 100, max_objects: int = 4) -> PScoreResult:
    """Proxy FD of clean and perturbed round trips of ``num_images`` held-out (``eval`` split) images.

    The eval batches start at index 1000 so they never overlap the training runs' fixed sample batch (index 0).
    """
    if num_images < 2 or batch_size < 1:
        raise ValueError(f"need num_images >= 2 and batch_size >= 1, got {num_images}, {batch_size}")
    world = ShapesWorld(image_size, min_objects=1, max_objects=max_objects)
    generator = torch.Generator().manual_seed(perturbation.seed)
    real, clean, perturbed = [], [], []
    for index, start in enumerate(range(0, num_images, batch_size)):
        batch = world.batch("eval", 1000 + index, min(batch_size, num_images - start))
        decode = round_trip(batch)
        real.append(classifier.features(batch.images))
        clean.append(classifier.features(decode(None, generator)))
        perturbed.append(classifier.features(decode(perturbation, generator)))
    real_f = torch.cat(real)
    return PScoreResult(frechet_distance(real_f, torch.cat(clean)), frechet_distance(real_f, torch.cat(perturbed)),
                        perturbation, num_images)
