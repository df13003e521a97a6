"""Train a tiny latent text-to-image diffusion model on shapes world (``mediaforge train sd --preset tiny``).

All three parts are diffusers / transformers classes built from configs and trained here, nothing
downloaded: an ``AutoencoderKL`` (trained first in ``DIR/vae-run`` by ``pipelines.training.vae``, preset ``sd``,
then frozen), a small ``CLIPTextModel`` over the real CLIP
vocabulary (``pipelines.sd.clip_tokenizer``) and a ``UNet2DConditionModel`` (trained together with the text
encoder on epsilon prediction, DDPM noise schedule). The result is saved as a diffusers
``StableDiffusionPipeline`` folder, plus a ``config.json`` naming the model class for the zoo, in the
training harness's run directory (``train_config.json``, ``checkpoint.pt``, the resume rule); ToMe
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
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.data.shapes import Scene, ShapesWorld
from pipelines.sd.clip_tokenizer import CLIP_VOCAB_SIZE, offline_clip_tokenizer
from pipelines.training.progress import TrainProgress
from pipelines.training.run_dir import RunDir
from pipelines.training.schedule import warmup_cosine
from pipelines.training.vae import VAE_RUN, VAETrainConfig, trained_vae

logger = logging.getLogger(__name__)

MODEL_CLASS = "StableDiffusionPipeline"
"""``model_class`` in the folder's ``config.json``: any diffusers SD folder with this config joins the zoo."""


@dataclass(frozen=True)
class SDPreset:
    """Sizes of the text encoder, the UNet and the data; the VAE's are those of ``pipelines.training.vae``'s
    ``sd`` preset."""

    image_size: int = 32
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
    warmup_steps: int = 0
    min_lr_ratio: float = 1.0
    """The UNet phase's warm-up + cosine schedule; the defaults keep the rate constant (the shipped recipe)."""
    ema_decay: float = 0.999
    max_minutes: float = 60.0
    """Wall-clock budget of this session's UNet phase; training stops early (and saves) when it runs out."""
    save_every: int = 200
    seed: int = 0

    def vae_config(self, p: SDPreset) -> VAETrainConfig:
        """The VAE phase: the ``sd`` preset at the preset's image size with this run's steps, batch, rate, KL
        weight and seed."""
        return VAETrainConfig.from_preset("sd", image_size=p.image_size, max_objects=p.max_objects,
                                          steps=self.vae_steps, batch_size=self.batch_size, lr=self.vae_lr,
                                          kl_weight=self.kl_weight, seed=self.seed)


def build_text_encoder(p: SDPreset) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=p.text_hidden, intermediate_size=2 * p.text_hidden,
                            num_hidden_layers=p.text_layers, num_attention_heads=p.text_heads,
                            max_position_embeddings=p.text_max_length, bos_token_id=49406, eos_token_id=49407,
                            pad_token_id=49407)
    return CLIPTextModel(config)


