"""The image.generate job kind on a Stable Diffusion folder (a tiny random one saved here)."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.base import InputError, Request
from pipelines.registry import JOB_KINDS, get_pipeline_class
from tests.pipelines.tome.test_pipeline import tiny_sd_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sd-tiny")
    tiny_sd_pipeline().save_pretrained(directory)
    tome = {"tome_control_steps": [1, 1], "attention_refinement_steps": 1, "token_refinement_steps": 1}
    (directory / "config.json").write_text(json.dumps({"model_class": "StableDiffusionPipeline", "tome": tome}))
    return directory


def test_generate_with_and_without_token_merge(model_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert JOB_KINDS["image.generate"].family == "generate"
        cls = get_pipeline_class("image.generate", "StableDiffusionPipeline")
        pipeline = cls.load(model_dir)
        params = [cls.params_model(prompt="a red circle and a blue square", token_merge=merge,
                                   num_inference_steps=2, seed=1) for merge in (False, True, ["blue square"])]
        seen = []
        results = pipeline.run([Request({}, p) for p in params], progress=lambda f, m: seen.append(f))
        images = [r["image"].pixels for r in results]
        assert all(i.shape == (3, 16, 16) and 0 <= i.min() and i.max() <= 1 for i in images)
        assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])
        assert seen[-1] == pytest.approx(1.0) and len(seen) == 6
        with pytest.raises(InputError, match="not a phrase"):
            pipeline.run([Request({}, cls.params_model(prompt="a red circle", token_merge=["green circle"],
                                                       num_inference_steps=1))])
    finally:
        torch.set_num_threads(before)


def test_params_are_checked():
    cls = get_pipeline_class("image.generate", "StableDiffusionPipeline")
    with pytest.raises(ValueError):
        cls.params_model(prompt="", num_inference_steps=2)
    with pytest.raises(ValueError):
        cls.params_model(prompt="a cat", steps=2)
    assert cls.params_model(prompt="a cat", token_merge=[[[3], [2]]]).token_merge == [([3], [2])]


def test_shipped_sd_shapes_tiny_serves_image_generate():
    from pipelines.zoo import resolve_model

    ref = resolve_model("sd-shapes-tiny")
    assert ref.model_class == "StableDiffusionPipeline"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cls = get_pipeline_class("image.generate", ref.model_class)
        params = cls.params_model(prompt="a red circle and a blue square", num_inference_steps=2)
        (result,) = cls.load(ref.path).run([Request({}, params)])
    finally:
        torch.set_num_threads(before)
    assert result["image"].pixels.shape == (3, 32, 32)
