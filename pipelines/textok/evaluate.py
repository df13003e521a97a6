"""Held-out measurements of a TexTok model (``mediaforge eval textok`` and the end of ``train textok``).

PSNR / SSIM score pixels. The paper's text ablation is reported in rFID, which scores whether a reconstruction
still looks like the right kind of image; that is where a caption should help, since it names each object's
shape and colour. With a shapes classifier, this also reports:

- proxy rFID: Frechet distance between held-out images and their reconstructions in the classifier's
  features (a *proxy*, never comparable with Inception rFID);
- object recall: the share of the labelled objects whose (colour, shape) the training-free shapes detector
  (``pipelines/evaluation/shape_detector.py``) finds in the reconstruction, beside the same on the originals (the
  judge's ceiling).

Images are shapes-world ``eval`` batches of 128 from index 0 (never seen in training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipelines.data.shapes import ShapesBatch, ShapesWorld
from pipelines.evaluation.metrics import frechet_distance, psnr, ssim
from pipelines.evaluation.shape_detector import objects_present
from pipelines.shapes_classifier.model import ShapesClassifier
from tokenizers_media.image.textok import TexTok

BATCH_SIZE = 128


@dataclass(frozen=True)
class TexTokEvalConfig:
    """What ``mediaforge eval textok`` may set; :func:`evaluate_textoks`'s defaults are these."""

    num_images: int = 512


@dataclass(frozen=True)
class SemanticScores:
    proxy_rfid: float
    object_recall: float
    object_recall_real: float


@dataclass(frozen=True)
class TexTokReport:
    psnr: float
    ssim: float
    num_images: int
    semantic: SemanticScores | None = None

    def metrics(self) -> dict[str, float]:
        """Flat numbers for ``metrics.json`` and ``--json``."""
        out = {"psnr": self.psnr, "ssim": self.ssim, "eval_images": self.num_images}
        if self.semantic is not None:
            out |= vars(self.semantic)
        return out


@torch.no_grad()
def evaluate_textok(model: TexTok, num_images: int = TexTokEvalConfig.num_images,
                    classifier: ShapesClassifier | None = None) -> TexTokReport:
    """Deterministic (mean-latent or nearest-code) reconstructions of ``num_images`` held-out images."""
    return evaluate_textoks([model], num_images, classifier)[0]


@torch.no_grad()
def evaluate_textoks(models: Sequence[TexTok], num_images: int = TexTokEvalConfig.num_images,
                     classifier: ShapesClassifier | None = None) -> list[TexTokReport]:
    """One report per model on the same held-out images; the originals' features and detected objects are
    computed once for all models."""
    if num_images < 2:
        raise ValueError(f"need at least 2 held-out images, got {num_images}")
    sizes = sorted({m.config.image_size for m in models})
    if len(sizes) != 1:
        raise ValueError(f"models to compare must share one image size, got {sizes}")
    world = ShapesWorld(sizes[0], min_objects=1, max_objects=4)
    real_f, found_real = [], []
    scores_p, scores_s, recon_f, found = ([[] for _ in models] for _ in range(4))
    for index, start in enumerate(range(0, num_images, BATCH_SIZE)):
        batch = world.batch("eval", index, min(BATCH_SIZE, num_images - start))
        if classifier is not None:
            real_f.append(classifier.features(batch.images))
            found_real.append(_objects_found(batch.images, batch))
        for k, model in enumerate(models):
            text = batch.captions_in(model.config.caption_style) if model.config.text_conditioning else None
            recon = model.decode(model.encode(batch.images, text).latents, text)
            scores_p[k].append(psnr(recon, batch.images))
            scores_s[k].append(ssim(recon, batch.images))
            if classifier is not None:
                recon_f[k].append(classifier.features(recon))
                found[k].append(_objects_found(recon, batch))
    reports = []
    for k in range(len(models)):
        semantic = None
        if classifier is not None:
            semantic = SemanticScores(frechet_distance(torch.cat(real_f), torch.cat(recon_f[k])),
                                      torch.cat(found[k]).float().mean().item(),
                                      torch.cat(found_real).float().mean().item())
        reports.append(TexTokReport(torch.cat(scores_p[k]).mean().item(), torch.cat(scores_s[k]).mean().item(),
                                    num_images, semantic))
    return reports


def _objects_found(images: torch.Tensor, batch: ShapesBatch) -> torch.Tensor:
    """(objects in the batch,) bool: is each labelled (colour, shape) detected in its image?"""
    return torch.cat([objects_present(image, tuple((o.colour, o.shape) for o in scene.objects))
                      for image, scene in zip(images, batch.scenes, strict=True)])


def markdown_table(rows: list[tuple[str, TexTok, TexTokReport]]) -> str:
    """One row per model: its configuration and every score (semantic columns only where all were measured)."""
    semantic = all(report.semantic is not None for _, _, report in rows)
    head = "| model | tokens | bottleneck | text | PSNR (dB) | SSIM |"
    if semantic:
        head += " proxy rFID | object recall | same, originals |"
    lines = [head, "|" + "---|" * head.count(" |")]
    for name, model, report in rows:
        c = model.config
        line = (f"| {name} | {c.num_latent_tokens} | {c.bottleneck} | {'yes' if c.text_conditioning else 'no'} | "
                f"{report.psnr:.2f} | {report.ssim:.3f} |")
        if report.semantic is not None and semantic:
            s = report.semantic
            line += f" {s.proxy_rfid:.3f} | {s.object_recall:.3f} | {s.object_recall_real:.3f} |"
        lines.append(line)
    return "\n".join(lines)