def build_unet(p: SDPreset, vae: VAETrainConfig) -> UNet2DConditionModel:
    """A UNet over the latents of ``vae``, cross-attending to the text encoder's states."""
    n = len(p.unet_channels)
    return UNet2DConditionModel(sample_size=vae.latent_size, in_channels=vae.latent_channels,
                                out_channels=vae.latent_channels, block_out_channels=p.unet_channels,
                                layers_per_block=1,
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


@dataclass(frozen=True)
class SDDecoderConfig:
    """What ``mediaforge train sd-decoder`` may set: a decoder-only fine-tune of an existing pipeline's VAE."""

    steps: int = 2000
    """Decoder steps."""
    batch_size: int = 16
    """Images per step."""
    lr: float = 1e-3
    """AdamW learning rate of the decoder."""
    max_minutes: float = 60.0
    """Wall-clock budget; saves and stops when it runs out."""
    first_batch: int = 10**5
    """Index of the first ``train`` batch (batch i + 1 follows it)."""
    save_every: int = 100
    """Steps between saves."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")


def finetune_vae_decoder(vae: AutoencoderKL, world: ShapesWorld, config: SDDecoderConfig,
                         on_save: Callable[[AutoencoderKL], None] | None = None) -> int:
    """Train only the decoder (encoder frozen): reconstructions improve while the latent space the UNet
    was trained on stays exactly the same, so this can run after (or alongside) the UNet phase.

    ``on_save`` gets the VAE (in eval mode) every ``save_every`` steps, at the end and when time runs out.
    Returns the steps done.
    """
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=config.lr)
    start, step = time.perf_counter(), 0
    vae.train()
    batches = world.iterate("train", config.batch_size, start=config.first_batch)
    for step, batch in zip(range(1, config.steps + 1), batches, strict=False):
        x = batch.images * 2 - 1
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample()
        recon = vae.decode(latents).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        out_of_time = time.perf_counter() - start > config.max_minutes * 60
        if step % config.save_every == 0 or out_of_time or step == config.steps:
            logger.info("decoder step %d loss %.4f", step, loss.item())
            if on_save is not None:
                on_save(vae.eval())
                vae.train()
        if out_of_time:
            break
    vae.eval().requires_grad_(False)
    return step


def finetune_decoder_in_place(config: SDDecoderConfig, pipeline_dir: Path) -> int:
    """Fine-tune the decoder of the SD pipeline folder ``pipeline_dir`` in place: ``pipeline_dir/vae`` is
    overwritten at every save (an existing model is edited, so the run-directory rule of the trainers does not
    apply, and there is no checkpoint to resume: a stopped run has saved its last decoder). Returns the steps
    done."""
    vae_dir = Path(pipeline_dir) / "vae"
    if not (vae_dir / "config.json").is_file():
        raise FileNotFoundError(f"{pipeline_dir} is not an SD pipeline folder: no vae/config.json")
    vae = AutoencoderKL.from_pretrained(vae_dir)
    # The scenes `train sd` draws: one to the tiny preset's max objects, at the VAE's image size.
    world = ShapesWorld(vae.config.sample_size, min_objects=1, max_objects=SDPreset.max_objects)
    return finetune_vae_decoder(vae, world, config, on_save=lambda v: v.save_pretrained(vae_dir))


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


def train_sd(config: SDTrainConfig, out_dir: Path, *, resume: bool = False, show_progress: bool = True) -> dict:
    """Train the VAE, then the UNet + text encoder (with ``resume``, continue the run in ``out_dir``); saves the
    pipeline (EMA weights) and the checkpoint every ``save_every`` steps and at the end.

    The run is checkpointed at step 0, before its VAE phase, so it resumes however early it stopped; a resume
    may extend ``unet_steps`` and give a new ``max_minutes``. Batch i of the UNet phase is ``train`` batch
    ``vae_steps + i`` and every random state is checkpointed, so a resumed run continues as if never stopped.
    """
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; available: {sorted(PRESETS)}")
    p = PRESETS[config.preset]
    run, config = RunDir.open(out_dir, config, resume, extendable=("unet_steps", "max_minutes"))
    latent = config.vae_config(p)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    text_encoder, unet = build_text_encoder(p), build_unet(p, latent)
    trained = nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    optim = torch.optim.AdamW(trained.parameters(), lr=config.lr, weight_decay=0.0)
    sched = warmup_cosine(optim, config.unet_steps, config.warmup_steps, config.min_lr_ratio)
    ema_unet = EMAModel(unet.parameters(), decay=config.ema_decay)
    ema_text = EMAModel(text_encoder.parameters(), decay=config.ema_decay)
    step, losses = 0, []
    if resume:
        state = run.restore(trained, optim, sched)
        ema_unet.load_state_dict(state.extra["ema_unet"])
        ema_text.load_state_dict(state.extra["ema_text"])
        torch.set_rng_state(state.extra["torch_rng"])
        rng.bit_generator.state = state.extra["caption_rng"]
        step, losses = state.step, state.extra["losses"]

    def save_checkpoint() -> None:
        run.save(step, trained.state_dict(), optim.state_dict(), sched.state_dict(), ema_unet=ema_unet.state_dict(),
                 ema_text=ema_text.state_dict(), torch_rng=torch.get_rng_state(), caption_rng=rng.bit_generator.state,
                 losses=losses[-200:])

    def save() -> None:
        save_checkpoint()
        info = {"train": asdict(config), "preset": asdict(p), "unet_steps_done": step,
                "elapsed_s": round(run.elapsed_s), "final_loss": _mean(losses[-200:])}
        _save_ema(run.path, vae, text_encoder, unet, ema_text, ema_unet, info)
        logger.info("saved %s at step %d", run.path, step)

    if not resume:
        save_checkpoint()
    vae = trained_vae(latent, run.path / VAE_RUN, show_progress)
    world = ShapesWorld(p.image_size, min_objects=1, max_objects=p.max_objects)
    tokenizer = offline_clip_tokenizer(p.text_max_length)
    noise_schedule = DDPMScheduler()
    unet.train()
    text_encoder.train()
    session_start = time.perf_counter()
    with TrainProgress("sd", config.unet_steps, step, show_progress) as bar:
        while step < config.unet_steps:
            batch = world.batch("train", config.vae_steps + step, config.batch_size)
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
            torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
            optim.step()
            sched.step()
            ema_unet.step(unet.parameters())
            ema_text.step(text_encoder.parameters())
            step += 1
            losses.append(loss.item())
            bar.update(step, {"loss": losses[-1]})
            if step % 100 == 0:
                logger.info("unet step %d loss %.4f (mean of last 100) %.0f s", step, _mean(losses[-100:]),
                            run.elapsed_s)
            if time.perf_counter() - session_start > config.max_minutes * 60:
                logger.info("max_minutes %.4g reached at step %d", config.max_minutes, step)
                break
            if step % config.save_every == 0 and step < config.unet_steps:
                save()
    save()
    return {"unet_steps": step, "final_loss": _mean(losses[-200:]), "elapsed_s": run.elapsed_s}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


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
