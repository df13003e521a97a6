"""What KARL and KARLOfficial share (``karl_common``): one round trip, one set of checks, one error-bin rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tokenizers_media.image.karl import KARL, KARLConfig
from tokenizers_media.image.karl_common import ERROR_BINS, PAD_CODE, BaseKARLConfig
from tokenizers_media.image.karl_official import KARLOfficial, KARLOfficialConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {
    "karl": lambda: KARL.from_preset("tiny"),
    "karl-continuous": lambda: KARL.from_preset("tiny", quantize=False),
    "official": lambda: KARLOfficial.from_preset("tiny"),
    "official-vae": lambda: KARLOfficial.from_preset("tiny-vae"),
}


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> KARL | KARLOfficial:
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def _images(model: KARL | KARLOfficial, batch: int = 2) -> torch.Tensor:
    size = model.config.image_size
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_forward_decodes_what_encode_gives(model: KARL | KARLOfficial) -> None:
    images = _images(model)
    enc = model.encode(images, target_error=0.05, max_tokens=8)
    tokens, active = enc.decode_args
    if enc.codes is None:
        assert tokens is enc.latents and tokens.shape == (2, 8, model.config.code_dim)
    else:
        assert tokens is enc.codes and tokens.dtype == torch.int64
    assert active is getattr(enc, type(enc).active_field)
    assert torch.equal(model(images, 0.05, 8), model.decode(tokens, active))


def test_error_bin_snaps_up_the_same_way_in_both(model: KARL | KARLOfficial) -> None:
    bins = model.error_bin(torch.tensor([0.001, 0.005, 0.0501, 0.08, 0.5]), 5)
    assert [ERROR_BINS[i] for i in bins] == [0.005, 0.005, 0.06, 0.09, 0.38]
    assert bins.dtype == torch.int64 and bins.device == next(model.parameters()).device
    assert torch.equal(model.error_bin(0.05, 3), torch.full((3,), ERROR_BINS.index(0.05)))
    with pytest.raises(ValueError, match=r"target_error must be a positive float or a \(2,\) tensor"):
        model.error_bin(torch.tensor([0.1, 0.0]), 2)


def test_the_checks_and_their_messages_are_shared(model: KARL | KARLOfficial) -> None:
    size, pool = model.config.image_size, model.config.latent_pool
    with pytest.raises(ValueError, match=rf"KARL expects images \(B, 3, {size}, {size}\), got \(1, 3, 8, 8\)"):
        model.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=rf"token budget must be in \[1, {pool}\], got {pool + 1}"):
        model.encode(_images(model, 1), max_tokens=pool + 1)
    with pytest.raises(ValueError, match=r"halt_threshold must be in \(0, 1\), got 1.0"):
        model.encode(_images(model, 1), halt_threshold=1.0)
    enc = model.encode(_images(model, 1), max_tokens=4)
    wrong = enc.codes.float() if enc.codes is not None else enc.latents[..., :-1]
    with pytest.raises(ValueError, match="KARL decodes"):
        model.decode(wrong, enc.decode_args[1])


def test_codes_outside_the_active_tokens_are_never_looked_up() -> None:
    torch.manual_seed(0)
    model = KARL.from_preset("tiny").eval()
    enc = model.encode(_images(model), max_tokens=8)
    assert bool((enc.codes[:, enc.lengths.max():] == PAD_CODE).all())
    assert torch.equal(model.decode(enc.codes, enc.lengths), model.decode(enc.codes.clamp(min=0), enc.lengths))


def test_both_configs_share_the_karl_small_defaults() -> None:
    shared = [f.name for f in dataclasses.fields(BaseKARLConfig)]
    for config in (KARLConfig(), KARLOfficialConfig()):
        assert isinstance(config, BaseKARLConfig)
        assert {n: getattr(config, n) for n in shared} == {n: getattr(BaseKARLConfig(), n) for n in shared}
        assert config.grid == 16
    for cls in (KARLConfig, KARLOfficialConfig):
        with pytest.raises(ValueError, match=r"max_tokens 600 must be in \[1, latent_pool=512\]"):
            cls(max_tokens=600)
