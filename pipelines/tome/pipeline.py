"""ToMe for diffusers Stable Diffusion and SDXL pipelines (training-free semantic binding).

Hu et al., "Token Merging for Training-Free Semantic Binding in Text-to-Image Synthesis", NeurIPS 2024,
arXiv 2411.07132. On top of an unchanged diffusers pipeline:

1. token merging (section 3.2): each object's noun and attribute tokens become one composite token
   (``pipelines.tome.merge``), groups from ``pipelines.tome.parser`` or given explicitly;
2. end-token substitution (3.3): at step ``eot_replace_step`` the end/padding tokens are replaced by those
   of the prompt without attributes;
3. semantic binding loss (3.3): in the first ``tome_control_steps[0]`` steps, each composite token is
   moved (``token_refinement_steps`` gradient steps of size ``token_step_size``) so that the noise predicted
   from the composite token alone matches the one predicted from its full phrase ("a red circle");
4. entropy loss (3.3): in the first ``tome_control_steps[1]`` steps, the entropy of each composite token's
   cross-attention map (``attention_layers``, softmax temperature 0.5) is minimised by up to
   ``attention_refinement_steps`` gradient steps on the latents and the composite tokens, with a step size
   decaying linearly from ``scale_factor * scale_range[0]`` to ``scale_factor * scale_range[1]``.

The diffusers denoising loop itself is reused: ToMe prepares the embeddings and first latents, then acts
between steps through ``callback_on_step_end``. With ``token_merge=False`` the call is exactly the plain
pipeline's. Works with any SD-family UNet that has text cross-attention, from local weights::

    pipe = ToMeStableDiffusionPipeline.from_pretrained("pipelines/weights/sd-shapes-tiny")
    image = pipe("a red circle and a blue square", generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from pipelines.tome.attention import SDXL_PAPER_LAYERS, attention_entropy, default_attention_layers, recording
from pipelines.tome.merge import composite_positions, merge_tokens, single_token_prompts, substitute_end_tokens
from pipelines.tome.parser import ExplicitGroup, ParsedPrompt, parse_prompt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToMeConfig:
    """Every ToMe knob, with the paper's defaults (its SDXL demo configuration)."""

    noun_weight: float = 1.1
    attribute_weight: float = 1.2
    eot_replace_step: int = 0
    """Denoising step at which end tokens are substituted; < 0 or >= the step count: never."""
    tome_control_steps: tuple[int, int] = (7, 7)
    """(steps with the semantic binding loss, steps with the entropy loss), counted from the first step."""
    token_refinement_steps: int = 3
    """Gradient steps of the semantic binding loss per controlled denoising step."""
    attention_refinement_steps: int = 6
    """At most this many entropy-loss gradient steps per controlled denoising step."""
    token_step_size: float = 1e4
    scale_factor: float = 3.0
    scale_range: tuple[float, float] = (1.0, 0.0)
    """The entropy step size decays linearly from scale_factor * [0] to scale_factor * [1] over the steps."""
    temperature: float = 0.5
    entropy_weight: float = 2.0
    entropy_threshold: float | None = None
    """Stop the entropy iterations of a step once the loss is below this (None: always run them all)."""
    attention_layers: tuple[str, ...] | None = None
    """Cross-attention layer names (``...attn2``); None: the paper's SDXL layers where they exist, else the
    first decoder block's cross-attention layers."""
    include_prepositional: bool = False
    """Parser option: also group phrases after prepositions whose noun is a place word."""

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ToMeConfig:
        """Pop this config's fields out of a ``__call__``'s kwargs."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        for key in ("tome_control_steps", "scale_range", "attention_layers"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class _ToMeState:
    """What the between-steps hook needs: prepared embeddings and the run's settings."""

    config: ToMeConfig
    parsed: ParsedPrompt
    positions: list[int]
    phrase_embeds: torch.Tensor
    """(G, L, D) encoder states of each group's phrase."""
    phrase_pooled: torch.Tensor | None
    cleaned_embeds: torch.Tensor
    eot_index: int
    cleaned_eot_index: int
    step_sizes: torch.Tensor
    layers: list[str]
    timesteps: torch.Tensor
    batch: int
    user_callback: Any = None
    store: Any = None


