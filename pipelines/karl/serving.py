"""Loading shared by the KARL image job kinds: the model, its zoo name and a weights fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import torch

from pipelines.base import Pipeline
from pipelines.wavtokenizer.serving import model_fingerprint
from tokenizers_media.image.karl import KARL


class KARLPipeline(Pipeline):
    """Base of the KARL ``image.*`` pipelines: holds a loaded KARL in eval mode."""

    def __init__(self, model: KARL, name: str, fingerprint: str) -> None:
        self.model, self.name, self.fingerprint = model, name, fingerprint
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        return cls(KARL.from_pretrained(model_dir, device=device), model_dir.name, model_fingerprint(model_dir))
