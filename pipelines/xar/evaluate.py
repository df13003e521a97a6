"""Judging class-conditional xAR samples on shapes world with the shapes classifier (offline, proxy metrics).

- per-class accuracy: the classifier's argmax class on a generated image equals the requested class;
- proxy FD: Frechet distance between classifier features of generated and held-out real images of the
  same classes (a *proxy*, never comparable with Inception FID);
- sampling time per image (wall clock, this machine, batch as given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld, class_name
from pipelines.metrics import frechet_distance
from pipelines.shapes_classifier import ShapesClassifier
from pipelines.xar.pipeline import XARPipeline


@dataclass
class XAREvaluation:
    per_class_accuracy: dict[str, float]
    accuracy: float
    proxy_fd: float
    seconds_per_image: float
    num_images: int

    def markdown(self) -> str:
        rows = [f"| {name} | {acc:.2f} |" for name, acc in self.per_class_accuracy.items()]
        return "\n".join([
            f"generated images: {self.num_images}; class accuracy {self.accuracy:.3f}; "
            f"proxy FD (shapes-classifier features, proxy) {self.proxy_fd:.2f}; "
            f"sampling {self.seconds_per_image * 1000:.1f} ms/image",
            "", "| class | accuracy |", "|---|---|", *rows,
        ])


def evaluate_xar(pipe: XARPipeline, classifier: ShapesClassifier, images_per_class: int = 10,
                 num_inference_steps: int = 25, guidance_scale: float = 2.0, sampler: str = "sde",
                 batch_size: int = 80, seed: int = 0) -> XAREvaluation:
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
    with torch.no_grad():
        predicted = torch.cat([classifier(c).class_logits.argmax(1) for c in images.split(256)])
        real = ShapesWorld(images.shape[-1], 1, 1).batch("eval", 0, len(labels), class_ids=labels.tolist())
        fd = frechet_distance(classifier.features(images), classifier.features(real.images))
    correct = (predicted == labels).float()
    per_class = {class_name(c): correct[labels == c].mean().item() for c in range(NUM_CLASSES)}
    return XAREvaluation(per_class, correct.mean().item(), fd, seconds, len(labels))
