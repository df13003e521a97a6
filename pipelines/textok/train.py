"""Train TexTok on shapes world (``mediaforge train textok``): resumable, with sample grids and held-out metrics.

Recipe (a CPU-sized cut of the paper's, shared/specs/image_tokenizers.md section 2): L2 reconstruction plus a
small KL weight (``kl``) or the VQ codebook/commit loss (``vq``); no perceptual or GAN loss (they need
pretrained or large networks). AdamW, linear warm-up then cosine decay.

Captions go through the frozen MiniLM, which costs far more CPU than the tiny tokenizer itself, so training
draws from a fixed pool of ``pool_size`` shapes-world ``train`` images whose caption embeddings are computed
once. Evaluation uses the ``eval`` split, which training never sees.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.data.shapes import CAPTION_STYLES, ShapesWorld
from pipelines.textok.evaluate import evaluate_textok
from pipelines.training.image_grid import save_image_grid
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from tokenizers_media.image.textok import TexTok
from tokenizers_media.nn.vq import PerturbationSchedule
from tokenizers_media.text.encoders import TextEmbedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TexTokTrainConfig:
    preset: str = "tiny"
    num_latent_tokens: int = 32
    text_conditioning: bool = True
    text_encoder: str = "minilm"
    bottleneck: str = "kl"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    kl_weight: float = 1e-6
    pool_size: int = 4096
    max_objects: int = 4
    eval_images: int = 512
    sample_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 50
    seed: int = 0
    perturb: tuple[float, float, int] | None = None
    """(alpha, beta, delta) robust latent perturbation for the ``vq`` bottleneck, scheduled as RobustTok."""
    text_dropout: float = 0.0
    """Share of training images whose caption is hidden from attention (not in the paper; see ``_drop_captions``)."""
    caption_style: str = "coarse"
    """Which shapes-world captions to train on (``CAPTION_STYLES``); ``exact`` pins the whole geometry."""
    init: str | None = None
    """A trained TexTok directory to start from (ours, not in the paper). Weights that only this config has (the
    text projections, when text is added to a model trained without it) start fresh."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must be in [0, 1), got {self.text_dropout}")
        if self.caption_style not in CAPTION_STYLES:
            raise ValueError(f"caption_style {self.caption_style!r} is not one of {CAPTION_STYLES}")

    def model_overrides(self) -> dict[str, object]:
        overrides: dict[str, object] = {"num_latent_tokens": self.num_latent_tokens,
                                        "text_conditioning": self.text_conditioning,
                                        "text_encoder": self.text_encoder, "bottleneck": self.bottleneck,
                                        "caption_style": self.caption_style}
        if self.text_encoder == "learned":
            overrides["text_dim"] = 128
        return overrides


@dataclass
class _Pool:
    images: torch.Tensor
    captions: list[str]
    text: TextEmbedding | None

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, list[str], TextEmbedding | None]:
        captions = [self.captions[i] for i in index.tolist()]
        if self.text is None:
            return self.images[index], captions, None
        return self.images[index], captions, TextEmbedding(self.text.tokens[index].float(), self.text.mask[index])


def train_textok(config: TexTokTrainConfig, out_dir: Path, *, resume: bool = False,
                 show_progress: bool = True) -> dict[str, float]:
    """Train (with ``resume``, continue the run in ``out_dir``), evaluate, save the model and ``metrics.json``."""
    run, config = RunDir.open(out_dir, config, resume)
    out_dir = run.path
    torch.manual_seed(config.seed)
    model = _initial_model(config)
    if config.perturb is not None and config.bottleneck != "vq":
        raise ValueError("--perturb needs the vq bottleneck (perturbation replaces discrete codes)")
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = warmup_cosine(optim, config.steps, config.warmup_steps, min_ratio=0.1)
    start_step = 0
    if resume:
        start_step = run.restore(model, optim, sched).step
    pool = _build_pool(model, config)
    sample_images, sample_captions = _sample_batch(model)
    schedule = None if config.perturb is None else PerturbationSchedule.for_total_steps(config.steps, *config.perturb)
    order = torch.Generator().manual_seed(config.seed)
    for _ in range(start_step):  # replay the batch order so a resumed run sees the same data
        torch.randint(0, len(pool.images), (config.batch_size,), generator=order)
    noise = torch.Generator().manual_seed(config.seed + 1 + start_step)
    model.train()
    with TrainProgress("textok", config.steps, start_step, show_progress) as bar:
        for step in range(start_step, config.steps):
            images, captions, text = pool.batch(torch.randint(0, len(pool.images), (config.batch_size,),
                                                              generator=order))
            loss, rec = _loss(model, config, images, captions if text is None else text, noise, schedule, step)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            done = step + 1
            bar.update(done, {"rec": rec})
            if done % config.sample_every == 0 or done == config.steps:
                _save_samples(model, sample_images, sample_captions, out_dir / f"samples_{done:06d}.png")
            if done % config.checkpoint_every == 0 or done == config.steps:
                run.save(done, model.state_dict(), optim.state_dict(), sched.state_dict())
            if done % config.log_every == 0:
                logger.info("step %d rec %.5f", done, rec)
    model.eval()
    metrics = {**evaluate_textok(model, config.eval_images).metrics(), "elapsed_s": round(run.elapsed_s, 1),
               "steps": config.steps}
    model.save_pretrained(out_dir / "model")
    (out_dir / "metrics.json").write_text(json.dumps({"config": asdict(config), "metrics": metrics}, indent=2))
    return metrics


