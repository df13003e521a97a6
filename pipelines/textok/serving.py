"""Caption checks shared by the TexTok image job kinds (loading: :class:`pipelines.base.TokenizerPipeline`)."""

from __future__ import annotations

from pipelines.base import InputError, TokenizerPipeline
from tokenizers_media.image.textok import TexTok
from tokenizers_media.text.encoders import TextEmbedding

MAX_CAPTION_CHARS = 2000


class TexTokPipeline(TokenizerPipeline[TexTok]):
    """Base of the TexTok ``image.*`` pipelines: holds a loaded TexTok in eval mode."""

    model_class = TexTok

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
