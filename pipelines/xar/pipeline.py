"""Class-conditional image generation with xAR: entity-by-entity flow sampling with a KV cache.

For each entity in AR order: start from Gaussian noise, integrate the velocity from t = 1 to 0 (``sde`` or
``ode``, see ``sampler.py``) while attending to the cached keys/values of the entities already generated,
then feed the finished entity back clean (t = 0) into the cache (xAR Sec. 3.3). Classifier-free guidance
runs the conditional and null-class halves in one batch; its scale ramps linearly across AR steps.

Example:
    >>> pipe = XARPipeline(XAR.from_preset("tiny"))
    >>> out = pipe(class_labels=[3, 7], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    >>> out.latents.shape
    torch.Size([2, 16, 8, 8])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL

from pipelines.xar.model import XAR
from pipelines.xar.sampler import SAMPLERS, flow_step, guidance_ramp, sampling_times

StepCallback = Callable[[int, int], None]
"""Called after every model evaluation with (steps done, total steps); may raise to stop."""


@dataclass
class XAROutput:
    """``latents`` ``(B, C, G, G)`` (model space, before the VAE scale); ``images`` ``(B, 3, H, W)`` in [0, 1]
    when a VAE is attached (else None)."""

    latents: torch.Tensor
    images: torch.Tensor | None


class XARPipeline:
    """An ``XAR`` velocity network plus an optional diffusers ``AutoencoderKL`` decoding its latents.

    Args:
        model: the velocity network.
        vae: decodes ``latents / vae.config.scaling_factor`` to images in [-1, 1]; None -> latents only.
        class_names: names of the class ids (``get_label_ids``); default: the model config's.
    """

    def __init__(self, model: XAR, vae: AutoencoderKL | None = None, class_names: Sequence[str] = ()) -> None:
        self.model, self.vae = model.eval(), vae
        self.class_names = tuple(class_names) or model.config.class_names

    @property
    def device(self) -> torch.device:
        return self.model.mask.device

    def get_label_ids(self, labels: Sequence[str | int]) -> list[int]:
        """Class names or ids -> ids (like diffusers' ``DiTPipeline.get_label_ids``)."""
        ids = []
        for label in labels:
            if isinstance(label, str) and not label.isdigit():
                if label not in self.class_names:
                    raise ValueError(f"unknown class {label!r}; known: {list(self.class_names)}")
                ids.append(self.class_names.index(label))
            else:
                ids.append(int(label))
        return ids

    def check_inputs(self, class_labels: Sequence[int], num_inference_steps: int, guidance_scale: float,
                     sampler: str) -> None:
        n = self.model.config.num_classes
        bad = [c for c in class_labels if not 0 <= c < n]
        if not class_labels or bad:
            raise ValueError(f"class_labels must be a non-empty list of ids in [0, {n}), got {list(class_labels)}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 disables guidance), got {guidance_scale}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; allowed: {SAMPLERS}")

    @torch.inference_mode()
    def __call__(
        self,
        class_labels: Sequence[int | str],
        num_inference_steps: int = 40,
        guidance_scale: float = 1.0,
        sampler: str = "sde",
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        output_type: str = "pt",
        use_kv_cache: bool = True,
    ) -> XAROutput:
        """Generate one image per label.

        Args:
            class_labels: ids or names, one per image.
            num_inference_steps: model evaluations per entity.
            guidance_scale: final CFG scale (1 = off); ramps from 1 at the first entity.
            sampler: ``sde`` (Euler-Maruyama, the official sampler) or ``ode`` (Euler).
            generator: CPU generator for the noise (seeds).
            callback: progress hook ``(done, total)``.
            output_type: ``pt`` (decode with the VAE when present) or ``latent``.
            use_kv_cache: False recomputes the whole prefix with the teacher-forced pass at every step (the
                naive reference; same result, slower).
        """
        # 1. Check inputs
        labels = self.get_label_ids(class_labels)
        self.check_inputs(labels, num_inference_steps, guidance_scale, sampler)
        model, layout = self.model, self.model.layout
        b, c = len(labels), model.config.latent_channels
        y = torch.tensor(labels, device=self.device)
        guided = guidance_scale > 1.0
        if guided:  # conditional and null-class halves share one batch (and one KV cache)
            y = torch.cat([y, torch.full_like(y, model.null_class)])
        times = sampling_times(num_inference_steps, sampler).tolist()
        total, done = layout.num_entities * num_inference_steps, 0
        caches = model.new_caches()
        entities: list[torch.Tensor] = []
        # 2. Autoregressive loop over entities
        for e, size in enumerate(layout.sizes):
            if e > 0 and use_kv_cache:  # feed the previous entity back clean (t = 0) into the cache
                prev = entities[-1].repeat(2 if guided else 1, 1, 1)
                zero = torch.zeros(len(y), device=self.device)
                model.entity_velocity(prev, zero, y, e - 1, caches, store=True)
            scale = guidance_ramp(e, layout.num_entities, guidance_scale)
            x = torch.randn(b, size, c, generator=generator).to(self.device)
            # 3. Flow sampling of this entity
            for t, t_next in zip(times[:-1], times[1:], strict=True):
                x_in = torch.cat([x, x]) if guided else x
                t_in = torch.full((len(y),), t, device=self.device)
                if use_kv_cache:
                    v = model.entity_velocity(x_in, t_in, y, e, caches)
                else:
                    v = self._prefix_velocity(entities, x_in, t, y, e)
                if guided:
                    v_cond, v_null = v.chunk(2)
                    v = v_null + scale * (v_cond - v_null)
                x = flow_step(x, v, t, t_next, sampler, generator)
                done += 1
                if callback is not None:
                    callback(done, total)
            entities.append(x)
        # 4. Tokens -> latent grid -> images
        latents = layout.to_latents(torch.cat(entities, dim=1))
        images = None
        if output_type == "pt" and self.vae is not None:
            decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
            images = ((decoded + 1) / 2).clamp(0, 1).float().cpu()
        return XAROutput(latents=latents.cpu(), images=images)

    def _prefix_velocity(self, entities: list[torch.Tensor], x: torch.Tensor, t: float, y: torch.Tensor,
                         entity: int) -> torch.Tensor:
        """Velocity of ``entity`` from a full teacher-forced pass: clean prefix (t = 0), zeros after it."""
        layout, repeat = self.model.layout, len(y) // entities[0].shape[0] if entities else 1
        prefix = [p.repeat(repeat, 1, 1) for p in entities]
        start = layout.starts[entity]
        tail = x.new_zeros(len(y), layout.num_tokens - start - x.shape[1], x.shape[2])
        times = torch.zeros(len(y), layout.num_entities, device=x.device)
        times[:, entity] = t
        v = self.model.velocity(torch.cat([*prefix, x, tail], dim=1), times, y)
        return v[:, start : start + x.shape[1]]
