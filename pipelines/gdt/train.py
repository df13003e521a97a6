"""Train GDT-tiny on shapes-world groups (``mediaforge train gdt --preset tiny``).

Joint denoising of groups (arXiv 2410.15027, sec. 3.2): every image of a group gets the same time step and its
own caption; group attention lets the images see each other. ``single_image=True`` trains the same backbone on
the same images and captions with G = 1 (each image alone): the baseline of the consistency claim
(``benchmarks/gdt_consistency.py``).

Data: ``pipelines.gdt.groups`` (four group kinds, captions that sometimes leave out the shared attribute),
rendered on the fly from the ``train`` split; batch i is groups batch i, so runs with the same seed see the
same data. Captions go through the frozen MiniLM once per distinct caption (a cache: the caption vocabulary
is a few hundred strings); 10 % of captions are replaced by the null caption for classifier-free guidance.
The latent space is a small ``AutoencoderKL`` (``pipelines.training.vae``, preset ``gdt``), trained first unless
given. The run directory, checkpoint, resume rule, schedule and progress bar are the training harness's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, PixArtTransformer2DModel
from torch import nn

from pipelines.gdt.groups import GROUP_KINDS, GroupSampler
from pipelines.gdt.pipeline import GroupDiffusionConfig, GroupDiffusionPipeline
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from pipelines.training.vae import PRESETS as VAE_PRESETS
from pipelines.training.vae import VAE_RUN, VAETrainConfig, build_vae, trained_vae
from tokenizers_media.text.encoders import TextEmbedding, TextEncoder, build_text_encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GDTPreset:
    image_size: int = 32
    layers: int = 6
    heads: int = 4
    head_dim: int = 24
    patch_size: int = 2
    text_encoder: str = "minilm"
    max_tokens: int = 16


PRESETS: dict[str, GDTPreset] = {"tiny": GDTPreset()}


@dataclass(frozen=True)
class GDTTrainConfig:
    preset: str = "tiny"
    group_size: int = 4
    single_image: bool = False
    """Train with G = 1 attention (the baseline); the data is the same groups."""
    same_image_bias: bool = False
    """Learn a same-image attention bias per layer and head (``pipelines.gdt.attention.SameImageBias``)."""
    steps: int = 2000
    groups_per_step: int = 8
    lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    drop_shared: float = 0.5
    """Share of groups whose later captions leave out the shared attribute."""
    kinds: tuple[str, ...] = GROUP_KINDS
    """Group kinds to train on (``pipelines.gdt.groups``), drawn uniformly from this tuple: a repeated kind
    is drawn more often."""
    vae_steps: int = VAE_PRESETS["gdt"].steps
    """Steps of the VAE phase (run only without ``vae_dir``)."""
    save_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        # A probability: GroupSampler would silently treat 1.5 as "always" and -1 as "never".
        if not 0.0 <= self.drop_shared <= 1.0:
            raise ValueError(f"drop_shared is a probability in [0, 1], got {self.drop_shared}")


def noise_scheduler() -> DDIMScheduler:
    """Cosine-beta DDPM schedule, epsilon prediction, sampled with DDIM."""
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                         set_alpha_to_one=False)


def build_pipeline(preset: GDTPreset, vae: AutoencoderKL, text_encoder: TextEncoder, group_size: int,
                   same_image_bias: bool = False) -> GroupDiffusionPipeline:
    """A fresh PixArt transformer sized by the preset around a trained VAE and a caption encoder."""
    latent = preset.image_size // 2 ** (len(vae.config.block_out_channels) - 1)
    width = preset.heads * preset.head_dim
    transformer = PixArtTransformer2DModel(
        sample_size=latent, num_layers=preset.layers, patch_size=preset.patch_size, in_channels=4, out_channels=4,
        num_attention_heads=preset.heads, attention_head_dim=preset.head_dim, cross_attention_dim=width,
        caption_channels=text_encoder.dim, norm_type="ada_norm_single")
    config = GroupDiffusionConfig(image_size=preset.image_size, group_size=group_size,
                                  text_encoder=preset.text_encoder, max_tokens=preset.max_tokens,
                                  same_image_bias=same_image_bias)
    return GroupDiffusionPipeline(transformer, vae, noise_scheduler(), text_encoder, config)


class CaptionCache:
    """Caption -> frozen per-token states, computed once per distinct caption."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder, self.states = encoder, {}

    def embed(self, captions: list[str], null: torch.Tensor) -> TextEmbedding:
        """Padded (B, L, D) states; rows where ``null`` is True get the null caption (one zero token)."""
        new = sorted({c for c in captions if c not in self.states})
        if new:
            out = self.encoder(new)
            for i, c in enumerate(new):
                self.states[c] = out.tokens[i, out.mask[i]]
        rows = [self.states[c] for c in captions]
        length = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), length, rows[0].shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            if not null[i]:
                tokens[i, : len(r)], mask[i, : len(r)] = r, True
            mask[i, 0] = True
        return TextEmbedding(tokens, mask)


