"""Loading shared by the WavTokenizer job kinds: the model, its zoo name and a weights fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Self

import torch

from pipelines.base import Pipeline
from tokenizers_media.audio.wavtokenizer import WavTokenizer


def model_fingerprint(model_dir: Path) -> str:
    """Short hash of the weights file: token files carry it so they are never decoded by another model."""
    digest = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


class WavTokenizerPipeline(Pipeline):
    """Base of the audio.* pipelines: holds a loaded WavTokenizer in eval mode."""

    def __init__(self, model: WavTokenizer, name: str, fingerprint: str) -> None:
        self.model, self.name, self.fingerprint = model, name, fingerprint
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        return cls(WavTokenizer.from_pretrained(model_dir, device=device), model_dir.name,
                   model_fingerprint(model_dir))
