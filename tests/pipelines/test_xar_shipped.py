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
