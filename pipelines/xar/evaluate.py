"""Judging class-conditional xAR samples on shapes world with the shapes classifier (offline, proxy metrics).

- per-class accuracy: the classifier's argmax class on a generated image equals the requested class;
- proxy FD: Frechet distance between classifier features of generated and held-out real images of the
  same classes (a *proxy*, never comparable with Inception FID);
- sampling time per image (wall clock, this machine, batch as given);
- the latent space's ceiling: the same two measures on the VAE's reconstructions of real images (FD against a
  second real batch), since no generator on that latent space can do better.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld, class_name
from pipelines.evaluation.metrics import frechet_distance
from pipelines.shapes_classifier.model import ShapesClassifier
from pipelines.xar.pipeline import XARPipeline
from pipelines.xar.sampler import SAMPLERS


@dataclass(frozen=True)
class XAREvalConfig:
    """What ``mediaforge eval xar`` may set; :func:`evaluate_xar`'s defaults are these."""

    images_per_class: int = 10
    """Generated images per class (40 classes)."""
    num_inference_steps: int = 25
    """Flow steps per entity."""
    guidance_scale: float = 2.0
    """Final CFG scale (ramped over entities)."""
    sampler: str = "sde"
    """sde (Euler-Maruyama) or ode (Euler)."""
    batch_size: int = 80
    """Images generated per pipeline call (sampling time is measured at this batch)."""
    seed: int = 0
    """Seed of the generated images."""

    def __post_init__(self) -> None:
        # Checked here, not only by the pipeline, so a bad value is refused before any model is loaded.
        for name in ("images_per_class", "num_inference_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; allowed: {SAMPLERS}")


@dataclass
class XAREvaluation:
    per_class_accuracy: dict[str, float]
    accuracy: float
    proxy_fd: float
    seconds_per_image: float
    num_images: int
    reconstruction_accuracy: float
    reconstruction_fd: float

    def markdown(self) -> str:
        rows = [f"| {name} | {acc:.2f} |" for name, acc in self.per_class_accuracy.items()]
        return "\n".join([
            f"generated images: {self.num_images}; class accuracy {self.accuracy:.3f}; "
            f"proxy FD (shapes-classifier features, proxy) {self.proxy_fd:.2f}; "
            f"sampling {self.seconds_per_image * 1000:.1f} ms/image",
            f"ceiling, VAE reconstructions of real images: class accuracy {self.reconstruction_accuracy:.3f}; "
            f"proxy FD {self.reconstruction_fd:.2f}",
            "", "| class | accuracy |", "|---|---|", *rows,
        ])


def evaluate_xar(pipe: XARPipeline, classifier: ShapesClassifier,
                 images_per_class: int = XAREvalConfig.images_per_class,
                 num_inference_steps: int = XAREvalConfig.num_inference_steps,
                 guidance_scale: float = XAREvalConfig.guidance_scale, sampler: str = XAREvalConfig.sampler,
                 batch_size: int = XAREvalConfig.batch_size, seed: int = XAREvalConfig.seed) -> XAREvaluation:
    """Generate ``images_per_class`` images of every class and judge them."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(images_per_class)
    generator = torch.Generator().manual_seed(seed)
    generated, start = [], time.perf_counter()
    for chunk in labels.split(batch_size):
        out = pipe(chunk.tolist(), num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   sampler=sampler, generator=generator)
        generated.append(out.images)
    seconds = (time.perf_counter() - start) / len(labels)
    images = torch.cat(generated)
    world = ShapesWorld(images.shape[-1], 1, 1)
    real = world.batch("eval", 0, len(labels), class_ids=labels.tolist()).images
    other_real = world.batch("eval", 1, len(labels), class_ids=labels.tolist()).images
    with torch.no_grad():
        correct = (_predict(classifier, images) == labels).float()
        fd = frechet_distance(classifier.features(images), classifier.features(real))
        reconstructed = _reconstruct(pipe, real)
        recon_accuracy = (_predict(classifier, reconstructed) == labels).float().mean().item()
        recon_fd = frechet_distance(classifier.features(reconstructed), classifier.features(other_real))
    per_class = {class_name(c): correct[labels == c].mean().item() for c in range(NUM_CLASSES)}
    return XAREvaluation(per_class, correct.mean().item(), fd, seconds, len(labels), recon_accuracy, recon_fd)


def _predict(classifier: ShapesClassifier, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([classifier(c).class_logits.argmax(1) for c in images.split(256)])


def _reconstruct(pipe: XARPipeline, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] through the VAE (posterior mode), back in [0, 1]."""
    vae = pipe.vae
    out = [vae.decode(vae.encode(c.to(pipe.device) * 2 - 1).latent_dist.mode()).sample.clamp(-1, 1).cpu()
           for c in images.split(80)]
    return (torch.cat(out) + 1) / 2
