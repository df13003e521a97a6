"""Train a tiny latent text-to-image diffusion model on shapes world (``mediaforge train sd --preset tiny``).

All three parts are diffusers / transformers classes built from configs and trained here, nothing
downloaded: an ``AutoencoderKL`` (trained first, then frozen), a small ``CLIPTextModel`` over the real CLIP
vocabulary (``pipelines.sd.clip_tokenizer``) and a ``UNet2DConditionModel`` (trained together with the text
encoder on epsilon prediction, DDPM noise schedule). The result is saved as a diffusers
``StableDiffusionPipeline`` folder, plus a ``config.json`` naming the model class for the zoo; ToMe
(``pipelines.tome``) runs on it unchanged and ``mediaforge eval binding`` measures attribute binding with it.

Captions are short ``"a red circle and a blue square"`` phrases in a random object order (the binding
benchmark's prompt form), a quarter of them with sizes (``"a large red circle ..."``); 10 % are dropped to the
empty prompt for classifier-free guidance. (The long shapes-world captions would need a longer, slower text
sequence than this CPU budget allows.)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.data.shapes import Scene, ShapesWorld
from pipelines.sd.clip_tokenizer import CLIP_VOCAB_SIZE, offline_clip_tokenizer

logger = logging.getLogger(__name__)

MODEL_CLASS = "StableDiffusionPipeline"
"""``model_class`` in the folder's ``config.json``: any diffusers SD folder with this config joins the zoo."""


@dataclass(frozen=True)
class SDPreset:
    """Sizes of the three networks and of the data."""

    image_size: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 32)
    """One entry per VAE level; the latent is ``2 ** (len - 1)`` times smaller than the image."""
    latent_channels: int = 8
    unet_channels: tuple[int, ...] = (32, 64)
    unet_heads: int = 2
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    text_max_length: int = 20
    """Prompt length in tokens (CLIP uses 77; shapes prompts need fewer, and attention cost follows it)."""
    max_objects: int = 3


PRESETS: dict[str, SDPreset] = {"tiny": SDPreset()}


@dataclass(frozen=True)
class SDTrainConfig:
    preset: str = "tiny"
    vae_steps: int = 300
    unet_steps: int = 20000
    batch_size: int = 16
    vae_lr: float = 2e-3
    lr: float = 6e-4
    kl_weight: float = 1e-6
    caption_dropout: float = 0.1
    sized_caption_prob: float = 0.25
    ema_decay: float = 0.999
    max_minutes: float = 60.0
    """Wall-clock budget for the UNet phase; training stops early (and saves) when it runs out."""
    save_every: int = 200
    seed: int = 0


def build_vae(p: SDPreset) -> AutoencoderKL:
    n = len(p.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=p.vae_channels,
                         layers_per_block=1, latent_channels=p.latent_channels, norm_num_groups=16,
                         sample_size=p.image_size)


def build_text_encoder(p: SDPreset) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=p.text_hidden, intermediate_size=2 * p.text_hidden,
                            num_hidden_layers=p.text_layers, num_attention_heads=p.text_heads,
                            max_position_embeddings=p.text_max_length, bos_token_id=49406, eos_token_id=49407,
                            pad_token_id=49407)
    return CLIPTextModel(config)


def build_unet(p: SDPreset) -> UNet2DConditionModel:
    n = len(p.unet_channels)
    latent = p.image_size // 2 ** (len(p.vae_channels) - 1)
    return UNet2DConditionModel(sample_size=latent, in_channels=p.latent_channels, out_channels=p.latent_channels,
                                block_out_channels=p.unet_channels, layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D",) * n,
                                up_block_types=("CrossAttnUpBlock2D",) * n, cross_attention_dim=p.text_hidden,
                                attention_head_dim=p.unet_heads, norm_num_groups=16)


def short_caption(scene: Scene, rng: np.random.Generator, sized: bool = False) -> str:
    """``"a red circle and a blue square"`` (the binding prompts' form; ``sized``: ``"a large red circle and
    ..."``) in a random object order."""
    names = [f"a {o.size + ' ' if sized else ''}{o.colour} {o.shape}" for o in scene.objects]
    names = [names[i] for i in rng.permutation(len(names))]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def training_captions(scenes: Sequence[Scene], rng: np.random.Generator, config: SDTrainConfig) -> list[str]:
    out = []
    for scene in scenes:
        u = rng.random()
        if u < config.caption_dropout:
            out.append("")
        else:
            out.append(short_caption(scene, rng, sized=u > 1 - config.sized_caption_prob))
    return out


def train_vae(vae: AutoencoderKL, world: ShapesWorld, config: SDTrainConfig) -> None:
    """Reconstruction (L1 + L2) + a tiny KL term; images are scaled to [-1, 1]."""
    optim = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr)
    vae.train()
    for step, batch in zip(range(config.vae_steps), world.iterate("train", config.batch_size), strict=False):
        x = batch.images * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + config.kl_weight * posterior.kl().mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if step % 100 == 0:
            logger.info("vae step %d loss %.4f", step, loss.item())
    vae.eval().requires_grad_(False)


