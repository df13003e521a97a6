"""GroupDiffusionPipeline with tiny random components (learned caption encoder, untrained VAE)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PixArtTransformer2DModel

from pipelines.gdt.evaluate import consistency_case, measure
from pipelines.gdt.pipeline import GroupDiffusionConfig, GroupDiffusionPipeline
from tokenizers_media.modeling import load_pretrained
from tokenizers_media.text.encoders import build_text_encoder

PROMPTS = ["a red circle at the top left", "a blue circle", "a green circle", "a circle at the bottom"]


@pytest.fixture(scope="module")
def pipe() -> GroupDiffusionPipeline:
    torch.manual_seed(0)
    config = GroupDiffusionConfig(image_size=32, group_size=2, text_encoder="learned", max_tokens=16,
                                  num_inference_steps=3, guidance_scale=2.0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), norm_num_groups=4, latent_channels=4, sample_size=32)
    transformer = PixArtTransformer2DModel(sample_size=16, num_layers=2, patch_size=4, attention_head_dim=8,
                                           num_attention_heads=2, caption_channels=16, in_channels=4,
                                           out_channels=4, cross_attention_dim=16, norm_type="ada_norm_single")
    text = build_text_encoder("learned", 16, 16)
    return GroupDiffusionPipeline(transformer, vae, DDIMScheduler(), text, config).to("cpu")


def test_output_count_shape_and_range(pipe):
    calls = []
    out = pipe(PROMPTS, callback=lambda frac, msg: calls.append(frac)).images
    assert out.shape == (4, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    assert calls == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_reference_kept_at_its_index_and_seeded_runs_repeat(pipe):
    ref = torch.rand(3, 32, 32)
    def run(seed):
        return pipe(PROMPTS, reference_images={2: ref}, generator=torch.Generator().manual_seed(seed)).images
    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[2], ref)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], c[0])


def test_reference_conditions_only_its_own_group(pipe):
    def run(ref):
        return pipe(PROMPTS, reference_images={0: ref}, generator=torch.Generator().manual_seed(0)).images
    a, b = run(torch.zeros(3, 32, 32)), run(torch.ones(3, 32, 32))
    assert not torch.allclose(a[1], b[1], atol=1e-4)  # same group as the reference
    torch.testing.assert_close(a[2:], b[2:])  # the other group never sees it


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = GroupDiffusionPipeline.from_pretrained(tmp_path)
    def seeded(p):
        return p(PROMPTS[:2], generator=torch.Generator().manual_seed(3)).images
    torch.testing.assert_close(seeded(loaded), seeded(pipe))


def test_same_image_bias_saved_and_loaded(pipe, tmp_path):
    config = dataclasses.replace(pipe.config, same_image_bias=True)
    biased = GroupDiffusionPipeline(copy.deepcopy(pipe.transformer), pipe.vae, pipe.scheduler,
                                    copy.deepcopy(pipe.text_encoder), config)
    with torch.no_grad():
        biased.group_bias.values.normal_(0, 2)
    biased.save_pretrained(tmp_path)
    loaded = GroupDiffusionPipeline.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.group_bias.values, biased.group_bias.values)
    def seeded(p):
        return p(PROMPTS[:2], generator=torch.Generator().manual_seed(3)).images
    torch.testing.assert_close(seeded(loaded), seeded(biased))
    assert not torch.allclose(seeded(biased), seeded(pipe), atol=1e-4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prompts": PROMPTS[:3]}, "whole groups"),
    ({"prompts": PROMPTS, "reference_images": {4: torch.rand(3, 32, 32)}}, "outside"),
    ({"prompts": PROMPTS, "reference_images": {0: torch.rand(3, 16, 16)}}, r"\(3, 32, 32\)"),
    ({"prompts": PROMPTS, "guidance_scale": 0.5}, "guidance_scale"),
    ({"prompts": PROMPTS, "num_inference_steps": 0}, "num_inference_steps"),
])
def test_bad_inputs_raise_before_any_compute(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


def test_generate_group_job_kind(pipe, tmp_path):
    from pipelines.base import InputError, Request
    from pipelines.gdt.image_generate_group import GenerateGroupParams, GenerateGroupPipeline
    from pipelines.media import Image
    from pipelines.registry import get_pipeline_class

    assert get_pipeline_class("image.generate_group", "GroupDiffusionPipeline") is GenerateGroupPipeline
    pipe.save_pretrained(tmp_path)
    job = GenerateGroupPipeline.load(tmp_path)
    reference = torch.rand(3, 48, 40)  # centre-cropped and resized to 32 px
    params = GenerateGroupParams(prompts=PROMPTS, reference_index=1, group_size=2, num_inference_steps=2, seed=5)
    seen = []
    (result,) = job.run([Request({"reference": Image(reference)}, params)], lambda f, m: seen.append(f))
    assert sorted(result) == ["image_000", "image_001", "image_002", "image_003"]
    assert all(v.pixels.shape == (3, 32, 32) for v in result.values())
    assert seen[-1] == 1.0
    with pytest.raises(ValueError, match="reference_index"):
        GenerateGroupParams(prompts=PROMPTS, reference_index=4)
    with pytest.raises(ValueError, match="whole groups"):
        GenerateGroupParams(prompts=PROMPTS[:3], group_size=2)
    with pytest.raises(InputError, match="reference"):
        job.check_request(Request({}, params))


@pytest.mark.parametrize("with_reference", [True, False])
def test_consistency_measure_counts_the_generated_images(pipe, with_reference):
    judge = load_pretrained("pipelines/weights/shapes-classifier")
    case = consistency_case("colour", groups=3, group_size=2)
    result = measure(pipe, judge, case, "colour", 2, with_reference=with_reference, num_inference_steps=2)
    assert result["images"] == 3  # one generated image per group of 2
    assert 0.0 <= result["consistency"] <= 1.0 and 0.0 <= result["adherence"] <= 1.0


def test_old_param_names_still_work_for_one_release():
    from pipelines.gdt.image_generate_group import GenerateGroupParams

    with pytest.warns(DeprecationWarning, match="'steps' is deprecated.*'num_inference_steps'"):
        params = GenerateGroupParams.model_validate({"prompts": PROMPTS, "steps": 2, "guidance": 1.5})
    assert (params.num_inference_steps, params.guidance_scale) == (2, 1.5)
    with pytest.raises(ValueError, match="pass 'num_inference_steps' only"):
        GenerateGroupParams.model_validate({"prompts": PROMPTS, "steps": 2, "num_inference_steps": 2})
    schema = GenerateGroupParams.model_json_schema()["properties"]
    assert {"num_inference_steps", "guidance_scale", "seed"} <= set(schema) and not {"steps", "guidance"} & set(schema)
