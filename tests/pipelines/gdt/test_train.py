"""`mediaforge train gdt` on the training harness: the VAE phase, the saved pipeline, the resume rule."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.gdt.pipeline import GroupDiffusionPipeline
from pipelines.gdt.train import GDTTrainConfig, train_gdt
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME
from pipelines.training.vae import VAE_RUN

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(steps: int) -> GDTTrainConfig:
    # A warm-up past the last step: the rate at each step does not depend on the step budget, so a 2-step run
    # resumed to 3 steps must end where a 3-step run does.
    return GDTTrainConfig(steps=steps, groups_per_step=1, group_size=2, warmup=3, vae_steps=2, save_every=1,
                          same_image_bias=True)


@pytest.mark.slow
def test_a_run_trains_its_vae_saves_a_pipeline_and_resumes_as_if_never_stopped(tmp_path):
    info = train_gdt(_config(2), tmp_path / "run", show_progress=False, command="test")
    assert (info["step"], info["command"]) == (2, "test")
    assert Checkpoint.load(tmp_path / "run" / VAE_RUN / CHECKPOINT_NAME).step == 2
    pipe = GroupDiffusionPipeline.from_pretrained(tmp_path / "run")
    assert pipe.group_bias is not None and pipe.config.group_size == 2
    vae = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    with pytest.raises(FileExistsError, match="not empty"):
        train_gdt(_config(3), tmp_path / "run", show_progress=False)

    assert train_gdt(_config(3), tmp_path / "run", resume=True, show_progress=False)["step"] == 3
    saved = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert saved["step"] == 3 and saved["config"]["steps"] == 3
    resumed = GroupDiffusionPipeline.from_pretrained(tmp_path / "run")
    assert all(torch.equal(v, vae[k]) for k, v in resumed.vae.state_dict().items())  # the VAE phase is done

    train_gdt(_config(3), tmp_path / "straight", show_progress=False, vae_dir=tmp_path / "run" / VAE_RUN)
    with pytest.raises(ValueError, match="resume it with vae_dir=None"):  # the run trained its own VAE
        train_gdt(_config(4), tmp_path / "run", resume=True, show_progress=False, vae_dir=tmp_path / "run" / VAE_RUN)
    a, b = (Checkpoint.load(tmp_path / d / CHECKPOINT_NAME) for d in ("straight", "run"))
    assert a.step == b.step == 3 and all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert all(int(s["step"]) == 3 for s in b.optimizer["state"].values())


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME):
        train_gdt(_config(1), tmp_path / "nothing", resume=True, show_progress=False)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_drop_shared_must_be_a_probability(share):
    with pytest.raises(ValueError, match=rf"drop_shared is a probability in \[0, 1\], got {share}"):
        GDTTrainConfig(drop_shared=share)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_drop_shared_takes_both_ends(share):
    assert GDTTrainConfig(drop_shared=share).drop_shared == share
