"""Offline image metrics: PSNR, SSIM and the Frechet distance between feature sets.

Nothing here downloads weights. Frechet distances computed on features of a network trained in this repo
(``pipelines/shapes_classifier/model.py``) are *proxy* FIDs: always label them so and never compare them with
paper FID, which uses Inception-v3 features on ImageNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(images: torch.Tensor, reference: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B,) peak signal-to-noise ratio in dB (capped at 100 dB for identical images)."""
    _check_pair(images, reference)
    mse = (images.float() - reference.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(max_value**2 / mse.clamp(min=1e-10))).clamp(max=100.0)


def ssim(images: torch.Tensor, reference: torch.Tensor, max_value: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B,) mean structural similarity (Wang et al. 2004, Gaussian 11x11 window,
    sigma 1.5, K1 = 0.01, K2 = 0.03), computed per channel over the valid region and averaged."""
    _check_pair(images, reference)
    x, y = images.float(), reference.float()
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D):
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, in float64.

    The trace of the matrix square root is taken as the sum of square roots of the eigenvalues of the
    symmetric ``S_a^(1/2) S_b S_a^(1/2)``, which is stable where ``scipy.linalg.sqrtm`` needs a fix-up.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"need two (N, D) feature sets of equal D, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to estimate a covariance")
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(value.clamp(min=0))


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def _check_pair(images: torch.Tensor, reference: torch.Tensor) -> None:
    if images.shape != reference.shape or images.ndim != 4:
        raise ValueError(f"need two (B, C, H, W) batches of the same shape, got {tuple(images.shape)} and "
                         f"{tuple(reference.shape)}")
