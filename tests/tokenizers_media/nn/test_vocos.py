"""Vocos blocks (reused beyond WavTokenizer): the "same"-padded ISTFT inverts its STFT; configurable backbone."""

from __future__ import annotations

import pytest
import torch

from tokenizers_media.nn.vocos import ISTFT, ISTFTHead, VocosBackbone


@pytest.mark.parametrize(("n_fft", "hop"), [(1280, 320), (2400, 600), (16, 4)])
def test_istft_inverts_a_same_padded_stft(n_fft, hop):
    frames = 9
    signal = torch.randn(2, frames * hop, dtype=torch.float64)
    istft = ISTFT(n_fft, hop).double()
    pad = (n_fft - hop) // 2
    padded = torch.nn.functional.pad(signal, (pad, pad))  # (B, (frames - 1) * hop + n_fft)
    windowed = padded.unfold(-1, n_fft, hop) * istft.window  # (B, frames, n_fft)
    spec = torch.fft.rfft(windowed, dim=-1).transpose(1, 2)  # (B, n_fft / 2 + 1, frames)
    torch.testing.assert_close(istft(spec), signal)


def test_istft_rejects_odd_overlap():
    with pytest.raises(ValueError, match="n_fft - hop_length even"):
        ISTFT(10, 3)


def test_head_clamps_magnitude_and_gives_frames_times_hop():
    head = ISTFTHead(dim=8, n_fft=16, hop_length=4)
    with torch.no_grad():
        head.out.bias.fill_(1e4)  # exp would overflow to inf without the clamp
    audio = head(torch.zeros(1, 5, 8))
    assert audio.shape == (1, 20) and bool(torch.isfinite(audio).all())


def test_backbone_without_pos_net_or_adanorm_for_other_vocoders():
    plain = VocosBackbone(input_channels=10, dim=24, intermediate_dim=48, num_layers=2, pos_net=False)
    assert plain(torch.randn(2, 10, 7)).shape == (2, 7, 24)
    conditioned = VocosBackbone(10, 32, 64, 2, adanorm_num_embeddings=4)
    out = conditioned(torch.randn(2, 10, 7), torch.tensor([1]))
    assert out.shape == (2, 7, 32)
    with pytest.raises(ValueError, match="pass cond_id"):
        conditioned(torch.randn(2, 10, 7))
    with pytest.raises(ValueError, match="multiple of 32"):
        VocosBackbone(10, 24, 48, 2)
