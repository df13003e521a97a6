"""Train KARL on shapes world (``mediaforge train karl``), optionally with robust latent perturbation.

Each iteration runs KARL's two passes (spec, "Training, Upside-Down-RL style"), on pixel L1 (+ L2) since no
LPIPS or GAN losses can be trained offline at this scale:

(a) budget pass: a budget T is drawn from {s, 2s, ..., max_tokens} (once per step as in the spec, or for each
    image with ``budget_per_image``) and the target error from the lowest bins
    (so every one of the T tokens is wanted: halting targets 0); it trains reconstruction at T tokens and
    records the per-image L1 reached, eps0.
(b) learn-to-tokenize pass: the full budget, conditioned on bin(eps0); the decoder sees the first T tokens and
    the halting head learns BCE targets 0 for those and 1 for the rest. Where T is already the full budget
    (no token to drop), the condition is a random bin below bin(eps0), as in the paper.

Robust latent perturbation (``--perturb``) replaces codes after the VQ losses in pass (b) only, so the measured
eps0 that defines the halting targets stays the error of clean tokens. Its strength follows the step-scaled
schedule of ``tokenizers_media.nn.vq.PerturbationSchedule``.

Every batch is a pure function of the step (shapes world ``train`` split, batch index = step; the pass
randomness is seeded by (seed, step)), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.data.shapes import ShapesWorld
from pipelines.training.image_grid import save_image_grid
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from tokenizers_media.image.karl import KARL, active_prefix
from tokenizers_media.nn.vq import PerturbationSchedule

logger = logging.getLogger(__name__)

LOW_BINS = 3
"""Pass (a) draws its target error from this many lowest bins (0.005, 0.01, 0.02)."""


@dataclass(frozen=True)
class PerturbOptions:
    """Robust latent perturbation strength at the start of the schedule (RobustTok defaults)."""

    alpha: float = 1.0
    beta: float = 0.1
    delta: int = 100

    @classmethod
    def parse(cls, text: str) -> PerturbOptions:
        """``"alpha=1,beta=0.1,delta=100"`` (any subset, in any order) -> options."""
        values: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = item.partition("=")
            if not sep or key not in ("alpha", "beta", "delta"):
                raise ValueError(f"--perturb expects alpha=..,beta=..,delta=.. items, got {item!r}")
            try:
                values[key] = int(raw) if key == "delta" else float(raw)
            except ValueError as err:
                raise ValueError(f"--perturb {key} must be a number, got {raw!r}") from err
        return cls(**values)


@dataclass(frozen=True)
class KARLTrainConfig:
    """Everything a KARL training run depends on (written into the checkpoint and the model card)."""

    preset: str = "tiny"
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    token_step: int = 4
    l1_weight: float = 1.0
    """Pixel L1 weight; L1 alone favours the background (the median) wherever an object's place is uncertain."""
    l2_weight: float = 1.0
    halt_weight: float = 0.1
    min_objects: int = 1
    max_objects: int = 4
    seed: int = 0
    checkpoint_every: int = 100
    sample_every: int = 250
    perturb: PerturbOptions | None = None
    model_overrides: dict = field(default_factory=dict)
    init: str | None = None
    """A trained KARL directory to start from instead of a fresh ``preset`` model."""
    halting_only: bool = False
    """Train only the halting head (needs ``init``); everything else stays frozen, so the halting loss can be
    weighted up without costing reconstruction (a fine-tuning stage of ours, not in the paper)."""
    budget_per_image: bool = False
    """Draw the budget T for each image instead of once per step (ours; the spec draws one T per iteration).
    With one T per step every image of the batch gets the same halting targets, so the part of the halting
    signal that depends on the image rests on one T draw per step rather than one per image."""

    def schedule(self) -> PerturbationSchedule | None:
        if self.perturb is None:
            return None
        return PerturbationSchedule.for_total_steps(self.steps, **asdict(self.perturb))


@dataclass
class StepStats:
    loss: float
    l1_budget: float
    l1_adaptive: float
    halt_bce: float
    vq: float


def train_karl(config: KARLTrainConfig, out_dir: Path, *, resume: bool = False, show_progress: bool = True,
               stop_at: int | None = None) -> KARL:
    """Train (with ``resume``, continue the run in ``out_dir``) and save the model directory.

    ``stop_at`` ends this session after that many steps (checkpointed, model saved) without changing the
    schedule, which stays that of ``config.steps``: a later call with ``resume`` continues from there.
    The rate warms up linearly, then decays along a half-cosine to 10% of the peak.
    """
    run, config = RunDir.open(out_dir, config, resume)
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    torch.manual_seed(config.seed)
    model = _initial_model(config)
    if model.quantizer is None and config.perturb is not None:
        raise ValueError("--perturb needs a quantised KARL (quantize=True): perturbation replaces codes")
    if not 1 <= config.token_step <= model.config.max_tokens:
        raise ValueError(f"token_step must be 1..{model.config.max_tokens} (the model's max_tokens), "
                         f"got {config.token_step}")
    trained = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))
    sched = warmup_cosine(optim, config.steps, config.warmup_steps, min_ratio=0.1)
    start_step = 0
    if resume:
        start_step = run.restore(model, optim, sched).step
    world = ShapesWorld(model.config.image_size, config.min_objects, config.max_objects)
    fixed = world.batch("eval", 0, 16).images
    model.train(not config.halting_only)  # eval mode keeps a frozen codebook from restarting dead codes
    with TrainProgress("karl", config.steps, start_step, show_progress) as bar:
        for step in range(start_step, end):
            stats = train_step(model, optim, world.batch("train", step, config.batch_size).images, config, step)
            sched.step()
            done = step + 1
            bar.update(done, {"loss": stats.loss, "l1": stats.l1_adaptive})
            if step % 50 == 0:
                logger.info("step %d %s", step, stats)
            if done % config.sample_every == 0 or done == end:
                save_samples(model, fixed, run.path / f"samples_{done:06d}.png")
            if done % config.checkpoint_every == 0 or done == end:
                run.save(done, model.state_dict(), optim.state_dict(), sched.state_dict())
    model.eval()
    model.save_pretrained(run.path)
    return model


