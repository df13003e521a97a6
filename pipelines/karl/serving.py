"""What the KARL image job kinds share: the loaded model (see :class:`pipelines.base.TokenizerPipeline`)."""

from __future__ import annotations

from pipelines.base import TokenizerPipeline
from tokenizers_media.image.karl import KARL


class KARLPipeline(TokenizerPipeline[KARL]):
    """Base of the KARL ``image.*`` pipelines: holds a loaded KARL in eval mode."""

    model_class = KARL
