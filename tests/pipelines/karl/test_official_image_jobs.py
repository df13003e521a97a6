"""Jobs on official KARL: per-position masks in the tokens file, karl-tiny ``lengths`` files, the official
input transform, and the golden case through the job pipelines."""

from __future__ import annotations

import pytest
import torch

from pipelines.base import InputError, Params, Request
from pipelines.karl.image_tokenize import KARLTokenizeParams
from pipelines.karl.official_image_detokenize import KARLOfficialImageDetokenizePipeline
from pipelines.karl.official_image_tokenize import KARLOfficialImageTokenizePipeline
from pipelines.media import Image, Tokens
from tokenizers_media.image.karl_official import KARLOfficial

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = KARLOfficial.from_preset("tiny")
    with torch.no_grad():
        model.halting_mlp[2].bias.fill_(1.1)  # some positions halt
    return model.save_pretrained(tmp_path_factory.mktemp("karl-official-tiny"))


def test_tokenize_writes_a_mask_and_detokenize_reads_it(model_dir):
    tokenize = KARLOfficialImageTokenizePipeline.load(model_dir)
    image = torch.rand(3, 40, 57)
    tokens = tokenize.run([Request({"image": Image(image)}, KARLTokenizeParams(target_error=0.05))])[0]["tokens"]
    codes, mask = tokens.tensors["codes"], tokens.tensors["mask"]
    assert codes.shape == mask.shape == (1, 16) and mask.dtype == torch.bool and 0 < mask.sum() < 16
    assert bool((codes[~mask] == -1).all()) and tokens.metadata["model_class"] == "KARLOfficial"
    out = KARLOfficialImageDetokenizePipeline.load(model_dir).run([Request({"tokens": tokens}, Params())])
    model = KARLOfficial.from_pretrained(model_dir)
    expected = model.decode(codes, mask)[0].clamp(0, 1)
    assert torch.allclose(out[0]["image"].pixels, expected)


def test_detokenize_accepts_a_lengths_prefix_and_refuses_foreign_tokens(model_dir):
    detokenize = KARLOfficialImageDetokenizePipeline.load(model_dir)
    codes = torch.randint(0, 64, (1, 16))
    by_length = Tokens({"codes": codes, "lengths": torch.tensor([5])})
    by_mask = Tokens({"codes": codes, "mask": torch.arange(16)[None] < 5})
    a, b = (detokenize.run([Request({"tokens": t}, Params())])[0]["image"].pixels for t in (by_length, by_mask))
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="made by model"):
        detokenize.check_request(Request({"tokens": Tokens({"codes": codes, "mask": codes >= 0},
                                                           {"model_sha": "0" * 16})}, Params()))
    with pytest.raises(InputError, match="out of range"):
        detokenize.check_request(Request({"tokens": Tokens({"codes": codes + 64, "mask": codes >= 0})}, Params()))


