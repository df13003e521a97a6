"""``image.generate`` on xAR model directories (``xar-tiny``): class id or name -> PNGs.

The model directory holds the ``XAR`` (config.json + model.safetensors) and its ``AutoencoderKL`` in
``vae/``. Each request asks for ``num_images`` samples of one class; results are ``image_000``, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import torch
from diffusers import AutoencoderKL
from pydantic import Field, StringConstraints

from pipelines.base import InputError, Params, Pipeline, ProgressCallback, Request, Result, Seed, item_progress
from pipelines.media import Image
from pipelines.xar.model import XAR
from pipelines.xar.pipeline import XARPipeline

MAX_IMAGES = 16
MAX_CLASS_ID = 999
"""The paper's models are class-conditional on ImageNet's 1000 classes; no xAR has more."""
MAX_CLASS_NAME_CHARS = 200


class GenerateClassParams(Params):
    class_: (Annotated[int, Field(ge=0, le=MAX_CLASS_ID)]
             | Annotated[str, StringConstraints(min_length=1, max_length=MAX_CLASS_NAME_CHARS)]) = Field(
        ..., alias="class", description=f"class id or name (e.g. 'red circle'); ids up to {MAX_CLASS_ID} (ImageNet's "
        "1000 classes; the model's own count is checked before compute)")
    num_images: int = Field(1, ge=1, le=MAX_IMAGES, description="images to generate")
    num_inference_steps: int = Field(25, ge=1, le=200, description="flow steps per entity")
    guidance_scale: float = Field(2.0, ge=1.0, le=20.0, description="final CFG scale (ramped; 1: off)")
    seed: Seed = Field(0, description="seed of the noise")


class GenerateXARPipeline(Pipeline):
    kind = "image.generate"
    params_model = GenerateClassParams
    inputs: dict[str, str] = {}

    def __init__(self, pipe: XARPipeline) -> None:
        self.pipe = pipe

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        if not (model_dir / "vae" / "config.json").is_file():
            raise InputError(f"{model_dir} has no vae/ folder; image.generate needs the xAR latent decoder")
        vae = AutoencoderKL.from_pretrained(model_dir / "vae").to(device).eval()
        return cls(XARPipeline(XAR.from_pretrained(model_dir, device=device), vae))

    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        labels = []
        for request in requests:
            try:
                labels.append(self.pipe.get_label_ids([request.params.class_])[0])
                self.pipe.check_inputs(labels[-1:], request.params.num_inference_steps, 1.0, "sde")
            except ValueError as err:
                raise InputError(f"image.generate: {err}") from err
        results = []
        for n, (request, label) in enumerate(zip(requests, labels, strict=True)):
            p: GenerateClassParams = request.params

            def on_step(done: int, total: int, step: ProgressCallback = item_progress(progress, n, len(requests))
                        ) -> None:
                step(done / total, f"step {done}/{total}")

            out = self.pipe([label] * p.num_images, num_inference_steps=p.num_inference_steps,
                            guidance_scale=p.guidance_scale, generator=torch.Generator().manual_seed(p.seed),
                            callback=on_step)
            results.append({f"image_{i:03d}": Image(img) for i, img in enumerate(out.images)})
        return results
