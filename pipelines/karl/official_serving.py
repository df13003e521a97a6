"""What the official-KARL image job kinds share: a loaded ``KARLOfficial`` (converted release weights)."""

from __future__ import annotations

from pipelines.base import TokenizerPipeline
from tokenizers_media.image.karl_official import KARLOfficial


class KARLOfficialPipeline(TokenizerPipeline[KARLOfficial]):
    """Base of the ``image.*`` pipelines on a model made by ``mediaforge convert karl``."""

    model_class = KARLOfficial
