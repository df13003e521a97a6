"""Group attention on tiny random PixArt and DiT transformers."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel

from pipelines.gdt.attention import (
    GroupAttnProcessor,
    SameImageBias,
    install_group_attention,
    self_attention_layers,
)


def tiny_pixart() -> PixArtTransformer2DModel:
    torch.manual_seed(0)
    return PixArtTransformer2DModel(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=3, caption_channels=32, in_channels=4, out_channels=8,
                                    cross_attention_dim=24, norm_type="ada_norm_single").eval()


def tiny_dit() -> DiTTransformer2DModel:
    torch.manual_seed(0)
    return DiTTransformer2DModel(sample_size=16, num_layers=2, patch_size=4, attention_head_dim=8,
                                 num_attention_heads=2, in_channels=4, out_channels=8, num_embeds_ada_norm=10).eval()


def run_pixart(model, x, captions):
    return model(x, encoder_hidden_states=captions, timestep=torch.full((len(x),), 500),
                 added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample


def run_dit(model, x, labels):
    return model(x, timestep=torch.full((len(x),), 500), class_labels=labels).sample


CASES = {
    "pixart": (tiny_pixart, run_pixart, lambda b: torch.randn(b, 5, 32), (4, 8, 8)),
    "dit": (tiny_dit, run_dit, lambda b: torch.arange(b) % 10, (4, 16, 16)),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    build, run, cond, shape = CASES[request.param]
    torch.manual_seed(1)
    return build(), run, cond(4), torch.randn(4, *shape)


@torch.no_grad()
def test_group_of_one_equals_stock_processor(case):
    model, run, cond, x = case
    stock = run(model, x, cond)
    processors = install_group_attention(model, 1)
    assert processors and all(isinstance(p, GroupAttnProcessor) for p in processors.values())
    assert torch.equal(run(model, x, cond), stock)


@torch.no_grad()
def test_images_of_a_group_see_each_other_and_only_their_group(case):
    model, run, cond, x = case
    install_group_attention(model, 2)
    out = run(model, x, cond)
    changed = x.clone()
    changed[1] = torch.randn_like(changed[1])
    out2 = run(model, changed, cond)
    assert not torch.allclose(out[0], out2[0], atol=1e-4)  # image 0 attends to image 1 of its group
    torch.testing.assert_close(out[2:], out2[2:])  # the other group is untouched
    install_group_attention(model, 1)
    torch.testing.assert_close(run(model, changed, cond)[0], run(model, x, cond)[0])


def assert_equivariant_to_group_order(model, run, cond, x):
    install_group_attention(model, 4)
    perm = torch.tensor([2, 0, 3, 1])
    out = run(model, x, cond)
    torch.testing.assert_close(run(model, x[perm], cond[perm]), out[perm], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_equivariant_to_group_order(case):
    assert_equivariant_to_group_order(*case)


@torch.no_grad()
def test_cfg_batch_of_whole_groups_and_clear_error_otherwise(case):
    model, run, cond, x = case
    install_group_attention(model, 2)
    out = run(model, x, cond)  # 4 images = 2 groups (e.g. the two CFG halves of one group of 2)
    torch.testing.assert_close(run(model, x[:2], cond[:2]), out[:2])
    with pytest.raises(ValueError, match="not a whole number of groups of 2"):
        run(model, x[:3], cond[:3])


def test_rejects_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        install_group_attention(tiny_dit(), 0)


def with_bias(model, group_size: int, value: float) -> SameImageBias:
    layers = len(self_attention_layers(model))
    heads = next(iter(self_attention_layers(model).values())).heads
    bias = SameImageBias(layers, heads)
    with torch.no_grad():
        bias.values.fill_(value)
    install_group_attention(model, group_size, bias)
    return bias


@torch.no_grad()
def test_same_image_bias_keeps_stock_at_g1_and_equivariance(case):
    model, run, cond, x = case
    stock = run(model, x, cond)
    with_bias(model, 1, 3.0)
    assert torch.equal(run(model, x, cond), stock)  # G = 1: a constant shift, skipped
    assert_equivariant_to_group_order(model, run, cond, x)  # the bias stays installed


@torch.no_grad()
def test_same_image_bias_shifts_attention_towards_the_own_image(case):
    model, run, cond, x = case
    changed = x.clone()
    changed[1] = torch.randn_like(changed[1])
    install_group_attention(model, 2)
    group_only = (run(model, x, cond)[0] - run(model, changed, cond)[0]).abs().max().item()
    effect = {}
    for value in (0.0, 30.0):
        with_bias(model, 2, value)
        effect[value] = (run(model, x, cond)[0] - run(model, changed, cond)[0]).abs().max().item()
    assert effect[0.0] == pytest.approx(group_only, rel=1e-4)  # a zero bias is plain group attention
    assert effect[30.0] < 1e-3 * effect[0.0]  # a large bias closes the image off from its group mate


def test_same_image_bias_trains_by_gradient():
    model = tiny_pixart()
    bias = with_bias(model, 2, 0.0)
    x, captions = torch.randn(4, 4, 8, 8), torch.randn(4, 5, 32)
    run_pixart(model, x, captions).square().mean().backward()
    assert bias.values.grad is not None and bias.values.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layers"):
        install_group_attention(model, 2, SameImageBias(5, 3))


@torch.no_grad()
def test_same_image_bias_keeps_a_key_mask():
    model = tiny_pixart()
    with_bias(model, 2, 2.0)
    layer = next(iter(self_attention_layers(model).values()))
    x = torch.randn(4, 16, layer.query_dim)
    mask = torch.ones(4, 16, dtype=torch.bool)
    mask[1, :8] = False  # the first 8 tokens of image 1 may not be attended to
    out = layer.processor(layer, x, attention_mask=mask)
    changed = x.clone()
    changed[1, :8] = torch.randn(8, layer.query_dim)
    torch.testing.assert_close(layer.processor(layer, changed, attention_mask=mask)[0], out[0])
    assert not torch.allclose(layer.processor(layer, changed)[0], layer.processor(layer, x)[0], atol=1e-5)
