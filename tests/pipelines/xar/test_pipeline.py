"""xAR sampling: seeds, both samplers, KV cache == naive prefix recompute, guidance ramp, input checks."""

from __future__ import annotations

import pytest
import torch

from pipelines.xar.model import XAR
from pipelines.xar.pipeline import XARPipeline
from pipelines.xar.sampler import guidance_ramp, sampling_times

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe() -> XARPipeline:
    torch.manual_seed(0)
    model = XAR.from_preset("tiny")
    for block in [*model.encoder_blocks, *model.decoder_blocks]:
        torch.nn.init.normal_(block.ada_lin[1].weight, std=0.02)
    return XARPipeline(model, class_names=[f"class{i}" for i in range(40)])


def run(pipe, seed=0, **kw):
    return pipe([1, "class5"], num_inference_steps=3, generator=torch.Generator().manual_seed(seed), **kw)


def test_sde_times_end_with_a_mean_step():
    times = sampling_times(40, "sde")
    assert times[0] == 1.0 and abs(times[-2].item() - 0.04) < 1e-7 and times[-1] == 0.0 and len(times) == 41
    assert torch.equal(sampling_times(4, "ode"), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


def test_guidance_ramps_from_unguided_to_full():
    assert [guidance_ramp(e, 4, 2.5) for e in range(4)] == [1.0, 1.5, 2.0, 2.5]


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_seeded_and_shaped(pipe, sampler):
    a = run(pipe, sampler=sampler, guidance_scale=2.0)
    b = run(pipe, sampler=sampler, guidance_scale=2.0)
    c = run(pipe, seed=1, sampler=sampler, guidance_scale=2.0)
    assert a.latents.shape == (2, 16, 8, 8) and a.images is None
    assert torch.equal(a.latents, b.latents) and not torch.allclose(a.latents, c.latents)
    assert torch.isfinite(a.latents).all()


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_kv_cache_matches_naive_prefix_recompute(pipe, guidance_scale):
    cached = run(pipe, guidance_scale=guidance_scale)
    naive = run(pipe, guidance_scale=guidance_scale, use_kv_cache=False)
    assert torch.allclose(cached.latents, naive.latents, atol=1e-4)


def test_guidance_changes_the_output(pipe):
    assert not torch.allclose(run(pipe).latents, run(pipe, guidance_scale=4.0).latents, atol=1e-3)


def test_callback_sees_every_step_and_can_stop(pipe):
    seen = []
    run(pipe, callback=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 12) for i in range(1, 13)]

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        run(pipe, callback=stop)


def test_decodes_with_a_vae(pipe):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, latent_channels=16, norm_num_groups=4)
    out = XARPipeline(pipe.model, vae)([0], num_inference_steps=1)
    assert out.images.shape == (1, 3, 16, 16) and 0 <= out.images.min() and out.images.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"class_labels": [40]}, r"\[0, 40\)"), ({"class_labels": ["dragon"]}, "dragon"),
     ({"class_labels": [0], "guidance_scale": 0.5}, "guidance_scale"),
     ({"class_labels": [0], "sampler": "heun"}, "heun"), ({"class_labels": [0], "num_inference_steps": 0}, "steps")],
)
def test_bad_inputs_are_named(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)
