"""``image.generate`` on Stable Diffusion folders (``sd-shapes-tiny``): prompt -> one PNG, optionally with ToMe.

``token_merge`` is ``true`` (groups found by ``pipelines.tome.parser``), ``false`` (the plain diffusers
pipeline) or explicit groups: phrases of the prompt (``["red circle", "blue square"]``) or
``[noun_indices, attribute_indices]`` token positions. ToMe settings a model folder recommends live under
``"tome"`` in its ``config.json`` (e.g. which cross-attention layers the entropy loss reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Self

import torch
from pydantic import Field, StringConstraints

from pipelines.base import InputError, Params, Pipeline, ProgressCallback, Request, Result, Seed, item_progress
from pipelines.media import Image
from pipelines.tome.pipeline import ToMeStableDiffusionPipeline

MAX_PROMPT_CHARS = 500
MAX_TOKEN_INDEX = 75
"""CLIP reads 77 positions: the start token at 0, the end token at the last, word pieces in 1..75."""

TokenIndices = Annotated[list[Annotated[int, Field(ge=1, le=MAX_TOKEN_INDEX)]], Field(max_length=MAX_TOKEN_INDEX)]
TokenGroup = (Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
              | tuple[TokenIndices, TokenIndices])


class GenerateParams(Params):
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="text prompt")
    token_merge: bool | Annotated[list[TokenGroup], Field(max_length=MAX_TOKEN_INDEX)] = Field(
        True, description="ToMe: true (parse the prompt), false (plain) or explicit token groups: phrases of the "
        f"prompt or (noun, attribute) word-piece positions in 1..{MAX_TOKEN_INDEX} (CLIP's window); at most one "
        "group per position")
    num_inference_steps: int = Field(25, ge=1, le=200, description="DDIM steps")
    guidance_scale: float = Field(7.5, ge=1.0, le=30.0, description="classifier-free guidance scale (1: off)")
    seed: Seed = Field(0, description="seed of the initial noise")


class GenerateSDPipeline(Pipeline):
    kind = "image.generate"
    params_model = GenerateParams
    inputs: dict[str, str] = {}

    def __init__(self, pipe: ToMeStableDiffusionPipeline, tome_defaults: dict) -> None:
        self.pipe, self.tome_defaults = pipe, tome_defaults
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        pipe = ToMeStableDiffusionPipeline.from_pretrained(model_dir).to(device)
        return cls(pipe, json.loads((model_dir / "config.json").read_text()).get("tome", {}))

    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        results = []
        for n, request in enumerate(requests):
            p: GenerateParams = request.params
            steps = p.num_inference_steps

            def on_step(pipe, i: int, t, tensors, steps: int = steps,
                        step: ProgressCallback = item_progress(progress, n, len(requests))) -> dict:
                step((i + 1) / steps, f"step {i + 1}/{steps}")
                return {}

            try:
                out = self.pipe(p.prompt, token_merge=p.token_merge, num_inference_steps=steps,
                                guidance_scale=p.guidance_scale, generator=torch.Generator().manual_seed(p.seed),
                                output_type="pt", callback_on_step_end=on_step, **self.tome_defaults)
            except ValueError as err:  # an explicit group that is not in the prompt, and the like
                raise InputError(f"image.generate: {err}") from err
            results.append({"image": Image(out.images[0].float().clamp(0, 1).cpu())})
        return results
