"""Loading and caption checks shared by the TexTok image job kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import torch

from pipelines.base import InputError, Pipeline
from pipelines.wavtokenizer.serving import model_fingerprint
from tokenizers_media.image.textok import TexTok
from tokenizers_media.text.encoders import TextEmbedding

MAX_CAPTION_CHARS = 2000


class TexTokPipeline(Pipeline):
    """Base of the TexTok ``image.*`` pipelines: holds a loaded TexTok in eval mode."""

    def __init__(self, model: TexTok, name: str, fingerprint: str) -> None:
        self.model, self.name, self.fingerprint = model, name, fingerprint
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        return cls(TexTok.from_pretrained(model_dir, device=device), model_dir.name, model_fingerprint(model_dir))

    def embed_captions(self, captions: list[str]) -> TextEmbedding | None:
        """Captions -> text embedding (None for a no-text model); empty or too-long ones are InputErrors."""
        if not self.model.config.text_conditioning:
            return None
        for caption in captions:
            if not caption or not caption.strip():
                raise InputError("TexTok needs a non-empty 'caption' describing the image")
            if len(caption) > MAX_CAPTION_CHARS:
                raise InputError(f"caption has {len(caption)} characters; at most {MAX_CAPTION_CHARS}")
        try:
            return self.model.embed_text(captions)
        except ValueError as err:  # the text encoder names the token limit
            raise InputError(f"caption rejected: {err}") from err
