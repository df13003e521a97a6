import math

import pytest
import torch

from tokenizers_media.nn.vq import L2NormVectorQuantizer, PerturbationSchedule, nearest_neighbours


@pytest.fixture
def quantizer() -> L2NormVectorQuantizer:
    torch.manual_seed(0)
    vq = L2NormVectorQuantizer(num_codes=64, dim=4)
    torch.nn.init.normal_(vq.embedding.weight)
    return vq


def test_forward_picks_nearest_unit_code_and_is_straight_through(quantizer):
    latents = torch.randn(2, 5, 4, requires_grad=True)
    out = quantizer(latents)
    assert out.codes.shape == (2, 5) and out.codes.dtype == torch.int64
    book = quantizer.normalized_codebook()
    cos = torch.nn.functional.normalize(latents, dim=-1) @ book.t()
    assert torch.equal(out.codes, cos.argmax(-1))
    torch.testing.assert_close(out.quantized, book[out.codes])
    assert torch.equal(quantizer.encode(latents), out.codes)
    torch.testing.assert_close(quantizer.decode(out.codes), out.quantized)
    out.quantized.sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert out.commit_loss > 0 and out.codebook_loss > 0
    torch.testing.assert_close(out.commit_loss, 0.25 * out.codebook_loss)


def test_decode_rejects_out_of_range_codes(quantizer):
    with pytest.raises(ValueError, match="codes must lie in"):
        quantizer.decode(torch.tensor([[64]]))


def test_nearest_neighbours_first_is_self():
    book = torch.randn(32, 3)
    idx = nearest_neighbours(book, book, k=5)
    assert torch.equal(idx[:, 0], torch.arange(32))
    dist = torch.cdist(book, book)
    assert torch.all(dist.gather(1, idx).diff(dim=1) >= -1e-5)


@pytest.mark.parametrize("alpha,beta,delta", [(0.0, 1.0, 10), (1.0, 1.0, 1), (1.0, 0.0, 10), (1.0, 0.4, 10)])
def test_perturb_identity_cases_and_untouched_tail(quantizer, alpha, beta, delta):
    codes = torch.randint(0, 64, (5, 20))
    out = quantizer.perturb(codes, alpha, beta, delta, torch.Generator().manual_seed(0))
    n = math.floor(beta * 5)
    assert torch.equal(out[n:], codes[n:])
    if alpha == 0.0 or delta == 1 or n == 0:
        assert torch.equal(out, codes)
    else:
        assert not torch.equal(out[:n], codes[:n])


def test_perturb_picks_among_delta_nearest_with_index0_self(quantizer):
    codes = torch.randint(0, 64, (4, 500))
    gen = torch.Generator().manual_seed(1)
    out = quantizer.perturb(codes, alpha=1.0, beta=1.0, delta=4, generator=gen)
    book = quantizer.normalized_codebook()
    neighbours = nearest_neighbours(book, book, k=4)  # (64, 4)
    allowed = neighbours[codes]
    assert (out.unsqueeze(-1) == allowed).any(-1).all()
    # Uniform over [0, 4) with index 0 = itself: about a quarter of tokens keep their code.
    kept = (out == codes).float().mean().item()
    assert 0.18 < kept < 0.32


def test_perturb_alpha_rate_and_seed(quantizer):
    codes = torch.randint(0, 64, (2, 4000))
    a = quantizer.perturb(codes, 0.3, 1.0, 2, torch.Generator().manual_seed(7))
    b = quantizer.perturb(codes, 0.3, 1.0, 2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    changed = (a != codes).float().mean().item()
    assert abs(changed - 0.3 * 0.5) < 0.03  # replaced with prob alpha, and then 1/2 chance of a new code


def test_perturb_with_latents_ranks_neighbours_by_latent(quantizer):
    latents = torch.randn(3, 50, 4)
    codes = quantizer.encode(latents)
    out = quantizer.perturb(codes, 1.0, 1.0, 3, torch.Generator().manual_seed(0), latents=latents)
    allowed = nearest_neighbours(torch.nn.functional.normalize(latents, dim=-1),
                                 quantizer.normalized_codebook(), 3)
    assert (out.unsqueeze(-1) == allowed).any(-1).all()


def test_perturb_rejects_bad_values(quantizer):
    codes = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="alpha and beta"):
        quantizer.perturb(codes, 1.5, 1.0, 2)
    with pytest.raises(ValueError, match="delta"):
        quantizer.perturb(codes, 1.0, 1.0, 0)


def test_schedule_holds_ramps_and_floors_delta():
    s = PerturbationSchedule.for_total_steps(100, alpha=1.0, beta=0.1, delta=100)
    assert s.at(0) == (1.0, 0.1, 100)
    assert s.at(20) == (1.0, 0.1, 100)
    alpha, _, delta = s.at(40)
    assert alpha == pytest.approx(0.75) and delta == 75
    assert s.at(60) == (0.5, 0.1, 50) and s.at(1000) == (0.5, 0.1, 50)
    assert PerturbationSchedule(delta=3, hold_steps=0, ramp_end_steps=1).at(5)[2] == 1


def test_dead_codes_restart_onto_batch_latents_only_in_training():
    torch.manual_seed(0)
    vq = L2NormVectorQuantizer(num_codes=16, dim=4, dead_code_steps=3)
    latents = torch.nn.functional.normalize(torch.randn(2, 8, 4), dim=-1)
    vq.eval()
    before = vq.embedding.weight.clone()
    for _ in range(5):
        vq(latents)
    assert torch.equal(vq.embedding.weight, before)  # eval: nothing moves
    vq.train()
    used = set(vq(latents).codes.flatten().tolist())
    vq(latents)
    vq(latents)  # third call: codes idle since the start are restarted
    moved = (vq.embedding.weight != before).any(-1)
    assert moved.any()
    assert not moved[sorted(used)].any()  # a code in use keeps its vector
    book = vq.normalized_codebook()
    for row in book[moved]:  # a restarted code sits on one of the batch's latents
        assert (latents.reshape(-1, 4) - row).norm(dim=-1).min() < 1e-5
    assert len(set(vq(latents).codes.flatten().tolist())) >= len(used)


def test_dead_code_steps_validated():
    with pytest.raises(ValueError, match="dead_code_steps"):
        L2NormVectorQuantizer(num_codes=4, dim=2, dead_code_steps=-1)


def test_restart_inside_a_graph_still_backpropagates():
    torch.manual_seed(0)
    vq = L2NormVectorQuantizer(num_codes=32, dim=4, dead_code_steps=1).train()
    latents = torch.randn(2, 8, 4, requires_grad=True)
    first, second = vq(latents), vq(latents * 2)  # two passes before one backward, as KARL's training does
    (first.loss + second.loss + first.quantized.sum()).backward()
    assert latents.grad is not None and vq.embedding.weight.grad is not None
