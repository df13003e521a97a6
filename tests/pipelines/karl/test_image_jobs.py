import pytest
import torch

from pipelines.base import InputError, Params, Request
from pipelines.karl.image_detokenize import KARLImageDetokenizePipeline
from pipelines.karl.image_tokenize import KARLImageTokenizePipeline, KARLTokenizeParams, to_model_size
from pipelines.media import Image, Tokens
from tokenizers_media.image.karl import KARL

MICRO = dict(image_size=32, patch_size=8, width=32, encoder_depth=1, decoder_depth=1, num_heads=2, latent_pool=8,
             max_tokens=8, codebook_size=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return KARL.from_preset("tiny", **MICRO).save_pretrained(tmp_path_factory.mktemp("karl-micro"))


def test_tokenize_then_detokenize(model_dir):
    tokenize = KARLImageTokenizePipeline.load(model_dir)
    requests = [Request({"image": Image(torch.rand(3, 40, 57))}, KARLTokenizeParams(target_error=0.02)),
                Request({"image": Image(torch.rand(3, 32, 32))}, KARLTokenizeParams(max_tokens=4))]
    results = tokenize.run(requests)
    first, second = results[0]["tokens"], results[1]["tokens"]
    assert first.tensors["codes"].shape == (1, 8) and second.tensors["codes"].shape == (1, 4)
    assert first.metadata["image_size"] == "32" and first.metadata["model"] == model_dir.name
    images = KARLImageDetokenizePipeline.load(model_dir).run([Request({"tokens": first}, Params())])
    assert images[0]["image"].pixels.shape == (3, 32, 32)


def test_tokenize_takes_a_halting_threshold_per_request(model_dir):
    tokenize = KARLImageTokenizePipeline.load(model_dir)
    image = Image(torch.rand(3, 32, 32))
    low, high = tokenize.run([Request({"image": image}, KARLTokenizeParams(halt_threshold=0.001)),
                              Request({"image": image}, KARLTokenizeParams(halt_threshold=0.999))])
    assert low["tokens"].tensors["lengths"].item() < high["tokens"].tensors["lengths"].item()
    assert low["tokens"].metadata["halt_threshold"] == "0.001"
    with pytest.raises(ValueError, match="halt_threshold"):
        KARLTokenizeParams(halt_threshold=1.0)


def test_tokenize_rejects_a_budget_above_the_pool(model_dir):
    tokenize = KARLImageTokenizePipeline.load(model_dir)
    with pytest.raises(InputError, match="max_tokens 9"):
        tokenize.check_request(Request({"image": Image(torch.rand(3, 32, 32))}, KARLTokenizeParams(max_tokens=9)))


def test_detokenize_rejects_foreign_or_broken_tokens(model_dir):
    detokenize = KARLImageDetokenizePipeline.load(model_dir)
    foreign = Tokens({"codes": torch.zeros(1, 8, dtype=torch.long), "lengths": torch.tensor([8])},
                     {"model": "other", "model_sha": "0" * 16})
    with pytest.raises(InputError, match="made by model 'other'"):
        detokenize.check_request(Request({"tokens": foreign}, Params()))
    bad = Tokens({"codes": torch.full((1, 8), 64), "lengths": torch.tensor([8])})
    with pytest.raises(InputError, match="out of range"):
        detokenize.check_request(Request({"tokens": bad}, Params()))
    padded = Tokens({"codes": torch.tensor([[1, 2, -1, -1]]), "lengths": torch.tensor([2])})
    detokenize.check_request(Request({"tokens": padded}, Params()))  # padding past the length is fine


def test_to_model_size_centre_crops():
    pixels = torch.zeros(3, 10, 30)
    pixels[:, :, 10:20] = 1.0
    assert torch.all(to_model_size(pixels, 10) == 1.0)
    assert to_model_size(torch.rand(3, 64, 48), 32).shape == (3, 32, 32)
