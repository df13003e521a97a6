"""``GroupDiffusionPipeline``: generate G images together with group attention (GDT, arXiv 2410.15027).

Components, each saved in its own sub-folder the diffusers way: ``transformer`` (a
``PixArtTransformer2DModel`` whose self-attention layers get ``GroupAttnProcessor``), ``vae``
(``AutoencoderKL``), ``scheduler`` (``DDIMScheduler``), and a pluggable caption encoder
(``tokenizers_media.text.encoders``: the frozen packaged MiniLM, whose 384-d token states the transformer's
caption projection maps to its width, or the small ``learned`` one for tests). The top-level ``config.json``
names the model class for the zoo; with ``same_image_bias`` the learned ``SameImageBias`` sits beside it in
``group_attention.safetensors``.

Reference images are conditioned SDEdit style (paper sec. 3.3): at every step each reference latent is
re-noised to the current time and swapped in at its index, so the other images of its group attend to it
while they are generated; the reference itself is returned unchanged at its index.

Example:
    >>> pipe = GroupDiffusionPipeline.from_pretrained("pipelines/weights/gdt-tiny")
    >>> out = pipe(["a red circle at the top left", "a circle at the bottom right"], group_size=2,
    ...            reference_images={0: red_circle}, generator=torch.Generator().manual_seed(0))
    >>> out.images.shape  # (2, 3, 32, 32)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PixArtTransformer2DModel
from safetensors.torch import load_file, save_file

from pipelines.gdt.attention import (
    SameImageBias,
    check_group_size,
    install_group_attention,
    self_attention_layers,
)
from tokenizers_media.text.encoders import TextEmbedding, TextEncoder, build_text_encoder

MODEL_CLASS = "GroupDiffusionPipeline"
TEXT_WEIGHTS = "text_encoder.safetensors"
BIAS_WEIGHTS = "group_attention.safetensors"

Progress = Callable[[float, str], None]
"""(fraction done, message); the same shape as ``pipelines.base.ProgressCallback``."""


@dataclass(frozen=True)
class GroupDiffusionConfig:
    """Pipeline-level settings (``config.json``); the components carry their own configs."""

    image_size: int = 32
    group_size: int = 4
    """The group size the model was trained with (the default of ``__call__``)."""
    text_encoder: str = "minilm"
    max_tokens: int = 32
    num_inference_steps: int = 25
    guidance_scale: float = 3.0
    same_image_bias: bool = False
    """Group attention with a learned same-image logit bias (``pipelines.gdt.attention.SameImageBias``)."""


@dataclass
class GroupDiffusionOutput:
    images: torch.Tensor
    """(B, 3, S, S) in [0, 1], in the order of the prompts."""


class GroupDiffusionPipeline:
    def __init__(self, transformer: PixArtTransformer2DModel, vae: AutoencoderKL, scheduler: DDIMScheduler,
                 text_encoder: TextEncoder, config: GroupDiffusionConfig) -> None:
        if transformer.config.caption_channels != text_encoder.dim:
            raise ValueError(f"transformer takes {transformer.config.caption_channels}-d captions but the "
                             f"{config.text_encoder} encoder gives {text_encoder.dim}-d ones")
        self.transformer, self.vae, self.scheduler, self.text_encoder = transformer, vae, scheduler, text_encoder
        self.config = config
        self.group_bias = SameImageBias(len(self_attention_layers(transformer)),
                                        transformer.config.num_attention_heads) if config.same_image_bias else None
        install_group_attention(self.transformer, config.group_size, self.group_bias)

    # ---- persistence ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> GroupDiffusionPipeline:
        directory = Path(directory)
        fields = json.loads((directory / "config.json").read_text())
        if fields.pop("model_class", None) != MODEL_CLASS:
            raise ValueError(f"{directory} is not a {MODEL_CLASS} folder")
        config = GroupDiffusionConfig(**fields)
        transformer = PixArtTransformer2DModel.from_pretrained(directory / "transformer")
        text_encoder = build_text_encoder(config.text_encoder, transformer.config.caption_channels, config.max_tokens)
        if (directory / TEXT_WEIGHTS).is_file():
            text_encoder.load_state_dict(load_file(str(directory / TEXT_WEIGHTS)))
        vae = AutoencoderKL.from_pretrained(directory / "vae")
        scheduler = DDIMScheduler.from_pretrained(directory / "scheduler")
        pipe = cls(transformer, vae, scheduler, text_encoder, config)
        if pipe.group_bias is not None:
            pipe.group_bias.load_state_dict(load_file(str(directory / BIAS_WEIGHTS)))
        return pipe.to(device)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(directory / "transformer")
        self.vae.save_pretrained(directory / "vae")
        self.scheduler.save_pretrained(directory / "scheduler")
        trained = {k: v for k, v in self.text_encoder.state_dict().items() if self.config.text_encoder != "minilm"}
        if trained:  # the MiniLM weights come from its package, never from the model folder
            save_file({k: v.contiguous() for k, v in trained.items()}, str(directory / TEXT_WEIGHTS))
        if self.group_bias is not None:
            save_file({k: v.detach().contiguous() for k, v in self.group_bias.state_dict().items()},
                      str(directory / BIAS_WEIGHTS))
        payload = {"model_class": MODEL_CLASS, **asdict(self.config)}
        (directory / "config.json").write_text(json.dumps(payload, indent=2) + "\n")

    def to(self, device: str | torch.device) -> GroupDiffusionPipeline:
        for module in (self.transformer, self.vae, self.text_encoder, self.group_bias):
            if module is not None:
                module.to(device).eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # ---- text and latents -------------------------------------------------------------------------------

    def encode_prompts(self, prompts: Sequence[str]) -> TextEmbedding:
        """(B, L, D) caption states and mask; an empty prompt is the null caption of guidance."""
        return self.text_encoder(list(prompts))

    @staticmethod
    def null_embedding(cond: TextEmbedding) -> TextEmbedding:
        """The unconditional caption: one all-zero token (trained by caption dropout)."""
        mask = torch.zeros_like(cond.mask)
        mask[:, 0] = True
        return TextEmbedding(torch.zeros_like(cond.tokens), mask)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> scaled latents (B, 4, h, w) (the posterior mode)."""
        return self.vae.encode(images * 2 - 1).latent_dist.mode() * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(latents / self.vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        """The transformer's epsilon for a batch of whole groups (t: one step for all, or (B,))."""
        timestep = t.expand(len(latents)) if t.ndim == 0 else t
        return self.transformer(latents, encoder_hidden_states=text.tokens, timestep=timestep,
                                encoder_attention_mask=text.mask.long(),
                                added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample

    # ---- generation ---------------------------------------------------------------------------------------

    def check_inputs(self, prompts: Sequence[str], reference_images: Mapping[int, torch.Tensor], group_size: int,
                     num_inference_steps: int, guidance_scale: float) -> None:
        check_group_size(group_size)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings, one per image")
        if len(prompts) % group_size:
            raise ValueError(f"{len(prompts)} prompts do not make whole groups of group_size={group_size}")
        size = self.config.image_size
        for index, image in reference_images.items():
            if not isinstance(index, int) or not 0 <= index < len(prompts):
                raise ValueError(f"reference index {index!r} is outside the {len(prompts)} images")
            if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, size, size):
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"reference {index} must be a (3, {size}, {size}) tensor in [0, 1], got {shape}")
        if len(reference_images) == len(prompts):
            raise ValueError("every image is a reference: leave at least one image to generate")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an int >= 1, got {num_inference_steps!r}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale}")

    @torch.inference_mode()
    def __call__(self, prompts: Sequence[str], reference_images: Mapping[int, torch.Tensor] | None = None,
                 group_size: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None,
                 callback: Progress | None = None) -> GroupDiffusionOutput:
        """Generate ``len(prompts)`` images in groups of ``group_size`` consecutive prompts.

        Args:
            prompts: one caption per image; images ``[k*G, (k+1)*G)`` form group k.
            reference_images: index -> (3, S, S) image in [0, 1] to keep and condition on.
            generator: a CPU ``torch.Generator`` for the initial and re-noising noise (reproducible runs).
            callback: called after every step with (fraction done, message); may raise to cancel.
        """
        references = dict(reference_images or {})
        group_size = self.config.group_size if group_size is None else group_size
        steps = self.config.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance = self.config.guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(prompts, references, group_size, steps, guidance)
        install_group_attention(self.transformer, group_size)
        device = self.device

        cond = self.encode_prompts(prompts)
        guided = guidance > 1.0
        if guided:  # [null half; caption half]: both halves are whole groups
            null = self.null_embedding(cond)
            text = TextEmbedding(torch.cat([null.tokens, cond.tokens]), torch.cat([null.mask, cond.mask]))
        else:
            text = cond
        side = self.config.image_size // 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (len(prompts), self.vae.config.latent_channels, side, side)
        latents = torch.randn(shape, generator=generator).to(device)
        index = torch.tensor(sorted(references), dtype=torch.long, device=device)
        ref_latents = self.encode_images(torch.stack([references[i] for i in sorted(references)]).to(device)
                                         ) if references else None

        self.scheduler.set_timesteps(steps, device=device)
        for i, t in enumerate(self.scheduler.timesteps):
            if ref_latents is not None:  # SDEdit: the references, re-noised to time t, replace their slots
                noise = torch.randn(ref_latents.shape, generator=generator).to(device)
                latents[index] = self.scheduler.add_noise(ref_latents, noise, t.reshape(1))
            model_in = torch.cat([latents, latents]) if guided else latents
            eps = self.predict_noise(model_in, t, text)
            if guided:
                eps_null, eps_cond = eps.chunk(2)
                eps = eps_null + guidance * (eps_cond - eps_null)
            latents = self.scheduler.step(eps, t, latents, generator=generator).prev_sample
            if callback is not None:
                callback((i + 1) / steps, f"step {i + 1}/{steps}")
        images = self.decode_latents(latents)
        if references:
            images[index] = torch.stack([references[i] for i in sorted(references)]).to(images)
        return GroupDiffusionOutput(images.cpu())
