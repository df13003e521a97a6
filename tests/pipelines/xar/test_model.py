"""xAR velocity network: shapes, block-causal attention, KV-cached steps, entity layouts, save/load."""

from __future__ import annotations

import pytest
import torch

from pipelines.xar.entities import ENTITY_KINDS, make_layout
from pipelines.xar.model import XAR

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(entity: str = "cell", **overrides) -> XAR:
    torch.manual_seed(0)
    model = XAR.from_preset("tiny", entity=entity, **overrides).eval()
    for block in [*model.encoder_blocks, *model.decoder_blocks]:  # non-zero adaLN so blocks do something
        torch.nn.init.normal_(block.ada_lin[1].weight, std=0.02)
    return model


def inputs(model: XAR, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, model.layout.num_tokens, model.config.latent_channels, generator=g)
    t = torch.rand(batch, model.layout.num_entities, generator=g)
    return x, t, torch.arange(batch)


@pytest.mark.parametrize("entity", ENTITY_KINDS)
def test_layout_round_trip_and_sizes(entity):
    layout = make_layout(entity, grid_size=8, entity_size=4, scales=(1, 2, 4, 8))
    latents = torch.randn(2, 3, 8, 8)
    tokens = layout.to_tokens(latents)
    assert tokens.shape == (2, layout.num_tokens, 3)
    assert torch.equal(layout.to_latents(tokens), latents)
    expected_entities = {"cell": 4, "patch": 64, "subsample": 4, "scale": 4, "image": 1}[entity]
    assert layout.num_entities == expected_entities


def test_subsample_entities_are_spread_over_the_grid():
    layout = make_layout("subsample", grid_size=8, entity_size=4)
    first = layout.positions[: layout.sizes[0]]
    assert set(first[:, 0].tolist()) == {0, 2, 4, 6} and set(first[:, 1].tolist()) == {0, 2, 4, 6}


def test_scale_tokens_are_pooled_latents():
    layout = make_layout("scale", grid_size=8, scales=(1, 2, 4, 8))
    latents = torch.randn(1, 3, 8, 8)
    tokens = layout.to_tokens(latents)
    assert torch.allclose(tokens[0, 0], latents.mean((2, 3))[0], atol=1e-6)


def test_bad_entity_settings_name_the_value():
    with pytest.raises(ValueError, match="hexagon"):
        make_layout("hexagon", 8)
    with pytest.raises(ValueError, match="entity_size 3"):
        make_layout("cell", 8, entity_size=3)
    with pytest.raises(ValueError, match="scales"):
        make_layout("scale", 8, scales=(2, 4))


@pytest.mark.parametrize("entity", ["cell", "patch", "scale"])
def test_velocity_is_block_causal(entity):
    model = tiny(entity)
    x, t, y = inputs(model)
    with torch.no_grad():
        v = model.velocity(x, t, y)
        x2, t2 = x.clone(), t.clone()
        last = model.layout.starts[-1]
        x2[:, last:] += 1.0  # change only the last entity and its time
        t2[:, -1] = 0.5 * t2[:, -1]
        v2 = model.velocity(x2, t2, y)
    assert v.shape == x.shape
    assert torch.allclose(v[:, :last], v2[:, :last], atol=1e-5)
    assert not torch.allclose(v[:, last:], v2[:, last:], atol=1e-3)


@pytest.mark.parametrize("entity", ["cell", "subsample", "scale"])
def test_kv_cached_steps_match_the_teacher_forced_pass(entity):
    model = tiny(entity)
    x, t, y = inputs(model)
    with torch.no_grad():
        full = model.velocity(x, t, y)
        caches = model.new_caches()
        for e, (start, size) in enumerate(zip(model.layout.starts, model.layout.sizes, strict=True)):
            part = x[:, start : start + size]
            step = model.entity_velocity(part, t[:, e], y, e, caches, store=True)
            assert torch.allclose(step, full[:, start : start + size], atol=1e-5)


def test_math_and_sdpa_attention_agree():
    model = tiny()
    x, t, y = inputs(model)
    with torch.no_grad():
        fused = model.velocity(x, t, y)
        model.set_attention_backend("math")
        reference = model.velocity(x, t, y)
    assert torch.allclose(fused, reference, atol=1e-5)
    with pytest.raises(ValueError, match="flash3"):
        model.set_attention_backend("flash3")


def test_bad_shapes_raise(tmp_path):
    model = tiny()
    x, t, y = inputs(model)
    with pytest.raises(ValueError, match="t must be"):
        model.velocity(x, t[:, :2], y)
    with pytest.raises(ValueError, match="x_t must be"):
        model.velocity(x[:, :5], t, y)


def test_save_load_round_trip(tmp_path):
    model = tiny("subsample")
    x, t, y = inputs(model)
    model.save_pretrained(tmp_path)
    loaded = XAR.from_pretrained(tmp_path)
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.velocity(x, t, y), model.velocity(x, t, y))
