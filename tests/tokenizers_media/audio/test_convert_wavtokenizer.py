"""Converting official WavTokenizer checkpoints: key selection, variant inference, strict errors, YAML check."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.tokenizers_media.audio.wavtokenizer_golden import load_extra_layout, load_layout, write_lightning_checkpoint
from tokenizers_media.audio.convert_wavtokenizer import convert_wavtokenizer, infer_config
from tokenizers_media.audio.wavtokenizer import WavTokenizer


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = WavTokenizer.from_preset("tiny", kmeans_iters=2).train()
    model(0.1 * torch.randn(2, 8000))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("variant", ["75", "40"])
def test_variant_follows_from_the_official_shapes(variant):
    layout = {k: torch.zeros(()).expand(s) for k, s in load_layout(variant).items()}  # shapes only
    config = infer_config(layout)
    assert config == WavTokenizer.preset_config(f"paper-{variant}")


def test_lightning_checkpoint_converts_and_ignores_training_keys(tiny_state, tmp_path):
    unused = {"feature_extractor.encodec.decoder.model.0.conv.conv.weight_g": torch.ones(32, 1, 1)}
    ckpt = write_lightning_checkpoint({**tiny_state, **unused}, tmp_path / "model.ckpt", load_extra_layout())
    model = WavTokenizer.from_pretrained(convert_wavtokenizer(ckpt, tmp_path / "out"))
    assert model.config == WavTokenizer.preset_config("tiny")
    for key, value in tiny_state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_bare_state_dict_converts(tiny_state, tmp_path):
    torch.save(tiny_state, tmp_path / "bare.pt")
    model = WavTokenizer.from_pretrained(convert_wavtokenizer(tmp_path / "bare.pt", tmp_path / "out"))
    wav = 0.1 * torch.randn(1, 4000)
    reference = WavTokenizer(model.config)
    reference.load_state_dict(tiny_state)
    assert torch.equal(model.encode(wav), reference.eval().encode(wav))


@pytest.mark.parametrize(("change", "named"), [
    ("drop", "head.out.bias"),
    ("add", "backbone.extra.weight"),
    ("reshape", "backbone.final_layer_norm.weight"),
])
def test_strict_load_errors_name_the_bad_key(tiny_state, tmp_path, change, named):
    state = dict(tiny_state)
    if change == "drop":
        del state[named]
    elif change == "add":
        state[named] = torch.zeros(3)
    else:
        state[named] = torch.zeros(7)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        convert_wavtokenizer(tmp_path / "bad.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_yaml_config_is_cross_checked(tiny_state, tmp_path):
    torch.save(tiny_state, tmp_path / "bare.pt")
    official = {"model": {"init_args": {
        "sample_rate": 24000,
        "feature_extractor": {"init_args": {"dowmsamples": [8, 5, 4, 2], "vq_bins": 4096, "num_quantizers": 1}},
        "head": {"init_args": {"n_fft": 1280, "hop_length": 320, "padding": "same"}},
    }}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(official))
    convert_wavtokenizer(tmp_path / "bare.pt", tmp_path / "out", tmp_path / "ok.yaml")
    official["model"]["init_args"]["head"]["init_args"]["n_fft"] = 2400
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(official))
    with pytest.raises(ValueError, match="head.n_fft: YAML says 2400, weights say 1280"):
        convert_wavtokenizer(tmp_path / "bare.pt", tmp_path / "out2", tmp_path / "bad.yaml")


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        convert_wavtokenizer(tmp_path / "junk.ckpt", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        convert_wavtokenizer(tmp_path / "missing.ckpt", tmp_path / "out")
