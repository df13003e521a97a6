"""What the WavTokenizer job kinds share: the loaded model (see :class:`pipelines.base.TokenizerPipeline`)."""

from __future__ import annotations

from pipelines.base import TokenizerPipeline
from tokenizers_media.audio.wavtokenizer import WavTokenizer


class WavTokenizerPipeline(TokenizerPipeline[WavTokenizer]):
    """Base of the audio.* pipelines: holds a loaded WavTokenizer in eval mode."""

    model_class = WavTokenizer
