"""Shared ViT blocks and the diagonal-Gaussian latent."""

from __future__ import annotations

import pytest
import torch

from tokenizers_media.nn.gaussian import DiagonalGaussian
from tokenizers_media.nn.vit import Transformer, patchify, unpatchify


@pytest.mark.parametrize("patch", [2, 4, 8])
def test_unpatchify_inverts_patchify(patch: int) -> None:
    images = torch.randn(2, 3, 16, 24)
    tokens = patchify(images, patch)
    assert tokens.shape == (2, (16 // patch) * (24 // patch), 3 * patch * patch)
    assert torch.equal(unpatchify(tokens, patch, 16, 24), images)
    # The first token is the top-left patch, channels last.
    assert torch.equal(tokens[0, 0].view(patch, patch, 3).permute(2, 0, 1), images[0, :, :patch, :patch])


def test_patchify_rejects_sizes_that_do_not_tile() -> None:
    with pytest.raises(ValueError, match="multiple of the patch"):
        patchify(torch.zeros(1, 3, 10, 16), 4)


def test_masked_keys_do_not_influence_kept_tokens() -> None:
    torch.manual_seed(0)
    net = Transformer(dim=32, depth=2, heads=4).eval()
    x = torch.randn(1, 6, 32)
    keep = torch.tensor([[True, True, True, True, False, False]])
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 32)
    a, b = net(x, keep), net(changed, keep)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(net(x)[:, :4], net(changed)[:, :4])


def test_gaussian_kl_is_zero_at_the_prior_and_mean_is_deterministic() -> None:
    gauss = DiagonalGaussian()
    prior = gauss(torch.zeros(4, 5, 16))
    assert prior.kl.item() == pytest.approx(0.0) and prior.sample.shape == (4, 5, 8)
    moments = torch.cat([torch.ones(2, 3, 8), torch.zeros(2, 3, 8)], dim=-1)
    out = gauss(moments, sample=False)
    assert torch.equal(out.sample, torch.ones(2, 3, 8))
    assert out.kl.item() == pytest.approx(0.5 * 8)
