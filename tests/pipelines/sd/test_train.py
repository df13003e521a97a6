"""`mediaforge train sd`: component sizes, captions, decoder-only fine-tuning (also in place through `train
sd-decoder`), a tiny run and its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from typer.testing import CliRunner

from api.cli import app
from pipelines.data.shapes import ShapesWorld
from pipelines.sd.train import (
    PRESETS,
    SDDecoderConfig,
    SDTrainConfig,
    build_text_encoder,
    build_unet,
    finetune_vae_decoder,
    save_pipeline,
    short_caption,
    train_sd,
    training_captions,
)
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME
from pipelines.training.vae import VAE_RUN, build_vae


def _parts(preset=PRESETS["tiny"]):
    """Untrained VAE, text encoder and UNet of a preset."""
    vae_config = SDTrainConfig().vae_config(preset)
    return build_vae(vae_config), build_text_encoder(preset), build_unet(preset, vae_config)


def test_tiny_components_fit_together():
    preset = PRESETS["tiny"]
    vae, text, unet = _parts(preset)
    latent = preset.image_size // 2 ** (len(vae.config.block_out_channels) - 1)
    assert unet.config.sample_size == latent and unet.config.in_channels == vae.config.latent_channels
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert text.config.vocab_size == 49408 and text.config.max_position_embeddings == preset.text_max_length


def test_captions_name_every_object_with_its_colour():
    scenes = ShapesWorld(32, 2, 3).batch("train", 0, 8).scenes
    rng = np.random.default_rng(0)
    for scene in scenes:
        text = short_caption(scene, rng)
        assert all(f"a {o.colour} {o.shape}" in text for o in scene.objects)
        assert text.count(" and ") == (len(scene.objects) > 1)
    captions = training_captions(scenes * 50, rng, SDTrainConfig())
    assert 0 < captions.count("") < len(captions) / 4
    assert any(" large " in c or " small " in c for c in captions)


def test_decoder_finetune_leaves_the_encoder_alone():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vae = _parts()[0]
        encoder = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
        decoder = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
        saved = []
        config = SDDecoderConfig(steps=2, batch_size=2, save_every=1)
        done = finetune_vae_decoder(vae, ShapesWorld(32), config, on_save=saved.append)
    finally:
        torch.set_num_threads(before)
    assert done == 2 and len(saved) == 2
    assert all(torch.equal(v, encoder[k]) for k, v in vae.encoder.state_dict().items())
    assert any(not torch.equal(v, decoder[k]) for k, v in vae.decoder.state_dict().items())


def test_the_decoder_config_keeps_the_clis_defaults_and_checks_its_values():
    assert SDDecoderConfig().steps == 2000  # what `train sd-decoder --steps` always defaulted to
    with pytest.raises(ValueError, match="save_every must be >= 1"):
        SDDecoderConfig(save_every=0)
    with pytest.raises(ValueError, match="max_minutes must be > 0"):
        SDDecoderConfig(max_minutes=0)


def test_sd_decoder_fine_tunes_an_existing_pipeline_in_place(tmp_path, one_thread):
    torch.manual_seed(0)
    save_pipeline(tmp_path, *_parts(), {"unet_steps_done": 0})
    before = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    result = CliRunner().invoke(app, ["train", "sd-decoder", "-p", str(tmp_path), "--steps", "2", "--batch-size",
                                      "2", "--set", "save_every=1"])
    assert result.exit_code == 0, result.output
    assert "decoder steps 2" in result.output
    after = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    assert all(torch.equal(v, before[k]) for k, v in after.items() if k.startswith("encoder."))
    assert any(not torch.equal(v, before[k]) for k, v in after.items() if k.startswith("decoder."))


def test_sd_decoder_needs_a_pipeline_folder(tmp_path):
    result = CliRunner().invoke(app, ["train", "sd-decoder", "-p", str(tmp_path)])
    assert result.exit_code == 2 and "no vae/config.json" in result.output


def test_saving_keeps_hand_added_config_entries_and_updates_the_rest(tmp_path):
    parts = _parts()
    save_pipeline(tmp_path, *parts, {"unet_steps_done": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tome": {"attention_layers": ["a.attn2"]}}))
    save_pipeline(tmp_path, *parts, {"unet_steps_done": 2})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tome"] == {"attention_layers": ["a.attn2"]} and config["unet_steps_done"] == 2


def _tiny_run(unet_steps: int, **overrides) -> SDTrainConfig:
    return SDTrainConfig(vae_steps=2, unet_steps=unet_steps, batch_size=2, save_every=1, **overrides)


@pytest.mark.slow
def test_a_tiny_run_saves_a_pipeline_and_resumes_as_if_never_stopped(tmp_path, one_thread):
    result = train_sd(_tiny_run(2), tmp_path / "run", show_progress=False)
    assert result["unet_steps"] == 2 and np.isfinite(result["final_loss"])
    assert Checkpoint.load(tmp_path / "run" / VAE_RUN / CHECKPOINT_NAME).step == 2
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "run")
    assert pipe.vae.config.scaling_factor > 0 and pipe.unet.config.in_channels == pipe.vae.config.latent_channels
    with pytest.raises(FileExistsError, match="not empty"):
        train_sd(_tiny_run(3), tmp_path / "run", show_progress=False)

    # The rate is constant, so 2 steps resumed to 3 must end where 3 steps straight do (lr: the saved one).
    assert train_sd(_tiny_run(3, lr=1.0), tmp_path / "run", resume=True, show_progress=False)["unet_steps"] == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["unet_steps_done"] == 3
    train_sd(_tiny_run(3), tmp_path / "straight", show_progress=False)
    a, b = (Checkpoint.load(tmp_path / d / CHECKPOINT_NAME) for d in ("straight", "run"))
    assert b.step == 3 and all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert all(torch.equal(x, y) for x, y in zip(a.extra["ema_unet"]["shadow_params"],
                                                 b.extra["ema_unet"]["shadow_params"], strict=True))
    assert all(int(s["step"]) == 3 for s in b.optimizer["state"].values())
