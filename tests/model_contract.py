"""One contract case per model class: a tiny preset, a small input and the output shapes it must give.

``tests/test_model_contract.py`` runs every case through the same checks (save -> load equality, seeded
determinism, output shapes, strict loading) and fails when a model class in the packages has no case here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

import pipelines
import tokenizers_media
from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.streams import answer_streams, collate, concat, prompt_streams
from pipelines.shapes_classifier.model import ShapesClassifier
from pipelines.xar.model import XAR
from tokenizers_media.audio.wavtokenizer import WavTokenizer
from tokenizers_media.image.karl import KARL
from tokenizers_media.image.karl_official import KARLOfficial
from tokenizers_media.image.textok import TexTok
from tokenizers_media.modeling import PretrainedModel
from tokenizers_media.speech.recognizer import PhonemeRecognizer
from tokenizers_media.speech.vocoder import MelVocoder

Outputs = dict[str, torch.Tensor]
CAPTIONS = ["a red circle", "two blue squares"]


@dataclass(frozen=True)
class ContractCase:
    """``run`` feeds a fixed small input to a tiny model; ``shapes`` are what each named output must measure."""

    model_class: type[PretrainedModel]
    build: Callable[[], PretrainedModel]
    run: Callable[[PretrainedModel], Outputs]
    shapes: Callable[[PretrainedModel], dict[str, tuple[int, ...]]]

    @property
    def name(self) -> str:
        return self.model_class.__name__


def _images(side: int) -> torch.Tensor:
    return torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))


def _log_mel(frames: int, n_mels: int) -> torch.Tensor:
    return torch.randn(2, frames, n_mels, generator=torch.Generator().manual_seed(1)) - 4


def _wavtokenizer_with_codebook() -> WavTokenizer:
    """The codebook is set by k-means on the first train-mode batch; encoding needs it."""
    model = WavTokenizer.from_preset("tiny").train()
    with torch.no_grad():
        model(torch.randn(2, 2400) * 0.1)
    return model


def _wavtokenizer(model: WavTokenizer) -> Outputs:
    codes = model.encode(torch.randn(2, 1200, generator=torch.Generator().manual_seed(1)) * 0.1)
    return {"codes": codes, "audio": model.decode(codes)}


def _textok(model: TexTok) -> Outputs:
    latents = model.encode(_images(model.config.image_size), CAPTIONS).latents
    return {"latents": latents, "images": model.decode(latents, CAPTIONS)}


def _karl(model: KARL) -> Outputs:
    encoding = model.encode(_images(model.config.image_size), max_tokens=8)
    return {"codes": encoding.codes, "images": model.decode(encoding.codes, encoding.lengths)}


def _karl_official(model: KARLOfficial) -> Outputs:
    encoding = model.encode(_images(model.config.image_size))
    return {"codes": encoding.codes, "images": model.decode(encoding.codes, encoding.mask)}


def _recognizer(model: PhonemeRecognizer) -> Outputs:
    logits, lengths = model(_log_mel(20, model.config.n_mels))
    return {"logits": logits, "lengths": lengths}


def _xar(model: XAR) -> Outputs:
    gen = torch.Generator().manual_seed(1)
    layout, c = model.layout, model.config
    x_t = torch.randn(2, layout.num_tokens, c.latent_channels, generator=gen)
    t = torch.rand(2, layout.num_entities, generator=gen)
    return {"velocity": model(x_t, t, torch.tensor([0, model.null_class]))}


def _flow_omni(model: FlowOmni) -> Outputs:
    """Teacher-forced losses of one text-to-speech sequence (the flow loss draws noise: the run is seeded)."""
    c = model.config
    groups = torch.randn(4, c.group_dim, generator=torch.Generator().manual_seed(1))
    text = model.tokenizer.encode("a red cat")
    sequence = concat(prompt_streams("tts", c.group_dim, text), answer_streams("tts", text, groups, c.delay,
                                                                               c.group_dim))
    return model(collate([sequence]))


CASES = [
    ContractCase(WavTokenizer, _wavtokenizer_with_codebook, _wavtokenizer,
                 lambda m: {"codes": (2, 1, 4), "audio": (2, 4 * m.config.hop_length)}),
    # The learned text encoder: the default MiniLM is a download.
    ContractCase(TexTok, lambda: TexTok.from_preset("tiny", text_encoder="learned"), _textok,
                 lambda m: {"latents": (2, m.config.num_latent_tokens, m.config.latent_dim),
                            "images": (2, 3, m.config.image_size, m.config.image_size)}),
    ContractCase(KARL, lambda: KARL.from_preset("tiny"), _karl,
                 lambda m: {"codes": (2, 8), "images": (2, 3, m.config.image_size, m.config.image_size)}),
    ContractCase(KARLOfficial, lambda: KARLOfficial.from_preset("tiny"), _karl_official,
                 lambda m: {"codes": (2, m.config.max_tokens),
                            "images": (2, 3, m.config.image_size, m.config.image_size)}),
    ContractCase(PhonemeRecognizer, lambda: PhonemeRecognizer.from_preset("tiny"), _recognizer,
                 lambda m: {"logits": (2, 10, m.config.vocab_size), "lengths": (2,)}),
    ContractCase(MelVocoder, lambda: MelVocoder.from_preset("tiny"),
                 lambda m: {"audio": m(_log_mel(8, m.config.n_mels))},
                 lambda m: {"audio": (2, 8 * m.config.hop_length)}),
    ContractCase(XAR, lambda: XAR.from_preset("tiny"), _xar,
                 lambda m: {"velocity": (2, m.layout.num_tokens, m.config.latent_channels)}),
    ContractCase(FlowOmni, lambda: FlowOmni.from_preset("tiny"), _flow_omni,
                 lambda m: dict.fromkeys(("text", "state", "flow", "readout", "loss"), ())),
    ContractCase(ShapesClassifier, lambda: ShapesClassifier.from_preset("tiny"),
                 lambda m: vars(m(_images(40))),
                 lambda m: {"features": (2, 2 * m.config.widths[-1]), "class_logits": (2, m.config.num_classes),
                            "count_logits": (2, m.config.max_count + 1)}),
]


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def project_model_classes() -> set[type[PretrainedModel]]:
    """Every ``PretrainedModel`` subclass defined in ``tokenizers_media`` or ``pipelines``, all modules imported."""
    packages = (tokenizers_media, pipelines)
    for package in packages:
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    prefixes = tuple(package.__name__ + "." for package in packages)
    return {cls for cls in _subclasses(PretrainedModel) if cls.__module__.startswith(prefixes)}