def finetune_vae_decoder(vae: AutoencoderKL, world: ShapesWorld, steps: int, batch_size: int = 16,
                         lr: float = 1e-3, max_minutes: float = 60.0, first_batch: int = 10**5,
                         on_save: Callable[[AutoencoderKL], None] | None = None, save_every: int = 100) -> int:
    """Train only the decoder (encoder frozen): reconstructions improve while the latent space the UNet
    was trained on stays exactly the same, so this can run after (or alongside) the UNet phase."""
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=lr)
    start, step = time.perf_counter(), 0
    vae.train()
    for step, batch in zip(range(1, steps + 1), world.iterate("train", batch_size, start=first_batch), strict=False):
        x = batch.images * 2 - 1
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample()
        recon = vae.decode(latents).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        out_of_time = time.perf_counter() - start > max_minutes * 60
        if step % save_every == 0 or out_of_time or step == steps:
            logger.info("decoder step %d loss %.4f", step, loss.item())
            if on_save is not None:
                on_save(vae.eval())
                vae.train()
        if out_of_time:
            break
    vae.eval().requires_grad_(False)
    return step


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, world: ShapesWorld) -> float:
    """1 / std of the latents (as in Stable Diffusion), so the diffusion sees unit-variance inputs."""
    batch = world.batch("train", 10**6, 256)
    return float(1.0 / vae.encode(batch.images * 2 - 1).latent_dist.mean.std())


def save_pipeline(out_dir: Path, vae: AutoencoderKL, text_encoder: CLIPTextModel, unet: UNet2DConditionModel,
                  info: dict) -> None:
    tokenizer = offline_clip_tokenizer(text_encoder.config.max_position_embeddings)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=DDIMScheduler.from_config(DDPMScheduler().config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    # Keep entries added to the folder's config by hand (the ToMe layers, "tome") across later saves.
    config_path = out_dir / "config.json"
    kept = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config_path.write_text(json.dumps({**kept, "model_class": MODEL_CLASS, **info}, indent=2) + "\n")


def train_sd(config: SDTrainConfig, out_dir: Path, resume: bool = False) -> dict:
    """Train the VAE, then the UNet + text encoder; saves ``out_dir`` every ``save_every`` steps and at the end.

    ``resume``: continue the UNet + text encoder phase from the pipeline saved in ``out_dir`` (its EMA weights;
    the VAE is kept as saved, the optimizer restarts), counting steps on from the saved ``unet_steps_done``.
    """
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; available: {sorted(PRESETS)}")
    p = PRESETS[config.preset]
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    out_dir = Path(out_dir)
    world = ShapesWorld(p.image_size, min_objects=1, max_objects=p.max_objects)
    tokenizer = offline_clip_tokenizer(p.text_max_length)
    start = time.perf_counter()
    if resume:
        vae, text_encoder, unet, done, vae_wall, earlier_wall = _load_run(out_dir)
    else:
        vae, text_encoder, unet, done, earlier_wall = build_vae(p), build_text_encoder(p), build_unet(p), 0, 0
        train_vae(vae, world, config)
        vae.register_to_config(scaling_factor=latent_scaling_factor(vae, world))
        vae_wall = time.perf_counter() - start
        logger.info("vae done in %.0f s, scaling factor %.4f", vae_wall, vae.config.scaling_factor)

    noise_schedule = DDPMScheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    ema_unet = EMAModel(unet.parameters(), decay=config.ema_decay)
    ema_text = EMAModel(text_encoder.parameters(), decay=config.ema_decay)
    unet.train()
    text_encoder.train()
    step, losses = 0, []
    batches = world.iterate("train", config.batch_size, start=config.vae_steps + done)
    phase_start = time.perf_counter()
    for step, batch in zip(range(done + 1, config.unet_steps + 1), batches, strict=False):
        with torch.no_grad():
            latents = vae.encode(batch.images * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
        ids = tokenizer(training_captions(batch.scenes, rng, config), padding="max_length",
                        max_length=p.text_max_length, truncation=True, return_tensors="pt").input_ids
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (latents.shape[0],))
        noisy = noise_schedule.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, noise)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        ema_unet.step(unet.parameters())
        ema_text.step(text_encoder.parameters())
        losses.append(loss.item())
        if step % 100 == 0:
            logger.info("unet step %d loss %.4f (mean of last 100) %.0f s", step, float(np.mean(losses[-100:])),
                        time.perf_counter() - phase_start)
        out_of_time = time.perf_counter() - phase_start > config.max_minutes * 60
        if step % config.save_every == 0 or out_of_time or step == config.unet_steps:
            info = {"train": asdict(config), "preset": asdict(p), "unet_steps_done": step,
                    "vae_wall_s": round(vae_wall), "wall_s": round(earlier_wall + time.perf_counter() - start),
                    "final_loss": float(np.mean(losses[-200:]))}
            _save_ema(out_dir, vae, text_encoder, unet, ema_text, ema_unet, info)
            logger.info("saved %s at step %d", out_dir, step)
        if out_of_time:
            break
    return {"unet_steps": step, "final_loss": float(np.mean(losses[-200:])),
            "wall_s": time.perf_counter() - start}


def _load_run(out_dir: Path) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel, int, float, float]:
    """The components and progress (steps done, VAE and total wall seconds) of a saved ``train sd`` run."""
    info = json.loads((out_dir / "config.json").read_text())
    vae = AutoencoderKL.from_pretrained(out_dir / "vae").requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(out_dir / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(out_dir / "unet")
    return vae.eval(), text_encoder, unet, int(info["unet_steps_done"]), info["vae_wall_s"], info["wall_s"]


def _save_ema(out_dir: Path, vae: AutoencoderKL, text_encoder: CLIPTextModel, unet: UNet2DConditionModel,
              ema_text: EMAModel, ema_unet: EMAModel, info: dict) -> None:
    """Save the EMA weights, then put the training weights back."""
    for ema, model in ((ema_text, text_encoder), (ema_unet, unet)):
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    save_pipeline(out_dir, vae, text_encoder.eval(), unet.eval(), info)
    for ema, model in ((ema_text, text_encoder), (ema_unet, unet)):
        ema.restore(model.parameters())
    text_encoder.train()
    unet.train()
