"""Multi-period / multi-resolution discriminators and the shared GAN + mel losses."""

from __future__ import annotations

import pytest
import torch

from tokenizers_media.audio.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from tokenizers_media.audio.losses import (
    LogMelSpectrogram,
    MelLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)


def test_multi_period_discriminator_shapes() -> None:
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(width=2)
    logits, features = mpd(torch.randn(2, 2401))
    assert len(logits) == len(features) == 5
    for period, logit, feats in zip((2, 3, 5, 7, 11), logits, features, strict=True):
        assert logit.shape[0] == 2 and logit.shape[1] == 1 and logit.shape[-1] == period
        assert len(feats) == 6 and feats[-1] is logit
        assert feats[0].shape[1] == 2 and feats[3].shape[1] == 64  # width, 32 * width


def test_multi_resolution_discriminator_shapes() -> None:
    torch.manual_seed(0)
    mrd = MultiResolutionDiscriminator(width=4)
    logits, features = mrd(torch.randn(2, 4096))
    assert len(logits) == 3
    for (n_fft, hop, _), logit in zip(((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)), logits, strict=True):
        freq_bins = n_fft // 2 + 1
        assert logit.shape == (2, 1, -(-freq_bins // 8), 4096 // hop + 1)
    assert all(f.shape[1] == 4 for f in features[0][:-1])


def test_discriminators_pass_gradients_to_the_input() -> None:
    wav = torch.randn(1, 3000, requires_grad=True)
    for disc in (MultiPeriodDiscriminator(width=2), MultiResolutionDiscriminator(width=2)):
        logits, _ = disc(wav)
        hinge_generator_loss(logits).backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0


def test_hinge_losses_on_known_logits() -> None:
    real, fake = [torch.full((2, 3), 2.0), torch.full((4,), 0.5)], [torch.full((2, 3), -2.0), torch.full((4,), 0.0)]
    # sub-disc 1: relu(1-2)+relu(1-2)=0; sub-disc 2: relu(0.5)+relu(1)=1.5 -> mean 0.75
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(0.75)
    # generator: relu(1+2)=3 and relu(1-0)=1 -> mean 2
    assert float(hinge_generator_loss(fake)) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        hinge_discriminator_loss(real, fake[:1])


def test_feature_matching_loss() -> None:
    real = [[torch.ones(2, 3), torch.zeros(4)], [torch.ones(5)]]
    assert float(feature_matching_loss(real, real)) == 0.0
    fake = [[torch.zeros(2, 3), torch.zeros(4)], [torch.full((5,), 3.0)]]
    # layer means |1-0|=1, 0, |1-3|=2 -> sum 3 over 2 sub-discriminators
    assert float(feature_matching_loss(real, fake)) == pytest.approx(1.5)


def test_mel_loss_matches_definition() -> None:
    torch.manual_seed(0)
    wav = torch.randn(2, 4800) * 0.1
    loss = MelLoss()
    assert float(loss(wav, wav)) == 0.0
    mel = LogMelSpectrogram()(wav)
    assert mel.shape == (2, 100, 4800 // 256 + 1)
    assert float(mel.min()) >= torch.log(torch.tensor(1e-7)) - 1e-4
    # halving the amplitude shifts every unclipped log-mel bin by log(2)
    assert float(loss(wav * 0.5, wav)) == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-3)
    with pytest.raises(ValueError, match="equal shapes"):
        loss(wav, wav[:, :100])
