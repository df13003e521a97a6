"""A small CNN that reads shapes-world images: which (shape, colour) classes are present, and how many objects.

Two jobs in this repo: its pooled features are the feature space of *proxy* Frechet distances (proxy FID,
pscore -- never comparable with Inception FID), and it is the judge of generated shapes-world images
(class accuracy of class-conditional samples, binding of colour to shape). Trained here in a few CPU
minutes by ``mediaforge train shapes-classifier``; the shipped copy is ``pipelines/weights/shapes-classifier``.

Heads (all from the same pooled feature):
- ``class_logits`` (B, 40): multi-label presence of each shape x colour class (``pipelines.data.shapes``);
  for single-object images the argmax is the predicted class;
- ``count_logits`` (B, max_count + 1): number of objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.data.shapes import COLOURS, NUM_CLASSES, ShapesBatch
from tokenizers_media.modeling import ModelConfig, PretrainedModel, register_model

POSITIVE_WEIGHT = 8.0


@dataclass(frozen=True)
class ShapesClassifierConfig(ModelConfig):
    image_size: int = 64
    """Inputs of any size are resized (bilinear, antialiased) to this side before the network."""
    widths: tuple[int, ...] = (16, 32, 64, 128)
    """Channels of each conv stage; every stage starts with a stride-2 conv (64 px -> 4 x 4 at the end)."""
    num_classes: int = NUM_CLASSES
    max_count: int = 6


@dataclass
class ShapesPrediction:
    features: torch.Tensor
    """(B, 2 * widths[-1]) average- and max-pooled features (the proxy-FID feature space)."""
    class_logits: torch.Tensor
    count_logits: torch.Tensor


@register_model
class ShapesClassifier(PretrainedModel):
    config_class = ShapesClassifierConfig
    presets = {"tiny": ShapesClassifierConfig}

    def __init__(self, config: ShapesClassifierConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        channels = 3
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.class_head = nn.Linear(2 * channels, config.num_classes)
        self.count_head = nn.Linear(2 * channels, config.max_count + 1)

    def forward(self, images: torch.Tensor) -> ShapesPrediction:
        """images (B, 3, H, W) in [0, 1] -> prediction."""
        x = self._resize(images)
        maps = self.body(x * 2 - 1)
        # Max pooling keeps a small object's evidence that averaging over the background would dilute.
        features = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return ShapesPrediction(features, self.class_head(features), self.count_head(features))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D) features for proxy Frechet distances, in batches."""
        return torch.cat([self(chunk).features for chunk in images.split(batch_size)])

    def loss(self, batch: ShapesBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Multi-label BCE on class presence (positives up-weighted: ~2 of 40 are present) + softmax CE on
        the class of single-object images (a much stronger signal early on) + CE on count."""
        pred = self(batch.images)
        targets = presence_targets(batch, self.config.num_classes)
        presence = F.binary_cross_entropy_with_logits(pred.class_logits, targets,
                                                      pos_weight=torch.tensor(POSITIVE_WEIGHT))
        single = batch.counts == 1
        top1 = (F.cross_entropy(pred.class_logits[single], batch.class_ids[single]) if single.any()
                else pred.class_logits.new_zeros(()))
        count_loss = F.cross_entropy(pred.count_logits, batch.counts.clamp(max=self.config.max_count))
        total = presence + top1 + count_loss
        return total, {"presence": presence.item(), "single": top1.item(), "count": count_loss.item()}

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        size = self.config.image_size
        if images.shape[-2:] == (size, size):
            return images
        return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def presence_targets(batch: ShapesBatch, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(B, num_classes) float: 1 where the image holds an object of that shape x colour class."""
    targets = torch.zeros(len(batch.counts), num_classes)
    ids = batch.shape_ids * len(COLOURS) + batch.colour_ids
    rows, slots = torch.nonzero(batch.shape_ids >= 0, as_tuple=True)
    targets[rows, ids[rows, slots]] = 1.0
    return targets


@torch.no_grad()
def accuracy(model: ShapesClassifier, batch: ShapesBatch) -> dict[str, float]:
    """``set``: the predicted class set equals the true one; ``top1_single``: argmax class on single-object
    images; ``count``: exact object count. A class counts as present when its logit exceeds
    log(POSITIVE_WEIGHT): training up-weighted positives by that factor, which shifts the logits by it."""
    pred = model(batch.images)
    targets = presence_targets(batch, model.config.num_classes).bool()
    single = batch.counts == 1
    top1 = pred.class_logits.argmax(1) == batch.class_ids
    return {
        "set": ((pred.class_logits > math.log(POSITIVE_WEIGHT)) == targets).all(1).float().mean().item(),
        "top1_single": top1[single].float().mean().item() if single.any() else float("nan"),
        "count": (pred.count_logits.argmax(1) == batch.counts).float().mean().item(),
    }
