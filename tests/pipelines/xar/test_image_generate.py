"""``image.generate`` with an XAR model directory, through the registry (class names, PNG-ready images)."""

from __future__ import annotations

import pydantic
import pytest
import torch

from pipelines.base import InputError, Request
from pipelines.data.shapes import NUM_CLASSES, class_name
from pipelines.media import Image
from pipelines.registry import get_pipeline_class
from pipelines.training.vae import PRESETS as VAE_PRESETS
from pipelines.training.vae import build_vae
from pipelines.xar.model import XAR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("xar-tiny")
    names = tuple(class_name(i) for i in range(NUM_CLASSES))
    XAR.from_preset("tiny", class_names=names).save_pretrained(directory)
    build_vae(VAE_PRESETS["xar"]).save_pretrained(directory / "vae")
    return get_pipeline_class("image.generate", "XAR").load(directory)


def request(pipeline, **params) -> Request:
    return Request(inputs={}, params=pipeline.params_model.model_validate(params))


def test_generates_the_requested_number_of_images(pipeline):
    seen = []
    results = pipeline.run([request(pipeline, **{"class": "blue square", "num_images": 2,
                                                  "num_inference_steps": 2, "seed": 3})],
                           progress=lambda fraction, message: seen.append(fraction))
    assert sorted(results[0]) == ["image_000", "image_001"]
    image = results[0]["image_000"]
    assert isinstance(image, Image) and image.pixels.shape == (3, 64, 64)
    assert seen[-1] == pytest.approx(1.0)


def test_unknown_class_is_an_input_error(pipeline):
    with pytest.raises(InputError, match="purple blob"):
        pipeline.run([request(pipeline, **{"class": "purple blob"})])
    with pytest.raises(InputError, match="40"):
        pipeline.run([request(pipeline, **{"class": 40})])


def test_params_are_validated(pipeline):
    with pytest.raises(pydantic.ValidationError):
        request(pipeline, **{"class": 1, "num_images": 0})
    with pytest.raises(pydantic.ValidationError):
        request(pipeline, **{"class": 1, "prompt": "a cat"})
