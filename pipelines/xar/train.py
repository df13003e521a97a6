"""Training xAR with flow matching and Noisy Context Learning (arXiv 2502.20388, Sec. 3.3).

Noisy Context Learning (``noisy_context=True``, the paper's method): every entity gets its own time
``t ~ logit-normal(0, 1)``, ``x_t = (1 - t) x + t eps``, and the network regresses ``v = eps - x`` for all
entities in one block-causal pass, so each entity learns to denoise from *noisy* context.

Teacher forcing (``noisy_context=False``, the baseline of the paper's ablation): per image one entity k is
picked; entities before k are clean (t = 0), entity k is noised, later ones are pure noise (t = 1, unseen by
k through the mask); the loss covers entity k only. Same pass, same batch: the comparison is at equal steps.

Class labels are replaced by the null class with probability ``class_dropout`` (for guidance). The EMA of the
weights is what gets saved. ``resume`` continues the run in ``out_dir`` (possibly with more ``steps``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld, class_name
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from pipelines.training.vae import class_batch
from pipelines.xar.model import XAR

logger = logging.getLogger(__name__)
LATENTS = "latents.pt"


@dataclass(frozen=True)
class XARTrainConfig:
    preset: str = "tiny"
    entity: str = "cell"
    entity_size: int = 4
    noisy_context: bool = True
    steps: int = 3000
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 50
    ema_decay: float = 0.999
    class_dropout: float = 0.1
    image_size: int = 64
    dataset_size: int = 4096
    seed: int = 0
    checkpoint_every: int = 250


def sample_times(model: XAR, batch: int, noisy_context: bool, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entity times ``(B, E)`` and a per-token loss weight ``(B, N)`` for one training batch."""
    e = model.layout.num_entities
    t = torch.sigmoid(torch.randn(batch, e, generator=generator))  # logit-normal(0, 1)
    if noisy_context:
        return t, torch.ones(batch, model.layout.num_tokens)
    target = torch.randint(0, e, (batch, 1), generator=generator)
    entities = torch.arange(e)[None]
    t = torch.where(entities < target, 0.0, torch.where(entities > target, 1.0, t))
    weight = (model.entity_index[None] == target).float()  # loss on the chosen entity only
    return t, weight


def flow_matching_loss(model: XAR, tokens: torch.Tensor, labels: torch.Tensor, noisy_context: bool,
                       generator: torch.Generator) -> torch.Tensor:
    """MSE between predicted and true velocity ``eps - x`` over the supervised tokens."""
    b = tokens.shape[0]
    t, weight = sample_times(model, b, noisy_context, generator)
    eps = torch.randn(tokens.shape, generator=generator)
    t_tok = t[:, model.entity_index, None]  # (B, N, 1)
    x_t = (1 - t_tok) * tokens + t_tok * eps
    error = (model(x_t, t, labels) - (eps - tokens)).pow(2).mean(-1)  # (B, N)
    return (error * weight).sum() / weight.sum()


@dataclass
class LatentDataset:
    """Posterior mean / std ``(M, C, G, G)`` of M class-conditional images, encoded once (CPU time is scarce:
    the frozen VAE encoder would otherwise cost more per step than the tiny xAR itself)."""

    mean: torch.Tensor
    std: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def encode(cls, vae: AutoencoderKL, config: XARTrainConfig, chunk: int = 64) -> LatentDataset:
        world = ShapesWorld(config.image_size, min_objects=1, max_objects=1)
        chunk = min(chunk, config.dataset_size)
        means, stds, labels = [], [], []
        with torch.no_grad():
            for index in range(-(-config.dataset_size // chunk)):
                images, ids = class_batch(world, "train", index, chunk, config.seed)
                dist = vae.encode(images).latent_dist
                means.append(dist.mean)
                stds.append(dist.std)
                labels.append(ids)
        m = config.dataset_size
        return cls(torch.cat(means)[:m], torch.cat(stds)[:m], torch.cat(labels)[:m])

    def sample(self, batch_size: int, scaling_factor: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled latents ``(B, C, G, G)`` (a fresh posterior sample) and their class ids ``(B,)``."""
        idx = torch.randint(0, len(self.labels), (batch_size,), generator=generator)
        noise = torch.randn(self.mean[idx].shape, generator=generator)
        return (self.mean[idx] + self.std[idx] * noise) * scaling_factor, self.labels[idx]


def train_xar(config: XARTrainConfig, out_dir: Path, *, vae_dir: Path, resume: bool = False,
              show_progress: bool = True) -> dict[str, float]:
    """Train on the latents of the ``AutoencoderKL`` in ``vae_dir`` (``pipelines.training.vae``, preset ``xar``)
    (with ``resume``, continue the run in ``out_dir``) and save the EMA model to ``out_dir``, the VAE to
    ``out_dir/vae``. The rate warms up linearly and then stays flat (xAR's recipe: ``min_ratio=1``)."""
    run, config = RunDir.open(out_dir, config, resume)
    torch.manual_seed(config.seed)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)
    names = tuple(class_name(i) for i in range(NUM_CLASSES))
    model = XAR.from_preset(config.preset, entity=config.entity, entity_size=config.entity_size,
                            num_classes=NUM_CLASSES, class_names=names)
    ema = copy.deepcopy(model).requires_grad_(False)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sched = warmup_cosine(optim, config.steps, config.warmup_steps, min_ratio=1.0)
    step = 0
    if resume:
        state = run.restore(model, optim, sched)
        ema.load_state_dict(state.extra["ema"])
        step = state.step
    if (run.path / LATENTS).is_file():
        data = LatentDataset(**torch.load(run.path / LATENTS, weights_only=True))
    else:
        data = LatentDataset.encode(vae, config)
        torch.save(asdict(data), run.path / LATENTS)
    generator = torch.Generator().manual_seed(config.seed * 7919 + step)
    loss_value = float("nan")

    def save_checkpoint() -> None:
        run.save(step, model.state_dict(), optim.state_dict(), sched.state_dict(), ema=ema.state_dict())

    model.train()
    with TrainProgress("xar", config.steps, step, show_progress) as bar:
        while step < config.steps:
            latents, labels = data.sample(config.batch_size, vae.config.scaling_factor, generator)
            tokens = model.layout.to_tokens(latents)
            drop = torch.rand(labels.shape, generator=generator) < config.class_dropout
            labels = torch.where(drop, model.null_class, labels)
            loss = flow_matching_loss(model, tokens, labels, config.noisy_context, generator)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            decay = min(config.ema_decay, (1 + step) / (10 + step))  # warm-up: short runs forget the init
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - decay)
            step += 1
            loss_value = loss.item()
            bar.update(step, {"loss": loss_value})
            if step % 50 == 0:
                logger.info("xar step %d loss %.4f (%.0f s)", step, loss_value, run.elapsed_s)
            if step % config.checkpoint_every == 0:
                save_checkpoint()
    save_checkpoint()
    ema.eval().save_pretrained(run.path)
    vae.save_pretrained(run.path / "vae")
    return {"step": step, "loss": loss_value, "elapsed_s": run.elapsed_s}
