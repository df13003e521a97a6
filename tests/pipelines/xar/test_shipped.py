"""The shipped ``xar-tiny`` (pipelines/weights) loads through the zoo and serves ``image.generate``."""

from __future__ import annotations

import pytest
import torch

from pipelines.base import Request
from pipelines.registry import get_pipeline_class
from pipelines.zoo import WEIGHTS_DIR, resolve_model

SHIPPED = WEIGHTS_DIR / "xar-tiny"


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="xar-tiny is not shipped in this checkout")
def test_shipped_xar_tiny_generates_a_named_class():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = resolve_model("xar-tiny")
        pipeline = get_pipeline_class("image.generate", ref.model_class).load(ref.path)
        params = pipeline.params_model.model_validate({"class": "red circle", "num_inference_steps": 2})
        (result,) = pipeline.run([Request(inputs={}, params=params)])
    finally:
        torch.set_num_threads(threads)
    pixels = result["image_000"].pixels
    assert pixels.shape == (3, 64, 64) and torch.isfinite(pixels).all()
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 15 * 2**20


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="xar-tiny is not shipped in this checkout")
def test_shipped_xar_tiny_draws_the_requested_class_above_chance():
    """The card's claim in small: the judge names the requested class well above chance (1/40), and the VAE keeps
    the class (a 300-step VAE once lost colour and held every generator at chance). Measured: 0.25 and 0.80."""
    from diffusers import AutoencoderKL

    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.xar.evaluate import evaluate_xar
    from pipelines.xar.model import XAR
    from pipelines.xar.pipeline import XARPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = XARPipeline(XAR.from_pretrained(SHIPPED), AutoencoderKL.from_pretrained(SHIPPED / "vae").eval())
        judge = ShapesClassifier.from_pretrained(resolve_model("shapes-classifier").path)
        report = evaluate_xar(pipe, judge, images_per_class=2, num_inference_steps=10)
    finally:
        torch.set_num_threads(threads)
    assert report.num_images == 80
    assert report.reconstruction_accuracy > 0.6
    assert report.accuracy > 3 / 40
