"""``mediaforge eval METRIC``: offline evaluation metrics (all feature-space metrics here are *proxies*).

Each command's options come from its family's eval config (``pipelines/<family>/evaluate.py``), whose defaults
are the evaluation functions' own, so a default lives in one place; ``--set``/``--config`` reach every field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from api.cli.config_options import Opt, OptionGroup, config_command, set_threads, threads_option
from pipelines.base import InputError
from pipelines.flow_omni.evaluate import FlowOmniEvalConfig
from pipelines.karl.evaluate import KARLEvalConfig, evaluate_karl
from pipelines.robust.evaluate import PScoreConfig, karl_round_trip, pscore, textok_round_trip
from pipelines.shapes_classifier.model import ShapesClassifier
from pipelines.textok.evaluate import TexTokEvalConfig, evaluate_textoks, markdown_table
from pipelines.tome.evaluate import BindingEvalConfig
from pipelines.xar.evaluate import XAREvalConfig, evaluate_xar
from pipelines.zoo import resolve_model

app = typer.Typer(no_args_is_help=True)

EVAL = OptionGroup([threads_option()], set_threads)

CLASSIFIER_HELP = "Shapes classifier (features and judge): zoo name or model directory."


def _model(help: str, default: Any = ...) -> Any:
    return typer.Option(default, "--model", "-m", help=help)


def _classifier() -> Any:
    return typer.Option("shapes-classifier", help=CLASSIFIER_HELP)


def _json_out() -> Any:
    return typer.Option(None, "--json", help="Also write the numbers to this JSON file.")


def _write_json(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(record, indent=2) + "\n")


def _load_classifier(name: str) -> ShapesClassifier:
    return ShapesClassifier.from_pretrained(resolve_model(name).path)


@app.command("pscore")
@config_command(PScoreConfig, {
    "alpha": None,
    "delta": None,
    "seed": "Seed of the perturbation draws.",
    "num_images": Opt("Held-out shapes-world images.", flag="--images"),
    "target_error": None,
    "max_tokens": None,
}, EVAL)
def pscore_command(config: PScoreConfig, _: None,
                   model: str = _model("KARL or vq TexTok: zoo name or model directory."),
                   classifier: str = _classifier(), json_out: Path | None = _json_out()) -> None:
    """Proxy pFID: Frechet distance in shapes-classifier features between held-out images and decodings of
    perturbed tokens, plus the unperturbed (proxy rFID) value. Never comparable with paper FID."""
    from tokenizers_media.image.karl import KARL
    from tokenizers_media.image.textok import TexTok

    ref = resolve_model(model)
    if ref.model_class == "KARL":
        tokenizer = KARL.from_pretrained(ref.path)
        round_trip = karl_round_trip(tokenizer, target_error=config.target_error, max_tokens=config.max_tokens)
        setting = (f"target_error={config.target_error:g}, "
                   f"max_tokens={config.max_tokens or tokenizer.config.max_tokens}")
    elif ref.model_class == "TexTok":
        tokenizer = TexTok.from_pretrained(ref.path)
        round_trip, setting = textok_round_trip(tokenizer), f"{tokenizer.config.num_latent_tokens} tokens"
    else:
        raise InputError(f"pscore runs on KARL and vq TexTok models; {model!r} is a {ref.model_class}")
    result = pscore(round_trip, _load_classifier(classifier), tokenizer.config.image_size, config.perturbation,
                    num_images=config.num_images)
    typer.echo(f"model {ref.name} ({ref.model_class}), {setting}")
    typer.echo(result.describe())
    _write_json(json_out, {"model": ref.name, "alpha": config.alpha, "delta": config.delta, "seed": config.seed,
                           "images": config.num_images, "target_error": config.target_error,
                           "proxy_pfid": result.perturbed, "proxy_rfid": result.clean})


@app.command("karl")
@config_command(KARLEvalConfig, {
    "num_images": Opt("Held-out shapes-world images.", flag="--images"),
    "halt_threshold": None,
}, EVAL)
def karl_command(config: KARLEvalConfig, _: None, model: str = _model("KARL zoo name or model directory.")) -> None:
    """PSNR / SSIM per token count, target error vs tokens used, and tokens by image complexity (markdown)."""
    from tokenizers_media.image.karl import KARL

    tokenizer = KARL.from_pretrained(resolve_model(model).path)
    report = evaluate_karl(tokenizer, num_images=config.num_images, halt_threshold=config.halt_threshold)
    threshold = tokenizer.config.halt_threshold if config.halt_threshold is None else config.halt_threshold
    typer.echo(f"{report.num_images} held-out shapes-world images (eval split), halting threshold {threshold:g}\n")
    typer.echo(report.markdown())


@app.command("textok")
@config_command(TexTokEvalConfig, {"num_images": Opt("Held-out shapes-world images.", flag="--images")}, EVAL)
def textok_command(config: TexTokEvalConfig, _: None,
                   models: list[str] = _model("TexTok zoo name or model directory (repeat to compare, e.g. the "
                                              "text ablation)."),
                   classifier: str = _classifier(), json_out: Path | None = _json_out()) -> None:
    """PSNR / SSIM, proxy rFID and detector object recall of reconstructions, one row per model (markdown)."""
    from tokenizers_media.image.textok import TexTok

    judge = _load_classifier(classifier)
    tokenizers = []
    for name in models:
        ref = resolve_model(name)
        if ref.model_class != "TexTok":
            raise InputError(f"{name!r} is a {ref.model_class}, not a TexTok")
        tokenizers.append(TexTok.from_pretrained(ref.path))
    rows = list(zip(models, tokenizers, evaluate_textoks(tokenizers, config.num_images, judge), strict=True))
    typer.echo(f"{config.num_images} held-out shapes-world images (eval split); rFID is a proxy (shapes-classifier "
               "features)\n")
    typer.echo(markdown_table(rows))
    _write_json(json_out, {name: report.metrics() for name, _, report in rows})


@app.command("binding")
@config_command(BindingEvalConfig, {
    "judge": None,
    "num_prompts": Opt(flag="--prompts"),
    "images_per_prompt": None,
    "num_inference_steps": Opt("DDIM steps.", flag="--steps"),
    "guidance_scale": Opt("Classifier-free guidance scale.", flag="--guidance"),
    "methods": "Comma-separated methods to compare.",
    "noun_weight": None,
    "attribute_weight": None,
    "seed": None,
}, EVAL)
def binding_command(config: BindingEvalConfig, _: None,
                    model: str = _model("SD pipeline folder: zoo name or path.", "sd-shapes-tiny"),
                    classifier: str = typer.Option("shapes-classifier", help="--judge classifier: zoo name or "
                                                   "model directory."),
                    tome_option: list[str] = typer.Option([], "--tome-option", help="Any other ToMe knob, "
                                                          "KEY=VALUE with a JSON value (repeatable), e.g. "
                                                          "token_step_size=100."),
                    json_out: Path | None = _json_out()) -> None:
    """Attribute-binding accuracy of a shapes-world text-to-image model with and without ToMe."""
    from pipelines.tome.evaluate import (
        METHODS,
        binding_prompts,
        classifier_judge,
        detector_judge,
        evaluate_binding,
        reference_binding,
    )
    from pipelines.tome.pipeline import ToMeStableDiffusionPipeline

    tome_overrides = _tome_options(tome_option)
    ref = resolve_model(model)
    pipe = ToMeStableDiffusionPipeline.from_pretrained(ref.path)
    scorer = detector_judge() if config.judge == "detector" else classifier_judge(_load_classifier(classifier))
    pipe.set_progress_bar_config(disable=True)
    tome_kwargs = json.loads((ref.path / "config.json").read_text()).get("tome", {})
    weights = {"noun_weight": config.noun_weight, "attribute_weight": config.attribute_weight}
    tome_kwargs.update({k: v for k, v in weights.items() if v is not None})
    tome_kwargs.update(tome_overrides)
    results = evaluate_binding(pipe, scorer, binding_prompts(config.num_prompts, config.seed),
                               config.images_per_prompt, config.num_inference_steps, config.guidance_scale,
                               {m: METHODS[m] for m in config.methods}, tome_kwargs, config.seed,
                               progress=typer.echo)
    reference = reference_binding(scorer, pipe.unet.config.sample_size * pipe.vae_scale_factor)
    typer.echo("| method | binding accuracy | object recall | swap rate | images |\n|---|---|---|---|---|")
    for name, r in {**results, "real shapes-world images": reference}.items():
        typer.echo(f"| {name} | {r.bound:.3f} | {r.object_recall:.3f} | {r.swap_rate:.3f} | {r.images} |")
    _write_json(json_out, {
        "model": ref.name, "prompts": config.num_prompts, "images_per_prompt": config.images_per_prompt,
        "steps": config.num_inference_steps, "guidance_scale": config.guidance_scale, "seed": config.seed,
        "judge": config.judge, "tome": tome_kwargs, "methods": {name: r.to_dict() for name, r in results.items()},
        "reference_real_images": reference.to_dict()})


def _tome_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` items (VALUE as JSON) -> ToMeConfig overrides; unknown keys and bad values are errors."""
    from pipelines.tome.pipeline import ToMeConfig

    fields = {f.name for f in dataclasses.fields(ToMeConfig)}
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise InputError(f"--tome-option {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError as err:
            raise InputError(f"--tome-option {key}: {raw!r} is not a JSON value") from err
    return options


@app.command("xar")
@config_command(XAREvalConfig, {
    "images_per_class": None,
    "num_inference_steps": Opt(flag="--steps"),
    "guidance_scale": None,
    "sampler": None,
    "batch_size": None,
    "seed": None,
}, EVAL)
def xar_command(config: XAREvalConfig, _: None, model: str = _model("xAR zoo name or model directory (with vae/)."),
                classifier: str = _classifier()) -> None:
    """Class accuracy per class, proxy FD and sampling time of generated shapes-world images (markdown)."""
    from diffusers import AutoencoderKL

    from pipelines.xar.model import XAR
    from pipelines.xar.pipeline import XARPipeline

    path = resolve_model(model).path
    pipe = XARPipeline(XAR.from_pretrained(path), AutoencoderKL.from_pretrained(path / "vae").eval())
    report = evaluate_xar(pipe, _load_classifier(classifier), **dataclasses.asdict(config))
    typer.echo(report.markdown())


@app.command("flow-omni")
@config_command(FlowOmniEvalConfig, {
    "num_statements": Opt(flag="--statements"),
    "num_dialogues": Opt(flag="--dialogues"),
    "snr_db": None,
    "flow_steps": None,
}, EVAL)
def flow_omni_command(config: FlowOmniEvalConfig, _: None,
                      model: str = _model("FlowOmni zoo name or model directory.", "flow-omni-tiny"),
                      judge: str = typer.Option("speech-judge", help="Phoneme recogniser: zoo name or model "
                                                "directory."),
                      codec_ref: str = typer.Option("wavtokenizer-tiny", "--codec", help="Codec of a codes-baseline "
                                                    "model."),
                      json_out: Path | None = _json_out()) -> None:
    """Intelligibility (judge PER), duration, mel distance, ASR CER and answer accuracy, clean and noisy."""
    from pipelines.flow_omni.codec import codec_bridge
    from pipelines.flow_omni.data import build_dialogue_corpus
    from pipelines.flow_omni.evaluate import as_rows, codec_ceiling_per, score_dialogue, score_tts
    from pipelines.flow_omni.generate import GenerationOptions
    from pipelines.flow_omni.model import FlowOmni
    from tokenizers_media.speech.recognizer import PhonemeRecognizer

    flow_omni = FlowOmni.from_pretrained(resolve_model(model).path)
    recognizer = PhonemeRecognizer.from_pretrained(resolve_model(judge).path)
    codec = codec_bridge(codec_ref, flow_omni.config.mel_spec) if flow_omni.config.output == "codes" else None
    corpus = build_dialogue_corpus("eval", config.num_statements, config.num_dialogues, seed=0,
                                   spec=flow_omni.config.mel_spec)
    options = GenerationOptions(flow_steps=config.flow_steps)
    results = {"model": model, "tts": as_rows(score_tts(flow_omni, recognizer, corpus.statements, options, codec))}
    if codec is not None:
        results["tts"]["codec_ceiling_per"] = round(codec_ceiling_per(recognizer, corpus.statements, codec), 4)
    typer.echo(f"tts: {results['tts']}")
    for name, snr in (("clean", None), (f"noisy_{config.snr_db:g}db", config.snr_db)):
        results[name] = as_rows(score_dialogue(flow_omni, recognizer, corpus, options, snr, codec))
        typer.echo(f"{name}: {results[name]}")
    _write_json(json_out, results)