class ToMeMixin:
    """The ToMe algorithm over a diffusers SD-family pipeline; subclasses supply encoding and UNet extras."""

    preferred_attention_layers: tuple[str, ...] = ()

    # ---- hooks the subclasses provide -----------------------------------------------------------------------

    def _tome_encode(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Texts -> encoder states (N, L, D) and pooled embeddings (N, P) or None."""
        raise NotImplementedError

    def _tome_added_cond(self, pooled: torch.Tensor | None, kwargs: dict, height: int, width: int
                         ) -> dict | None:
        """UNet ``added_cond_kwargs`` for a conditional batch with these pooled embeddings (None for SD)."""
        raise NotImplementedError

    def _tome_call_embeds(self, cond: torch.Tensor, pooled: torch.Tensor | None, negative: torch.Tensor,
                          negative_pooled: torch.Tensor | None) -> dict:
        """The embedding keywords of the parent ``__call__``."""
        raise NotImplementedError

    def _tome_negative(self, negative_prompt: str | None, device: torch.device
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unconditional embeddings as the plain pipeline makes them (the empty prompt by default)."""
        return self._tome_encode([negative_prompt or ""], device)

    # ---- entry -----------------------------------------------------------------------------------------------

    def _tome_call(self, parent_call, prompt, kwargs: dict[str, Any]):
        token_merge: bool | Sequence[ExplicitGroup] = kwargs.pop("token_merge", True)
        config = ToMeConfig.from_kwargs(kwargs)
        if token_merge is False:
            return parent_call(self, prompt=prompt, **kwargs)
        if not isinstance(prompt, str):
            raise ValueError(f"ToMe runs one prompt string per call, got {type(prompt).__name__}")
        groups = None if token_merge is True else list(token_merge)
        parsed = parse_prompt(prompt, self.tokenizer, groups, config.include_prepositional)
        if not parsed.groups:
            logger.info("no token groups in %r: running the plain pipeline", prompt)
            return parent_call(self, prompt=prompt, **kwargs)
        return self._tome_run(parent_call, parsed, config, kwargs)

    @torch.no_grad()
    def _tome_run(self, parent_call, parsed: ParsedPrompt, config: ToMeConfig, kwargs: dict[str, Any]):
        device = self._execution_device
        # 1. Sizes, guidance and batch, as the plain pipeline would choose them.
        height = kwargs.get("height") or self.unet.config.sample_size * self.vae_scale_factor
        width = kwargs.get("width") or self.unet.config.sample_size * self.vae_scale_factor
        batch = kwargs.pop("num_images_per_prompt", None) or 1
        steps = kwargs.get("num_inference_steps", 50)
        # 2. Encode the prompt, the groups' phrases, the cleaned prompt and the negative prompt.
        texts = [parsed.prompt, parsed.cleaned_prompt] + [g.phrase for g in parsed.groups]
        embeds, pooled = self._tome_encode(texts, device)
        cond = merge_tokens(embeds[:1], parsed.groups, config.noun_weight, config.attribute_weight)
        negative, negative_pooled = self._tome_negative(kwargs.pop("negative_prompt", None), device)
        length = embeds.shape[1]
        state = _ToMeState(
            config=config, parsed=parsed, positions=composite_positions(parsed.groups),
            phrase_embeds=embeds[2:], phrase_pooled=None if pooled is None else pooled[2:],
            cleaned_embeds=embeds[1:2], eot_index=min(parsed.num_tokens, length) - 1,
            cleaned_eot_index=min(len(self.tokenizer(parsed.cleaned_prompt).input_ids), length) - 1,
            step_sizes=torch.empty(0), layers=[], timesteps=torch.empty(0), batch=batch)
        if config.eot_replace_step == 0:
            cond = substitute_end_tokens(cond, state.eot_index, state.cleaned_embeds, state.cleaned_eot_index)
        cond = cond.expand(batch, -1, -1).clone()
        cond_pooled = None if pooled is None else pooled[:1].expand(batch, -1)
        # 3. Timesteps and first latents (the same random draw as the plain pipeline).
        self.scheduler.set_timesteps(steps, device=device)
        state.timesteps = self.scheduler.timesteps
        start, stop = config.scale_range
        state.step_sizes = config.scale_factor * torch.linspace(start, stop, max(len(state.timesteps), 1))
        latents = self.prepare_latents(batch, self.unet.config.in_channels, height, width, cond.dtype, device,
                                       kwargs.get("generator"), kwargs.pop("latents", None))
        state.layers = list(config.attention_layers or default_attention_layers(
            self.unet, self.preferred_attention_layers))
        state.user_callback = kwargs.pop("callback_on_step_end", None)
        user_inputs = kwargs.pop("callback_on_step_end_tensor_inputs", ["latents"])
        added = self._tome_added_cond(cond_pooled, kwargs, height, width)
        with recording(self.unet, state.layers) as store:
            state.store = store
            # 4. ToMe updates before the first step, then between steps inside the diffusers loop.
            latents, cond = self._tome_refine(state, 0, latents, cond, added)
            sigma = self.scheduler.init_noise_sigma
            return parent_call(
                self, prompt=None, num_images_per_prompt=1, latents=latents / sigma,
                **self._tome_call_embeds(cond, cond_pooled, negative.expand(batch, -1, -1),
                                         None if negative_pooled is None else negative_pooled.expand(batch, -1)),
                callback_on_step_end=lambda pipe, i, t, tensors: self._tome_between_steps(state, i, tensors),
                callback_on_step_end_tensor_inputs=sorted(set(user_inputs) | set(self._tome_tensor_inputs())),
                **kwargs)

    def _tome_default_guidance(self) -> float:
        return 7.5

    def _tome_tensor_inputs(self) -> list[str]:
        return ["latents", "prompt_embeds"]

    # ---- between steps ------------------------------------------------------------------------------------------

    def _tome_between_steps(self, state: _ToMeState, step: int, tensors: dict[str, torch.Tensor]) -> dict:
        """Called by diffusers after step ``step``: prepare step ``step + 1``."""
        if state.user_callback is not None:
            tensors.update(state.user_callback(self, step, state.timesteps[step], tensors) or {})
        nxt = step + 1
        if nxt >= len(state.timesteps):
            return tensors
        embeds = tensors["prompt_embeds"]
        guided = embeds.shape[0] == 2 * state.batch
        cond = embeds[state.batch :] if guided else embeds
        if nxt == state.config.eot_replace_step:
            cond = substitute_end_tokens(cond, state.eot_index, state.cleaned_embeds, state.cleaned_eot_index)
        added = self._tome_callback_added_cond(tensors, state.batch)
        latents, cond = self._tome_refine(state, nxt, tensors["latents"], cond, added)
        tensors["latents"] = latents
        tensors["prompt_embeds"] = torch.cat([embeds[: state.batch], cond]) if guided else cond
        return tensors

    def _tome_callback_added_cond(self, tensors: dict[str, torch.Tensor], batch: int) -> dict | None:
        return None

    # ---- the two losses --------------------------------------------------------------------------------------------

    def _tome_refine(self, state: _ToMeState, step: int, latents: torch.Tensor, cond: torch.Tensor,
                     added: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic binding then entropy updates for denoising step ``step`` (no-op outside the first steps)."""
        config = state.config
        token_steps, attention_steps = config.tome_control_steps
        if step >= max(token_steps, attention_steps):
            return latents, cond
        t = state.timesteps[step]
        with torch.enable_grad():
            if step < token_steps:
                for _ in range(config.token_refinement_steps):
                    cond = self._semantic_binding_step(state, t, latents, cond, added)
            if step < attention_steps:
                for _ in range(config.attention_refinement_steps):
                    latents, cond, loss = self._entropy_step(state, t, latents, cond, added,
                                                             float(state.step_sizes[step]))
                    if config.entropy_threshold is not None and loss < config.entropy_threshold:
                        break
        return latents.detach(), cond.detach()

    def _unet(self, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, added: dict | None
              ) -> torch.Tensor:
        x = self.scheduler.scale_model_input(latents, t)
        return self.unet(x, t, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False)[0]

    def _semantic_binding_step(self, state: _ToMeState, t: torch.Tensor, latents: torch.Tensor,
                               cond: torch.Tensor, added: dict | None) -> torch.Tensor:
        """MSE between eps(z, composite token alone) and eps(z, full phrase); a gradient step on the tokens."""
        groups, batch = len(state.positions), latents.shape[0]
        tokens = cond[:, state.positions].detach().requires_grad_(True)  # (B, G, D)
        edited = cond.detach().clone()
        edited[:, state.positions] = tokens
        alone = single_token_prompts(edited, state.positions)  # (B * G, L, D)
        repeated = latents.detach().repeat_interleave(groups, 0)
        phrase_added = self._tome_repeat_added(added, state, batch)
        with torch.no_grad():
            target = self._unet(repeated, t, state.phrase_embeds.repeat(batch, 1, 1), phrase_added)
        loss = F.mse_loss(self._unet(repeated, t, alone, phrase_added), target)
        (grad,) = torch.autograd.grad(loss, tokens)
        out = cond.detach().clone()
        out[:, state.positions] = tokens.detach() - state.config.token_step_size * grad
        return out

    def _tome_repeat_added(self, added: dict | None, state: _ToMeState, batch: int) -> dict | None:
        return None

    def _entropy_step(self, state: _ToMeState, t: torch.Tensor, latents: torch.Tensor, cond: torch.Tensor,
                      added: dict | None, step_size: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Entropy of the composite tokens' attention maps; one gradient step on latents and those tokens."""
        latents = latents.detach().requires_grad_(True)
        tokens = cond[:, state.positions].detach().requires_grad_(True)
        edited = cond.detach().clone()
        edited[:, state.positions] = tokens
        state.store.clear()
        state.store.active = True
        try:
            self._unet(latents, t, edited, added)
        finally:
            state.store.active = False
        scores = [state.store.scores[name] for name in state.layers]
        loss = state.config.entropy_weight * attention_entropy(scores, state.positions,
                                                               state.config.temperature).sum()
        grad_latents, grad_tokens = torch.autograd.grad(loss, [latents, tokens])
        state.store.clear()
        out = cond.detach().clone()
        out[:, state.positions] = tokens.detach() - step_size * grad_tokens
        return latents.detach() - step_size * grad_latents, out, loss.item()


class ToMeStableDiffusionPipeline(ToMeMixin, StableDiffusionPipeline):
    """``StableDiffusionPipeline`` with ToMe. ``__call__`` takes the plain arguments plus ``token_merge``
    (True: parse the prompt; a list of groups: explicit; False: the plain pipeline) and the ``ToMeConfig``
    fields as keywords. Build it from a loaded pipeline with ``ToMeStableDiffusionPipeline.from_pipe(pipe)``."""

    def __call__(self, prompt: str | list[str] | None = None, **kwargs):
        return self._tome_call(StableDiffusionPipeline.__call__, prompt, kwargs)

    def _tome_encode(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, None]:
        embeds, _ = self.encode_prompt(texts, device, 1, False)
        return embeds, None

    def _tome_added_cond(self, pooled, kwargs, height, width) -> None:
        return None

    def _tome_call_embeds(self, cond, pooled, negative, negative_pooled) -> dict:
        return {"prompt_embeds": cond, "negative_prompt_embeds": negative}


class ToMeStableDiffusionXLPipeline(ToMeMixin, StableDiffusionXLPipeline):
    """``StableDiffusionXLPipeline`` with ToMe (the paper's base model); same extra arguments as the SD one.
    Supports the default ``original_size`` / ``target_size`` / ``crops_coords_top_left`` conditioning."""

    preferred_attention_layers = SDXL_PAPER_LAYERS

    def __call__(self, prompt: str | list[str] | None = None, **kwargs):
        return self._tome_call(StableDiffusionXLPipeline.__call__, prompt, kwargs)

    def _tome_default_guidance(self) -> float:
        return 5.0

    def _tome_tensor_inputs(self) -> list[str]:
        return ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"]

    def _tome_encode(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, _, pooled, _ = self.encode_prompt(texts, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return embeds, pooled

    def _tome_negative(self, negative_prompt, device) -> tuple[torch.Tensor, torch.Tensor]:
        if negative_prompt is None and self.config.force_zeros_for_empty_prompt:
            embeds, pooled = self._tome_encode([""], device)
            return torch.zeros_like(embeds), torch.zeros_like(pooled)
        return self._tome_encode([negative_prompt or ""], device)

    def _tome_added_cond(self, pooled, kwargs, height, width) -> dict:
        projection = (self.text_encoder_2.config.projection_dim if self.text_encoder_2 is not None
                      else pooled.shape[-1])
        time_ids = self._get_add_time_ids((height, width), (0, 0), (height, width), dtype=pooled.dtype,
                                          text_encoder_projection_dim=projection)
        return {"text_embeds": pooled, "time_ids": time_ids.to(pooled.device).expand(pooled.shape[0], -1)}

    def _tome_callback_added_cond(self, tensors, batch) -> dict:
        text, time_ids = tensors["add_text_embeds"], tensors["add_time_ids"]
        return {"text_embeds": text[-batch:], "time_ids": time_ids[-batch:]}

    def _tome_repeat_added(self, added, state, batch) -> dict:
        groups = len(state.positions)
        return {"text_embeds": state.phrase_pooled.repeat(batch, 1),
                "time_ids": added["time_ids"][:1].expand(batch * groups, -1)}

    def _tome_call_embeds(self, cond, pooled, negative, negative_pooled) -> dict:
        return {"prompt_embeds": cond, "negative_prompt_embeds": negative, "pooled_prompt_embeds": pooled,
                "negative_pooled_prompt_embeds": negative_pooled}
