"""Pieces of `mediaforge train sd`: component sizes, captions, decoder-only fine-tuning."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.data.shapes import ShapesWorld
from pipelines.sd.train import (
    PRESETS,
    SDTrainConfig,
    build_text_encoder,
    build_unet,
    build_vae,
    finetune_vae_decoder,
    save_pipeline,
    short_caption,
    training_captions,
)


def test_tiny_components_fit_together():
    preset = PRESETS["tiny"]
    vae, unet, text = build_vae(preset), build_unet(preset), build_text_encoder(preset)
    latent = preset.image_size // 2 ** (len(preset.vae_channels) - 1)
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
        vae = build_vae(PRESETS["tiny"])
        encoder = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
        decoder = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
        saved = []
        done = finetune_vae_decoder(vae, ShapesWorld(32), steps=2, batch_size=2, on_save=saved.append, save_every=1)
    finally:
        torch.set_num_threads(before)
    assert done == 2 and len(saved) == 2
    assert all(torch.equal(v, encoder[k]) for k, v in vae.encoder.state_dict().items())
    assert any(not torch.equal(v, decoder[k]) for k, v in vae.decoder.state_dict().items())


def test_saving_keeps_hand_added_config_entries_and_updates_the_rest(tmp_path):
    import json

    preset = PRESETS["tiny"]
    parts = build_vae(preset), build_text_encoder(preset), build_unet(preset)
    save_pipeline(tmp_path, *parts, {"unet_steps_done": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tome": {"attention_layers": ["a.attn2"]}}))
    save_pipeline(tmp_path, *parts, {"unet_steps_done": 2})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tome"] == {"attention_layers": ["a.attn2"]} and config["unet_steps_done"] == 2
