"""Which pipeline serves which (job kind, model class), and which queue family each kind runs on.

A new model joins the service by adding entries here (and its weights to the zoo); the job service has no
per-model code. Pipelines are named as ``module:Class`` strings so that importing the registry stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipelines.base import InputError, Pipeline


@dataclass(frozen=True)
class JobKind:
    name: str
    family: str
    """Celery queue family: ``image``, ``audio``, ``speech`` or ``generate``."""
    description: str


JOB_KINDS: dict[str, JobKind] = {
    k.name: k
    for k in [
        JobKind("audio.tokenize", "audio", "audio clip -> discrete codes"),
        JobKind("audio.detokenize", "audio", "discrete codes -> audio clip"),
        JobKind("image.tokenize", "image", "image (+ caption for TexTok) -> tokens"),
        JobKind("image.detokenize", "image", "tokens (+ caption for TexTok) -> image"),
        JobKind("image.generate", "generate", "prompt (or class) -> image"),
        JobKind("image.generate_group", "generate", "captions + a reference image -> a consistent group of images"),
        JobKind("speech.generate", "speech", "text -> spoken audio (streamed)"),
        JobKind("speech.chat", "speech", "spoken question -> answer as text and audio (streamed)"),
    ]
}

# (job kind, model class) -> "module:PipelineClass"
PIPELINES: dict[tuple[str, str], str] = {
    ("audio.tokenize", "WavTokenizer"): "pipelines.wavtokenizer.audio_tokenize:AudioTokenizePipeline",
    ("audio.detokenize", "WavTokenizer"): "pipelines.wavtokenizer.audio_detokenize:AudioDetokenizePipeline",
    ("image.tokenize", "TexTok"): "pipelines.textok.image_tokenize:TexTokImageTokenizePipeline",
    ("image.detokenize", "TexTok"): "pipelines.textok.image_detokenize:TexTokImageDetokenizePipeline",
    ("image.tokenize", "KARL"): "pipelines.karl.image_tokenize:KARLImageTokenizePipeline",
    ("image.detokenize", "KARL"): "pipelines.karl.image_detokenize:KARLImageDetokenizePipeline",
    ("image.tokenize", "KARLOfficial"): "pipelines.karl.official_image_tokenize:KARLOfficialImageTokenizePipeline",
    ("image.detokenize", "KARLOfficial"):
        "pipelines.karl.official_image_detokenize:KARLOfficialImageDetokenizePipeline",
    ("image.generate", "StableDiffusionPipeline"): "pipelines.sd.image_generate:GenerateSDPipeline",
    ("image.generate", "XAR"): "pipelines.xar.image_generate:GenerateXARPipeline",
    ("image.generate_group", "GroupDiffusionPipeline"): "pipelines.gdt.image_generate_group:GenerateGroupPipeline",
    ("speech.generate", "FlowOmni"): "pipelines.flow_omni.speech_generate:SpeechGeneratePipeline",
    ("speech.chat", "FlowOmni"): "pipelines.flow_omni.speech_chat:SpeechChatPipeline",
}


def get_job_kind(kind: str) -> JobKind:
    if kind not in JOB_KINDS:
        raise InputError(f"unknown job kind {kind!r}; known kinds: {sorted(JOB_KINDS)}")
    return JOB_KINDS[kind]


def pipeline_target(kind: str, model_class: str) -> str:
    """The ``module:Class`` serving ``kind`` on ``model_class``: what a job record stores and a model host loads."""
    get_job_kind(kind)
    target = PIPELINES.get((kind, model_class))
    if target is None:
        serving = sorted(m for k, m in PIPELINES if k == kind)
        raise InputError(f"job kind {kind!r} cannot run on a {model_class} model; it runs on {serving}")
    return target


def import_pipeline(target: str) -> type[Pipeline]:
    """The class a ``module:Class`` target names (checked to be a pipeline: targets come from job records)."""
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
        raise TypeError(f"{target} is not a Pipeline class")
    return cls


def get_pipeline_class(kind: str, model_class: str) -> type[Pipeline]:
    return import_pipeline(pipeline_target(kind, model_class))


def kinds_for_model_class(model_class: str) -> list[str]:
    return sorted(k for k, m in PIPELINES if m == model_class)
