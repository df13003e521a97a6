"""ToMe on tiny random diffusers SD / SDXL pipelines built from configs (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from pipelines.sd.clip_tokenizer import CLIP_VOCAB_SIZE, offline_clip_tokenizer
from pipelines.tome.merge import merge_tokens, single_token_prompts, substitute_end_tokens
from pipelines.tome.parser import TokenGroup, parse_prompt
from pipelines.tome.pipeline import ToMeStableDiffusionPipeline, ToMeStableDiffusionXLPipeline

PROMPT = "a red circle and a blue square"
LENGTH = 12


def _text_config(hidden: int, **extra) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_attention_heads=2, num_hidden_layers=2, max_position_embeddings=LENGTH,
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **extra)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(block_out_channels=(4, 8), norm_num_groups=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _scheduler() -> DDIMScheduler:
    return DDIMScheduler(steps_offset=1, clip_sample=False)


def _tome(pipe, cls=ToMeStableDiffusionPipeline):
    tome = cls.from_pipe(pipe)
    tome.set_progress_bar_config(disable=True)
    return tome


def tiny_sd_pipeline() -> StableDiffusionPipeline:
    """A random SD pipeline (16 px images, 8 x 8 latents) with the offline CLIP tokenizer."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=CLIPTextModel(_text_config(8)),
                                   tokenizer=offline_clip_tokenizer(LENGTH), unet=unet,
                                   scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd_pipe() -> StableDiffusionPipeline:
    return tiny_sd_pipeline()


def _run(pipe, **kwargs):
    return pipe(PROMPT, num_inference_steps=3, output_type="np", generator=torch.Generator().manual_seed(3),
                **kwargs).images


def test_composite_token_math_is_exact():
    embeds = torch.randn(2, 8, 5)
    group = TokenGroup(noun=(4, 5), attributes=(2, 3), phrase="a b c d", noun_text="d")
    merged = merge_tokens(embeds, [group])
    expected = 1.1 * (embeds[:, 4] + embeds[:, 5]) + 1.2 * (embeds[:, 2] + embeds[:, 3])
    torch.testing.assert_close(merged[:, 4], expected, rtol=0, atol=0)
    assert merged[:, [2, 3, 5]].abs().sum() == 0
    torch.testing.assert_close(merged[:, [0, 1, 6, 7]], embeds[:, [0, 1, 6, 7]], rtol=0, atol=0)
    alone = single_token_prompts(merged, [4, 1])
    assert alone.shape == (4, 8, 5)
    torch.testing.assert_close(alone[1, 1], merged[0, 1], rtol=0, atol=0)
    assert alone[1, 2:].abs().sum() == 0 and alone[0, [1, 2, 3, 5, 6, 7]].abs().sum() == 0
    swapped = substitute_end_tokens(embeds, 5, embeds.flip(0), 3)
    torch.testing.assert_close(swapped[:, 5:], embeds.flip(0)[:, 3:6], rtol=0, atol=0)


def test_token_merge_false_equals_plain_pipeline(sd_pipe):
    tome = _tome(sd_pipe)
    plain = _run(sd_pipe)
    assert (_run(tome, token_merge=False) == plain).all()
    merged = _run(tome, tome_control_steps=(2, 2), attention_refinement_steps=2, token_refinement_steps=1)
    assert merged.shape == plain.shape and bool((merged != plain).any())
    assert bool(torch.isfinite(torch.from_numpy(merged)).all())


def _conditioning_per_call(pipe, **kwargs) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda module, args, kw: seen.append(kw["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        pipe(PROMPT, num_inference_steps=4, guidance_scale=1.0, output_type="latent",
             generator=torch.Generator().manual_seed(0), tome_control_steps=(0, 0), **kwargs)
    finally:
        hook.remove()
    return seen


def test_end_tokens_are_substituted_at_the_step(sd_pipe):
    tome = _tome(sd_pipe)
    parsed = parse_prompt(PROMPT, tome.tokenizer)
    with torch.no_grad():
        original, cleaned = tome.encode_prompt([PROMPT, parsed.cleaned_prompt], "cpu", 1, False)[0]
    eot, clean_eot = parsed.num_tokens - 1, len(tome.tokenizer(parsed.cleaned_prompt).input_ids) - 1
    seen = _conditioning_per_call(tome, eot_replace_step=2)
    assert len(seen) == 4
    take = LENGTH - eot
    for step, embeds in enumerate(seen):
        expected = original[eot:] if step < 2 else cleaned[clean_eot : clean_eot + take]
        torch.testing.assert_close(embeds[0, eot:], expected)
        # Composite tokens: attributes zeroed, noun merged (no refinement in this run).
        assert embeds[0, [2, 6]].abs().sum() == 0
        torch.testing.assert_close(embeds[0, 3], 1.1 * original[3] + 1.2 * original[2])


def test_explicit_groups_merge_only_those(sd_pipe):
    tome = _tome(sd_pipe)
    seen = _conditioning_per_call(tome, token_merge=["blue square"], eot_replace_step=-1)
    assert seen[0][0, 6].abs().sum() == 0 and seen[0][0, 2].abs().sum() > 0
    with pytest.raises(ValueError, match="not a phrase"):
        _conditioning_per_call(tome, token_merge=["green square"])


def test_sdxl_pipeline_runs_with_tome():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, cross_attention_dim=16, norm_num_groups=2,
                                attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
                                addition_embed_type="text_time", addition_time_embed_dim=4,
                                projection_class_embeddings_input_dim=8 + 6 * 4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    pipe = StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(8)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(8, projection_dim=8)),
        tokenizer=offline_clip_tokenizer(LENGTH), tokenizer_2=offline_clip_tokenizer(LENGTH), unet=unet,
        scheduler=_scheduler())
    pipe.set_progress_bar_config(disable=True)
    tome = _tome(pipe, ToMeStableDiffusionXLPipeline)
    plain = _run(pipe)
    assert (_run(tome, token_merge=False) == plain).all()
    merged = _run(tome, tome_control_steps=(1, 2), attention_refinement_steps=1, token_refinement_steps=1)
    assert merged.shape == plain.shape and bool((merged != plain).any())
