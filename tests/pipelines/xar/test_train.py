"""xAR training: NCL and teacher-forcing losses, a few steps move the loss, resume continues the run."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.training.vae import PRESETS as VAE_PRESETS
from pipelines.training.vae import build_vae
from pipelines.xar.model import XAR
from pipelines.xar.train import XARTrainConfig, flow_matching_loss, sample_times, train_xar

pytestmark = pytest.mark.usefixtures("one_thread")


def test_teacher_forcing_supervises_one_entity_with_clean_context():
    model = XAR.from_preset("tiny")
    t, weight = sample_times(model, 64, noisy_context=False, generator=torch.Generator().manual_seed(0))
    per_entity = weight.unflatten(1, (4, 16))[..., 0]  # (B, E)
    assert torch.equal(per_entity.sum(1), torch.ones(64))
    target = per_entity.argmax(1)
    for b in range(64):
        assert (t[b, : target[b]] == 0).all() and (t[b, target[b] + 1 :] == 1).all()
    t_ncl, w_ncl = sample_times(model, 64, noisy_context=True, generator=torch.Generator().manual_seed(0))
    assert (w_ncl == 1).all() and ((t_ncl > 0) & (t_ncl < 1)).all() and t_ncl.std() > 0.1


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = XAR.from_preset("tiny")
    tokens = torch.randn(8, 64, 16) * 0.5 + torch.linspace(-1, 1, 16)
    labels = torch.arange(8)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return flow_matching_loss(model, tokens, labels, True, torch.Generator().manual_seed(1))

    first = loss().item()
    for _ in range(15):
        optim.zero_grad()
        loss().backward()
        optim.step()
    assert loss().item() < 0.8 * first


@pytest.mark.slow
def test_train_saves_and_resumes(tmp_path):
    torch.manual_seed(0)
    vae = build_vae(VAE_PRESETS["xar"])
    vae.save_pretrained(tmp_path / "vae")
    config = XARTrainConfig(steps=2, batch_size=4, checkpoint_every=1, warmup_steps=1, dataset_size=8)
    info = train_xar(config, tmp_path / "run", vae_dir=tmp_path / "vae", show_progress=False)
    assert info["step"] == 2 and (tmp_path / "run" / "vae" / "config.json").is_file()
    model = XAR.from_pretrained(tmp_path / "run")
    assert model.config.class_names[0] == "red circle"
    longer = XARTrainConfig(steps=3, batch_size=4, checkpoint_every=1, warmup_steps=1, dataset_size=8)
    with pytest.raises(FileExistsError, match="not empty"):
        train_xar(longer, tmp_path / "run", vae_dir=tmp_path / "vae", show_progress=False)
    assert train_xar(longer, tmp_path / "run", vae_dir=tmp_path / "vae", show_progress=False, resume=True)["step"] == 3
    assert not torch.equal(XAR.from_pretrained(tmp_path / "run").z_proj.weight, model.z_proj.weight)
    other = XARTrainConfig(steps=4, batch_size=4, checkpoint_every=1, warmup_steps=1, dataset_size=8, lr=1e-3)
    train_xar(other, tmp_path / "run", vae_dir=tmp_path / "vae", show_progress=False, resume=True)
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (saved["steps"], saved["lr"]) == (4, longer.lr)  # a resume keeps the run's recipe, extends its steps