def _initial_model(config: KARLTrainConfig) -> KARL:
    """A fresh preset model, or the ``init`` model with all but the halting head frozen when ``halting_only``."""
    if config.halting_only and config.init is None:
        raise ValueError("halting_only fine-tunes a trained model: give init (a KARL directory)")
    if config.init is None:
        return KARL.from_preset(config.preset, **config.model_overrides)
    model = KARL.from_pretrained(config.init)
    if config.halting_only:
        model.requires_grad_(False)
        model.halting_head.requires_grad_(True)
    return model


def train_step(model: KARL, optim: torch.optim.Optimizer, images: torch.Tensor, config: KARLTrainConfig,
               step: int) -> StepStats:
    """One iteration of the two passes and an optimiser step."""
    rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    batch, max_tokens = images.shape[0], model.config.max_tokens
    budget = draw_budgets(config, max_tokens, batch, rng)

    # (a) Budget pass: T tokens, a low target error, halting targets 0 (all T tokens are wanted). Per-image
    # budgets mask each image's slots past its T (they are still quantised; the decoder never sees them).
    low = torch.randint(0, LOW_BINS, (batch,), generator=rng)
    width = int(budget.max())
    enc_a = model.encode_latents(images, low, width, budget if config.budget_per_image else None)
    vq_a = model.quantize(enc_a.latents)
    lat_a = enc_a.latents if vq_a is None else vq_a.quantized
    rec_a = model.decode_latents(lat_a, budget)
    l1_a = (rec_a - images).abs().flatten(1).mean(1)  # (B,) the per-image L1 reached: eps0
    wanted = enc_a.halt_logits[active_prefix(budget, width)]
    halt_a = F.binary_cross_entropy_with_logits(wanted, torch.zeros_like(wanted))
    loss_a = _reconstruction(rec_a, images, config) + config.halt_weight * halt_a

    # (b) Learn to tokenize: full budget conditioned on bin(eps0), BCE 0 for the first T tokens, 1 after.
    bins = model.error_bin(l1_a.detach(), batch)
    full = budget == max_tokens
    if full.any():  # nothing to drop: ask for a lower error than reached, keeping every token
        bins = torch.where(full, (torch.rand(batch, generator=rng) * bins).long(), bins)
    enc_b = model.encode_latents(images, bins, max_tokens)
    vq_b = model.quantize(enc_b.latents)
    lat_b = enc_b.latents if vq_b is None else vq_b.quantized
    schedule = config.schedule()
    if schedule is not None and vq_b is not None:
        alpha, beta, delta = schedule.at(step)
        codes = model.quantizer.perturb(vq_b.codes, alpha, beta, delta, rng, latents=enc_b.latents.detach())
        # After the VQ losses: perturbed codes, still straight-through to the encoder.
        lat_b = lat_b + (model.quantizer.decode(codes) - lat_b).detach()
    rec_b = model.decode_latents(lat_b, budget)
    targets = (~active_prefix(budget, max_tokens)).float()
    halt = F.binary_cross_entropy_with_logits(enc_b.halt_logits, targets)
    loss_b = _reconstruction(rec_b, images, config) + config.halt_weight * halt

    vq_loss = sum(v.loss for v in (vq_a, vq_b) if v is not None)
    loss = loss_a + loss_b + vq_loss
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # frozen parameters have no grad and are skipped
    optim.step()
    with torch.no_grad():
        return StepStats(loss.item(), l1_a.mean().item(), (rec_b - images).abs().mean().item(), halt.item(),
                         float(vq_loss))


def draw_budgets(config: KARLTrainConfig, max_tokens: int, batch: int, rng: torch.Generator) -> torch.Tensor:
    """(B,) budget-pass T of each image, from {s, 2s, ..., max_tokens}: one draw per step, or per image."""
    budgets = torch.arange(config.token_step, max_tokens + 1, config.token_step)
    return budgets[torch.randint(len(budgets), (batch if config.budget_per_image else 1,), generator=rng)
                   ].expand(batch)


def _reconstruction(reconstruction: torch.Tensor, images: torch.Tensor, config: KARLTrainConfig) -> torch.Tensor:
    return (config.l1_weight * F.l1_loss(reconstruction, images)
            + config.l2_weight * F.mse_loss(reconstruction, images))


@torch.no_grad()
def save_samples(model: KARL, images: torch.Tensor, path: Path) -> None:
    """Grid: originals, then reconstructions at targets 0.02 / 0.05 / 0.1 (adaptive token counts)."""
    was_training = model.training
    model.eval()
    rows = [images] + [model(images, target_error=eps) for eps in (0.02, 0.05, 0.1)]
    save_image_grid(torch.cat(rows), path, columns=images.shape[0])
    model.train(was_training)
