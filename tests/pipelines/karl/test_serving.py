"""The job glue both KARL models share (``pipelines/karl/serving.py``): checks, batching, tokens metadata."""

from __future__ import annotations

import pytest
import torch

from pipelines.base import InputError, Params, Request
from pipelines.karl.image_detokenize import KARLImageDetokenizePipeline
from pipelines.karl.image_tokenize import KARLImageTokenizePipeline
from pipelines.karl.official_image_detokenize import KARLOfficialImageDetokenizePipeline
from pipelines.karl.official_image_tokenize import KARLOfficialImageTokenizePipeline
from pipelines.karl.serving import KARLTokenizeParams
from pipelines.media import Image, Tokens
from tokenizers_media.image.karl import KARL
from tokenizers_media.image.karl_official import KARLOfficial

pytestmark = pytest.mark.usefixtures("one_thread")

JOBS = {
    "karl": (lambda: KARL.from_preset("tiny"), KARLImageTokenizePipeline, KARLImageDetokenizePipeline),
    "official": (lambda: KARLOfficial.from_preset("tiny"), KARLOfficialImageTokenizePipeline,
                 KARLOfficialImageDetokenizePipeline),
}
SHARED_METADATA = {"model", "model_sha", "model_class", "image_size", "target_error", "max_tokens", "halt_threshold"}


@pytest.fixture(scope="module", params=sorted(JOBS))
def jobs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    build, tokenize, detokenize = JOBS[request.param]
    torch.manual_seed(0)
    model_dir = build().save_pretrained(tmp_path_factory.mktemp(request.param))
    return tokenize.load(model_dir), detokenize.load(model_dir)


def _request(seed: int, **params) -> Request:
    image = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(seed))
    return Request({"image": Image(image)}, KARLTokenizeParams(**params))


def test_a_mixed_batch_equals_one_request_at_a_time(jobs) -> None:
    tokenize, _ = jobs
    requests = [_request(0, max_tokens=8), _request(1, halt_threshold=0.5, target_error=0.1), _request(2),
                _request(3, max_tokens=8, target_error=0.02)]
    batch = tokenize.run(requests)
    assert len(batch) == len(requests)
    for request, result in zip(requests, batch, strict=True):
        alone = tokenize.run([request])[0]["tokens"]
        assert result["tokens"].metadata == alone.metadata
        assert result["tokens"].tensors.keys() == alone.tensors.keys()
        for name, tensor in alone.tensors.items():
            assert torch.equal(result["tokens"].tensors[name], tensor), name


def test_tokens_files_share_their_metadata(jobs) -> None:
    tokenize, _ = jobs
    tokens = tokenize.run([_request(0, max_tokens=8, halt_threshold=0.6)])[0]["tokens"]
    assert SHARED_METADATA <= set(tokens.metadata)
    assert tokens.metadata["model_class"] == type(tokenize.model).__name__
    assert (tokens.metadata["max_tokens"], tokens.metadata["halt_threshold"]) == ("8", "0.6")
    pool = tokenize.model.config.latent_pool
    with pytest.raises(InputError, match=f"max_tokens {pool + 1} is larger than this model's {pool}"):
        tokenize.check_request(_request(0, max_tokens=pool + 1))


def test_detokenize_checks_slots_and_lengths_alike(jobs) -> None:
    _, detokenize = jobs
    pool, size = detokenize.model.config.latent_pool, detokenize.model.config.codebook_size

    def check(tensors: dict[str, torch.Tensor]) -> None:
        detokenize.check_request(Request({"tokens": Tokens(tensors)}, Params()))

    with pytest.raises(InputError, match=rf"'codes' has {pool + 1} slots; this model takes 1..{pool}"):
        check({"codes": torch.zeros(1, pool + 1, dtype=torch.long), "lengths": torch.tensor([3])})
    with pytest.raises(InputError, match=r"'lengths' must be one value in \[0, 4\], got \[5\]"):
        check({"codes": torch.zeros(1, 4, dtype=torch.long), "lengths": torch.tensor([5])})
    with pytest.raises(InputError, match=rf"codes out of range \[0, {size}\]; this model has {size} codes"):
        check({"codes": torch.tensor([[0, size, 1, 2]]), "lengths": torch.tensor([2])})
    check({"codes": torch.tensor([[0, 1, size, -1]]), "lengths": torch.tensor([2])})  # past the length: padding
    with pytest.raises(InputError, match="needs a tokens file"):
        detokenize.check_request(Request({"tokens": Image(torch.rand(3, 4, 4))}, Params()))


def test_detokenize_gives_an_image_in_the_unit_range(jobs) -> None:
    tokenize, detokenize = jobs
    tokens = tokenize.run([_request(0)])[0]["tokens"]
    image = detokenize.run([Request({"tokens": tokens}, Params())])[0]["image"].pixels
    size = tokenize.model.config.image_size
    assert image.shape == (3, size, size) and 0 <= image.min() and image.max() <= 1
