"""The shapes-world classifier: targets, shapes of outputs, a few steps learn, and the shipped weights."""

from __future__ import annotations

import pytest
import torch

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld
from pipelines.shapes_classifier.model import ShapesClassifier, accuracy, presence_targets
from pipelines.zoo import WEIGHTS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

def test_presence_targets_mark_exactly_the_objects_present() -> None:
    batch = ShapesWorld(32, min_objects=1, max_objects=3).batch("train", 0, 8)
    targets = presence_targets(batch)
    for b, scene in enumerate(batch.scenes):
        assert set(torch.nonzero(targets[b])[:, 0].tolist()) == {o.class_id for o in scene.objects}


def test_outputs_and_any_input_size() -> None:
    model = ShapesClassifier.from_preset("tiny").eval()
    pred = model(torch.rand(3, 3, 40, 40))
    assert pred.class_logits.shape == (3, NUM_CLASSES) and pred.count_logits.shape == (3, 7)
    assert model.features(torch.rand(5, 3, 64, 64), batch_size=2).shape == (5, 256)


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = ShapesClassifier.from_preset("tiny", image_size=32, widths=(8, 16, 32, 32))
    batch = ShapesWorld(32).batch("train", 0, 8)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(batch)[0].item()
    for _ in range(10):
        loss, _ = model.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert loss.item() < 0.8 * first


def test_shipped_classifier_reads_held_out_images() -> None:
    model = ShapesClassifier.from_pretrained(WEIGHTS_DIR / "shapes-classifier")
    ids = list(range(NUM_CLASSES))
    single = ShapesWorld(64).batch("eval", 9, NUM_CLASSES, class_ids=ids)
    assert accuracy(model, single)["top1_single"] > 0.9
