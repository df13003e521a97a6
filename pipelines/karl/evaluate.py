"""Held-out measurements of a KARL model for its model card (``mediaforge eval karl``).

- Fixed token counts: every image gets the first T tokens (halting ignored); PSNR / SSIM / L1 per T (by
  default T = 1, 2, 4, ... up to the budget: the error each count can reach, so which targets are reachable).
- Adaptive: per target error, tokens used and the L1 reached (mean, and how often the target is missed).
- Complexity: tokens used per image group (object count x plain / striped background) at a few targets,
  to show that simpler images get fewer tokens; beside them the *oracle* count, the fewest of the fixed counts
  at which each image reaches the target (the budget when none does): what a perfect halting head would pick.

Images are shapes-world ``eval`` split batches (never seen in training), from index 2000 on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.data.shapes import ShapesBatch, ShapesWorld
from pipelines.evaluation.metrics import psnr, ssim
from tokenizers_media.image.karl import KARL


@dataclass(frozen=True)
class KARLEvalConfig:
    """What ``mediaforge eval karl`` may set; :func:`evaluate_karl`'s defaults are these."""

    num_images: int = 512
    halt_threshold: float | None = None
    """Halting threshold for the adaptive and complexity tables (``None``: the model's config)."""


@dataclass
class KARLReport:
    fixed: list[tuple[int, float, float, float]]
    """(tokens, PSNR dB, SSIM, mean L1) with exactly that many tokens per image."""
    adaptive: list[tuple[float, float, float, float, float]]
    """(target L1, mean tokens, mean L1 reached, fraction with L1 > target, PSNR dB)."""
    complexity: dict[str, list[float]]
    """group name -> mean tokens at each of ``complexity_targets``."""
    oracle: dict[str, list[float]]
    """group name -> mean oracle tokens (fewest fixed count reaching the target) at each complexity target."""
    complexity_targets: tuple[float, ...]
    group_sizes: dict[str, int]
    num_images: int

    def markdown(self) -> str:
        lines = ["### Fixed token count (halting ignored)", "", "| tokens | PSNR (dB) | SSIM | mean L1 |",
                 "|---|---|---|---|"]
        lines += [f"| {t} | {p:.2f} | {s:.3f} | {e:.4f} |" for t, p, s, e in self.fixed]
        lines += ["", "### Adaptive: target error vs tokens used", "",
                  "| target L1 | mean tokens | mean L1 reached | share above target | PSNR (dB) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {e:g} | {n:.1f} | {a:.4f} | {m:.1%} | {p:.2f} |" for e, n, a, m, p in self.adaptive]
        head = " | ".join(f"tokens @ {e:g} | oracle @ {e:g}" for e in self.complexity_targets)
        lines += ["", "### Tokens used by image complexity", "", f"| images | n | {head} |",
                  "|---|---|" + "---|---|" * len(self.complexity_targets)]
        lines += [f"| {g} | {self.group_sizes[g]} | " + " | ".join(
                  f"{v:.1f} | {o:.1f}" for v, o in zip(vals, self.oracle[g], strict=True)) + " |"
                  for g, vals in self.complexity.items()]
        return "\n".join(lines)


def _held_out(image_size: int, num_images: int, batch_size: int = 128) -> list[ShapesBatch]:
    world = ShapesWorld(image_size, min_objects=1, max_objects=4)
    return [world.batch("eval", 2000 + i, min(batch_size, num_images - start))
            for i, start in enumerate(range(0, num_images, batch_size))]


def _groups(batch: ShapesBatch) -> list[str]:
    return [f"{s.count} object{'s' if s.count > 1 else ''}, {'striped' if s.stripes[2] > 0 else 'plain'}"
            for s in batch.scenes]


@torch.no_grad()
def evaluate_karl(model: KARL, num_images: int = KARLEvalConfig.num_images,
                  token_counts: tuple[int, ...] | None = None,
                  targets: tuple[float, ...] = (0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.14),
                  complexity_targets: tuple[float, ...] = (0.04, 0.07, 0.1),
                  halt_threshold: float | None = KARLEvalConfig.halt_threshold) -> KARLReport:
    """``halt_threshold`` applies to the adaptive and complexity tables (default: the model's)."""
    c = model.config
    counts = token_counts or tuple(sorted({2**k for k in range(c.max_tokens.bit_length())} | {c.max_tokens}))
    batches = _held_out(c.image_size, num_images)
    images = torch.cat([b.images for b in batches])
    groups = [g for b in batches for g in _groups(b)]

    fixed, errors = [], []
    for count in counts:
        # The budget pass of training: T latent tokens, the lowest target, every token decoded.
        enc = model.encode_latents(images, model.error_bin(c.error_bins[0], len(images)), count)
        vq = model.quantize(enc.latents)
        latents = enc.latents if vq is None else vq.quantized
        out = model.decode_latents(latents, torch.full((len(images),), count)).clamp(0.0, 1.0)
        errors.append((out - images).abs().flatten(1).mean(1))
        fixed.append((count, psnr(out, images).mean().item(), ssim(out, images).mean().item(),
                      errors[-1].mean().item()))
    errors_by_count = torch.stack(errors, dim=1)  # (N, len(counts))

    adaptive, used = [], {}
    for target in sorted(set(targets) | set(complexity_targets)):
        enc = model.encode(images, target_error=target, halt_threshold=halt_threshold)
        out = model.decode(enc.codes if enc.codes is not None else enc.latents, enc.lengths)
        l1 = (out - images).abs().flatten(1).mean(1)
        used[target] = enc.lengths.float()
        if target in targets:
            adaptive.append((target, enc.lengths.float().mean().item(), l1.mean().item(),
                             (l1 > target).float().mean().item(), psnr(out, images).mean().item()))

    names = sorted(set(groups), key=lambda g: (int(g.split()[0]), g.endswith("striped")))
    oracle_used = {t: _oracle_tokens(errors_by_count, counts, t) for t in complexity_targets}
    complexity, oracle, sizes = {}, {}, {}
    for name in names:
        rows = torch.tensor([g == name for g in groups])
        sizes[name] = int(rows.sum())
        complexity[name] = [used[t][rows].mean().item() for t in complexity_targets]
        oracle[name] = [oracle_used[t][rows].mean().item() for t in complexity_targets]
    return KARLReport(fixed, adaptive, complexity, oracle, complexity_targets, sizes, len(images))


def _oracle_tokens(errors: torch.Tensor, counts: tuple[int, ...], target: float) -> torch.Tensor:
    """(N,) the fewest of ``counts`` whose L1 (``errors`` (N, len(counts))) is within ``target``, else the last."""
    reached = errors <= target
    first = torch.where(reached.any(1), reached.float().argmax(1), len(counts) - 1)
    return torch.tensor(counts, dtype=torch.float)[first]
