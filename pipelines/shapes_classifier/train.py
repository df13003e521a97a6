"""Train the shapes-world classifier (``mediaforge train shapes-classifier``) and write its model card.

Data: shapes world at 64 px, 1..4 objects per image, drawn on the fly from the ``train`` split; the held-out
numbers in the card come from the ``eval`` split, which training never sees.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.data.shapes import NUM_CLASSES, ShapesWorld
from pipelines.shapes_classifier.model import ShapesClassifier, accuracy
from pipelines.training.progress import TrainProgress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    image_size: int = 64
    max_objects: int = 4
    eval_images: int = 2000
    seed: int = 0


def train_shapes_classifier(config: ClassifierTrainConfig, out_dir: Path, *, resume: bool = False,
                            show_progress: bool = True, command: str = "") -> dict[str, float]:
    """Train, evaluate on the held-out split, save the model directory with a README; returns the metrics.

    A run keeps no checkpoint (minutes on a CPU), so ``resume`` is refused rather than silently ignored."""
    if resume:
        raise ValueError("shapes-classifier runs keep no checkpoint: nothing to resume, start over instead")
    torch.manual_seed(config.seed)
    world = ShapesWorld(config.image_size, min_objects=1, max_objects=config.max_objects)
    model = ShapesClassifier.from_preset("tiny", image_size=config.image_size)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=config.lr, total_steps=config.steps)
    start = time.perf_counter()
    model.train()
    with TrainProgress("shapes-classifier", config.steps, enabled=show_progress) as bar:
        for step, batch in zip(range(config.steps), world.iterate("train", config.batch_size), strict=False):
            loss, parts = model.loss(batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            bar.update(step + 1, {"loss": loss.item()})
            if step % 100 == 0:
                logger.info("step %d loss %.4f %s", step, loss.item(), parts)
    wall = time.perf_counter() - start
    model.eval()
    metrics = evaluate(model, config.eval_images)
    model.save_pretrained(out_dir)
    (Path(out_dir) / "README.md").write_text(_model_card(config, metrics, wall, command))
    return metrics


def evaluate(model: ShapesClassifier, images: int) -> dict[str, float]:
    """Held-out accuracy on the eval split: mixed 1..max-object scenes and class-conditional singles."""
    size = model.config.image_size
    mixed = ShapesWorld(size, min_objects=1, max_objects=4).batch("eval", 0, images)
    ids = [i % NUM_CLASSES for i in range(images)]
    single = ShapesWorld(size).batch("eval", 1, images, class_ids=ids)
    mixed_acc, single_acc = accuracy(model, mixed), accuracy(model, single)
    return {"set_accuracy_1to4": mixed_acc["set"], "count_accuracy_1to4": mixed_acc["count"],
            "class_top1_single": single_acc["top1_single"]}


def _model_card(config: ClassifierTrainConfig, metrics: dict[str, float], wall: float, command: str) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    return f"""# shapes-classifier

A small CNN (`pipelines/shapes_classifier/model.py`) reading shapes-world images: multi-label presence of the
{NUM_CLASSES} shape x colour classes and the object count. Its pooled features define the **proxy** Frechet
distance used by this repo (proxy FID, pscore); those numbers are not comparable with Inception FID.

- Command: `{command or 'mediaforge train shapes-classifier'}`
- Data: shapes world, {config.image_size} px, 1..{config.max_objects} objects, `train` split, drawn on the fly
- Steps: {config.steps} x batch {config.batch_size} (AdamW, one-cycle LR {config.lr}), seed {config.seed}
- Wall time: {wall:.0f} s on CPU (1 thread)

## Held-out accuracy (`eval` split, {config.eval_images} images each)

| metric | value |
|---|---|
{rows}

`set_accuracy_1to4`: the predicted set of classes (logit > log 8, see `accuracy`) equals the true set
exactly, on 1..4-object scenes. `count_accuracy_1to4`: exact object count. `class_top1_single`: argmax
class on single-object class-conditional images (all {NUM_CLASSES} classes equally often).
"""