def train_gdt(config: GDTTrainConfig, out_dir: Path, *, resume: bool = False, show_progress: bool = True,
              vae_dir: Path | None = None, command: str = "") -> dict:
    """Train (with ``resume``, continue the run in ``out_dir``) and save a pipeline folder with a model card
    (``train_info.json``: the config, ``command``, step, loss, training seconds).

    ``vae_dir``: a trained ``AutoencoderKL`` folder. Without it the run trains one first in ``out_dir/vae-run``
    (``pipelines.training.vae``, preset ``gdt``, ``vae_steps``), after the run's step-0 checkpoint, so a run
    stopped in that phase resumes it; a resume must name the same ``vae_dir`` (or none) as the run's start.
    The rate warms up over ``warmup`` steps, then decays along a cosine.
    """
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; presets are {sorted(PRESETS)}")
    preset = PRESETS[config.preset]
    run, config = RunDir.open(out_dir, config, resume)
    vae_config = VAETrainConfig.from_preset("gdt", image_size=preset.image_size, steps=config.vae_steps,
                                            seed=config.seed)
    # Until the VAE phase has run, an untrained VAE of the same sizes stands in (the pipeline needs its shape).
    vae = build_vae(vae_config) if vae_dir is None else AutoencoderKL.from_pretrained(vae_dir)
    torch.manual_seed(config.seed)
    g = config.group_size
    text_encoder = build_text_encoder(preset.text_encoder, preset.heads * preset.head_dim, preset.max_tokens)
    pipe = build_pipeline(preset, vae, text_encoder, 1 if config.single_image else g, config.same_image_bias)
    trained = nn.ModuleDict({"transformer": pipe.transformer} | ({} if pipe.group_bias is None
                                                                 else {"group_bias": pipe.group_bias}))
    optim = torch.optim.AdamW(trained.parameters(), lr=config.lr, weight_decay=0.0)
    sched = warmup_cosine(optim, config.steps, config.warmup)
    vae_source = None if vae_dir is None else str(Path(vae_dir).resolve())
    step, losses = 0, []
    if resume:
        state = run.restore(trained, optim, sched)
        if state.extra["vae_dir"] != vae_source:
            raise ValueError(f"{run.path} trains on the VAE of {state.extra['vae_dir'] or VAE_RUN!r}: resume it "
                             f"with vae_dir={state.extra['vae_dir']!r}, not {vae_source!r}")
        step, losses = state.step, state.extra["losses"]
        torch.set_rng_state(state.extra["torch_rng"])
    info: dict = {"config": asdict(config), "command": command}

    def save_checkpoint() -> None:
        run.save(step, trained.state_dict(), optim.state_dict(), sched.state_dict(), vae_dir=vae_source,
                 torch_rng=torch.get_rng_state(), losses=losses[-100:])

    def save() -> None:
        save_checkpoint()
        info.update(step=step, loss=round(_mean(losses[-100:]), 4), elapsed_s=round(run.elapsed_s))
        _save(pipe, run.path, info)

    if not resume:
        save_checkpoint()
    if vae_dir is None:
        pipe.vae = trained_vae(vae_config, run.path / VAE_RUN, show_progress)
    vae = pipe.vae.eval().requires_grad_(False)
    sampler = GroupSampler(g, preset.image_size, config.drop_shared, config.kinds)
    cache = CaptionCache(pipe.text_encoder)
    scheduler = pipe.scheduler
    pipe.transformer.train()
    with TrainProgress("gdt", config.steps, step, show_progress) as bar:
        while step < config.steps:
            step += 1  # 1-based: batch ``step`` of the groups
            batch = sampler.batch("train", step, config.groups_per_step)
            with torch.no_grad():
                latents = vae.encode(batch.images * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
                text = cache.embed(batch.captions, torch.rand(len(batch.captions)) < config.caption_dropout)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (config.groups_per_step,)).repeat_interleave(g)
            noise = torch.randn_like(latents)
            eps = pipe.predict_noise(scheduler.add_noise(latents, noise, t), t, text)
            loss = F.mse_loss(eps, noise)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
            optim.step()
            sched.step()
            losses.append(loss.item())
            bar.update(step, {"loss": losses[-1]})
            if step % 50 == 0:
                logger.info("step %d loss %.4f (mean of last 50) %.0f s", step, _mean(losses[-50:]), run.elapsed_s)
            if step % config.save_every == 0 and step < config.steps:
                save()
    save()
    return info


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _save(pipe: GroupDiffusionPipeline, out_dir: Path, info: dict) -> None:
    pipe.transformer.eval()
    pipe.save_pretrained(out_dir)
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    pipe.transformer.train()
    logger.info("saved %s at step %d", out_dir, info["step"])

