"""The TexTok training loop: outputs, resuming from its checkpoint, and config-change protection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.textok.train import TexTokTrainConfig, train_textok
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME
from tokenizers_media.image.textok import TexTok

pytestmark = pytest.mark.usefixtures("one_thread")

def _config(steps: int, **changes) -> TexTokTrainConfig:
    base = dict(text_encoder="learned", steps=steps, batch_size=4, pool_size=8, eval_images=4, warmup_steps=1,
                sample_every=2, checkpoint_every=2)
    return TexTokTrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_train_writes_outputs_and_resumes(tmp_path: Path) -> None:
    metrics = train_textok(_config(2), tmp_path, show_progress=False)
    assert {"psnr", "ssim"} <= set(metrics) and metrics["steps"] == 2
    assert (tmp_path / "samples_000002.png").is_file() and (tmp_path / "metrics.json").is_file()
    model = TexTok.from_pretrained(tmp_path / "model")
    assert model.config.text_encoder == "learned" and model.config.num_latent_tokens == 32
    before = Checkpoint.load(tmp_path / CHECKPOINT_NAME).model
    with pytest.raises(FileExistsError, match="not empty"):  # never a silent overwrite
        train_textok(_config(3), tmp_path, show_progress=False)
    train_textok(_config(3), tmp_path, show_progress=False, resume=True)  # resumes at step 2, runs one more
    after = Checkpoint.load(tmp_path / CHECKPOINT_NAME)
    assert after.step == 3 and after.config["steps"] == 3
    assert not torch.equal(before["patch_embed.weight"], after.model["patch_embed.weight"])


def test_text_dropout_hides_whole_captions_of_about_that_share() -> None:
    from pipelines.textok.train import _drop_captions

    model = TexTok.from_preset("tiny", text_encoder="learned", text_dim=32)
    text = model.embed_text(["a red circle at the top left"] * 400)
    dropped = _drop_captions(model, text, 0.5, torch.Generator().manual_seed(0))
    hidden = ~dropped.mask.any(dim=1)
    assert torch.equal(dropped.mask[~hidden], text.mask[~hidden])  # the others keep every token
    assert 150 < int(hidden.sum()) < 250
    with pytest.raises(ValueError, match="text_dropout"):
        _config(1, text_dropout=1.0)


def test_caption_style_is_validated_and_reaches_the_model_config() -> None:
    with pytest.raises(ValueError, match="caption_style"):
        _config(1, caption_style="poetic")
    model = TexTok.from_preset("tiny", **_config(1, caption_style="exact").model_overrides())
    assert model.config.caption_style == "exact"
    with pytest.raises(ValueError, match="caption_style"):
        TexTok.from_preset("tiny", caption_style="poetic")


def test_init_loads_a_trained_model_and_adds_fresh_text_projections(tmp_path: Path) -> None:
    from pipelines.textok.train import _initial_model

    torch.manual_seed(0)
    source = TexTok.from_preset("tiny", num_latent_tokens=32, text_conditioning=False)
    source.save_pretrained(tmp_path / "no_text")
    model = _initial_model(_config(1, init=str(tmp_path / "no_text")))
    assert model.config.text_conditioning and hasattr(model, "decoder_text")
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    with pytest.raises(ValueError, match="does not fit"):
        _initial_model(_config(1, init=str(tmp_path / "no_text"), num_latent_tokens=64))
    with pytest.raises(ValueError, match="does not fit"):
        _initial_model(_config(1, init=str(tmp_path / "no_text"), bottleneck="vq"))
