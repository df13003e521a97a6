"""PSNR, SSIM and the Frechet distance."""

from __future__ import annotations

import pytest
import torch

from pipelines.evaluation.metrics import frechet_distance, psnr, ssim


def test_psnr_of_known_noise_level() -> None:
    ref = torch.full((2, 3, 16, 16), 0.5)
    noisy = ref + 0.1  # mse 0.01 -> 20 dB
    assert torch.allclose(psnr(noisy, ref), torch.tensor([20.0, 20.0]), atol=1e-3)
    assert psnr(ref, ref).min() == 100.0


def test_ssim_is_one_for_identical_and_lower_for_noisy_images() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(ref, ref), torch.ones(2), atol=1e-5)
    noisy = (ref + 0.2 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    assert (ssim(noisy, ref) < 0.9).all()
    with pytest.raises(ValueError, match="same shape"):
        ssim(ref, ref[:, :, :16])


def test_frechet_distance_matches_the_closed_form_for_gaussians() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    b = 2.0 * torch.randn(20000, 4, generator=g, dtype=torch.float64) + 1.0
    # |mu|^2 = 4; Tr(I + 4I - 2*2I) = 4 -> 8
    assert frechet_distance(a, b) == pytest.approx(8.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
