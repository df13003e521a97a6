"""``image.generate_group`` on GDT: G captions + one reference image -> G PNGs generated together.

The job framework takes a fixed set of input files per kind, so a job carries exactly one reference image
(``reference``), kept at ``reference_index`` of the group; the other images are generated with group
attention so that they stay consistent with it (``pipelines.gdt``). Outputs are ``image_000`` ... in prompt
order; the reference slot holds the reference resized to the model's side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Self

import torch
from pydantic import Field, StringConstraints, model_validator

from pipelines.base import InputError, Params, Pipeline, ProgressCallback, Request, Result, Seed, item_progress
from pipelines.gdt.pipeline import GroupDiffusionPipeline
from pipelines.image_resize import to_model_size
from pipelines.media import Image

MAX_IMAGES = 16
MAX_PROMPT_CHARS = 500


class GenerateGroupParams(Params):
    prompts: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]] = Field(
        ..., min_length=2, max_length=MAX_IMAGES,
        description=f"one caption per image; at most {MAX_IMAGES} images, generated together in memory")
    reference_index: int = Field(0, ge=0, le=MAX_IMAGES - 1, description="slot of the reference image in the group")
    group_size: int | None = Field(None, ge=1, le=MAX_IMAGES, description="images per group; default: all")
    num_inference_steps: int = Field(25, ge=1, le=200, description="DDIM steps")
    guidance_scale: float = Field(3.0, ge=1.0, le=20.0, description="classifier-free guidance scale (1: off)")
    seed: Seed = Field(0, description="seed of the initial and re-noising noise")
    renamed: ClassVar[dict[str, str]] = {"steps": "num_inference_steps", "guidance": "guidance_scale"}

    @model_validator(mode="after")
    def _check_layout(self) -> Self:
        if any(not p.strip() for p in self.prompts):
            raise ValueError("every prompt must be more than blanks")
        if self.reference_index >= len(self.prompts):
            raise ValueError(f"reference_index {self.reference_index} is outside the {len(self.prompts)} prompts")
        if self.group_size is not None and len(self.prompts) % self.group_size:
            raise ValueError(f"{len(self.prompts)} prompts do not make whole groups of {self.group_size}")
        return self


class GenerateGroupPipeline(Pipeline):
    kind = "image.generate_group"
    params_model = GenerateGroupParams
    inputs = {"reference": "image"}

    def __init__(self, pipe: GroupDiffusionPipeline) -> None:
        self.pipe = pipe

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        return cls(GroupDiffusionPipeline.from_pretrained(model_dir, device))

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        image = request.inputs["reference"]
        if not isinstance(image, Image) or image.pixels.ndim != 3 or image.pixels.shape[0] != 3:
            raise InputError("image.generate_group needs an RGB reference image (3, H, W)")

    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        results = []
        for n, request in enumerate(requests):
            p = request.params
            reference = to_model_size(request.inputs["reference"].pixels, self.pipe.config.image_size)
            step = item_progress(progress, n, len(requests))

            try:
                out = self.pipe(p.prompts, reference_images={p.reference_index: reference},
                                group_size=p.group_size or len(p.prompts), num_inference_steps=p.num_inference_steps,
                                guidance_scale=p.guidance_scale, generator=torch.Generator().manual_seed(p.seed),
                                callback=step)
            except ValueError as err:  # caption too long for the text encoder, and the like
                raise InputError(f"image.generate_group: {err}") from err
            results.append({f"image_{i:03d}": Image(img) for i, img in enumerate(out.images)})
        return results