def _loss(model: TexTok, config: TexTokTrainConfig, images: torch.Tensor, text: list[str] | TextEmbedding,
          noise: torch.Generator, schedule: PerturbationSchedule | None, step: int) -> tuple[torch.Tensor, float]:
    captions = text if config.text_conditioning else None
    if captions is not None and config.text_dropout:
        captions = _drop_captions(model, captions, config.text_dropout, noise)
    encoding = model.encode(images, captions, sample=True, generator=noise)
    latents = encoding.latents
    if schedule is not None and encoding.codes is not None:
        # After the VQ losses (they were computed on the unperturbed codes): swap in neighbouring codes.
        alpha, beta, delta = schedule.at(step)
        codes = model.quantizer.perturb(encoding.codes, alpha, beta, delta, generator=noise)
        latents = latents + (model.quantizer.decode(codes) - latents).detach()
    recon = model.decode(latents, captions, clamp=False)
    rec = F.mse_loss(recon, images)
    weight = config.kl_weight if config.bottleneck == "kl" else 1.0
    return rec + weight * encoding.loss, rec.item()


def _drop_captions(model: TexTok, text: list[str] | TextEmbedding, share: float, generator: torch.Generator
                   ) -> TextEmbedding:
    """Mask every text token of a random ``share`` of the images, at both ends.

    With every caption visible, the decoder first learns to paint each object's colour at the caption's coarse
    position and the latent tokens stay blurry for thousands of steps (64 px runs: training MSE stuck near
    0.015 while the same model without text reached 0.005). Images without their caption keep the latents
    carrying the whole image.
    """
    embedded = text if isinstance(text, TextEmbedding) else model.embed_text(text)
    keep = torch.rand(embedded.mask.shape[0], generator=generator) >= share
    return TextEmbedding(embedded.tokens, embedded.mask & keep[:, None].to(embedded.mask.device))


_TEXT_MODULES = ("encoder_text.", "decoder_text.", "learned_text.")
"""Weight-name prefixes of the text path: the only weights an ``init`` model may lack."""


def _initial_model(config: TexTokTrainConfig) -> TexTok:
    """The preset model, with the ``init`` model's weights loaded where it has them."""
    model = TexTok.from_preset(config.preset, **config.model_overrides())
    if config.init is None:
        return model
    source = TexTok.from_pretrained(config.init)
    try:
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as err:  # a shape differs: another preset, token count or bottleneck
        raise ValueError(f"init {config.init} does not fit this config: {err}") from err
    foreign = unexpected + [k for k in missing if not k.startswith(_TEXT_MODULES)]
    if foreign:
        raise ValueError(f"init {config.init} does not fit this config (weights {foreign[:4]} differ)")
    return model


@torch.no_grad()
def _build_pool(model: TexTok, config: TexTokTrainConfig) -> _Pool:
    world = ShapesWorld(model.config.image_size, min_objects=1, max_objects=config.max_objects)
    chunks = [world.batch("train", i, 256) for i in range(math.ceil(config.pool_size / 256))]
    images = torch.cat([c.images for c in chunks])[: config.pool_size]
    captions = [cap for c in chunks for cap in c.captions_in(model.config.caption_style)][: config.pool_size]
    if not config.text_conditioning or config.text_encoder == "learned":
        return _Pool(images, captions, None)
    logger.info("embedding %d pool captions with the frozen text encoder", len(captions))
    parts = [model.embed_text(captions[i : i + 128]) for i in range(0, len(captions), 128)]
    length = max(p.tokens.shape[1] for p in parts)
    tokens = torch.cat([F.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts]).half()
    mask = torch.cat([F.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts])
    return _Pool(images, captions, TextEmbedding(tokens, mask))


def _sample_batch(model: TexTok) -> tuple[torch.Tensor, list[str]]:
    batch = ShapesWorld(model.config.image_size).batch("eval", 10_000, 8)
    return batch.images, batch.captions_in(model.config.caption_style)


@torch.no_grad()
def _save_samples(model: TexTok, images: torch.Tensor, captions: list[str], path: Path) -> None:
    """Top row: held-out originals; bottom row: their reconstructions."""
    was_training = model.training
    model.eval()
    text = captions if model.config.text_conditioning else None
    recon = model.decode(model.encode(images, text).latents, text)
    save_image_grid(torch.cat([images, recon]), path, columns=len(images))
    model.train(was_training)
