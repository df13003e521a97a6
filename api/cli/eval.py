"""``mediaforge eval METRIC``: offline evaluation metrics (all feature-space metrics here are *proxies*)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate a model with an offline metric.", no_args_is_help=True)


@app.command("pscore")
def pscore_command(
    model: str = typer.Option(..., "--model", "-m", help="KARL or vq TexTok: zoo name or model directory."),
    alpha: float = typer.Option(..., help="Probability that a token is replaced (explicit: no paper value)."),
    delta: int = typer.Option(..., help="Replacement drawn uniformly among the delta nearest codes (0 = itself)."),
    seed: int = typer.Option(0, help="Seed of the perturbation draws."),
    images: int = typer.Option(1000, help="Held-out shapes-world images."),
    target_error: float = typer.Option(0.05, help="KARL target per-image L1."),
    max_tokens: int | None = typer.Option(None, help="KARL token budget (default: the model's)."),
    classifier: str = typer.Option("shapes-classifier", help="Feature network: zoo name or model directory."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Proxy pFID: Frechet distance in shapes-classifier features between held-out images and decodings of
    perturbed tokens, plus the unperturbed (proxy rFID) value. Never comparable with paper FID."""
    import json

    import torch

    from pipelines.base import InputError
    from pipelines.robust.evaluate import Perturbation, karl_round_trip, pscore, textok_round_trip
    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.zoo import resolve_model
    from tokenizers_media.image.karl import KARL
    from tokenizers_media.image.textok import TexTok

    torch.set_num_threads(threads)
    try:
        ref = resolve_model(model)
        if ref.model_class == "KARL":
            tokenizer = KARL.from_pretrained(ref.path)
            round_trip = karl_round_trip(tokenizer, target_error=target_error, max_tokens=max_tokens)
            setting = f"target_error={target_error:g}, max_tokens={max_tokens or tokenizer.config.max_tokens}"
        elif ref.model_class == "TexTok":
            tokenizer = TexTok.from_pretrained(ref.path)
            round_trip, setting = textok_round_trip(tokenizer), f"{tokenizer.config.num_latent_tokens} tokens"
        else:
            raise InputError(f"pscore runs on KARL and vq TexTok models; {model!r} is a {ref.model_class}")
        features = ShapesClassifier.from_pretrained(resolve_model(classifier).path)
        result = pscore(round_trip, features, tokenizer.config.image_size, Perturbation(alpha, delta, seed),
                        num_images=images)
    except ValueError as err:  # InputError is a ValueError
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"model {ref.name} ({ref.model_class}), {setting}")
    typer.echo(result.describe())
    if json_out is not None:
        json_out.write_text(json.dumps({"model": ref.name, "alpha": alpha, "delta": delta, "seed": seed,
                                        "images": images, "target_error": target_error,
                                        "proxy_pfid": result.perturbed, "proxy_rfid": result.clean}, indent=2))


@app.command("karl")
def karl_command(
    model: str = typer.Option(..., "--model", "-m", help="KARL zoo name or model directory."),
    images: int = typer.Option(512, help="Held-out shapes-world images."),
    halt_threshold: float | None = typer.Option(None, help="Halting threshold for the adaptive tables (default: "
                                                "the model's config)."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """PSNR / SSIM per token count, target error vs tokens used, and tokens by image complexity (markdown)."""
    import torch

    from pipelines.karl.evaluate import evaluate_karl
    from pipelines.zoo import resolve_model
    from tokenizers_media.image.karl import KARL

    torch.set_num_threads(threads)
    try:
        tokenizer = KARL.from_pretrained(resolve_model(model).path)
        report = evaluate_karl(tokenizer, num_images=images, halt_threshold=halt_threshold)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    threshold = tokenizer.config.halt_threshold if halt_threshold is None else halt_threshold
    typer.echo(f"{report.num_images} held-out shapes-world images (eval split), halting threshold {threshold:g}\n")
    typer.echo(report.markdown())


@app.command("textok")
def textok_command(
    models: list[str] = typer.Option(..., "--model", "-m", help="TexTok zoo name or model directory (repeat to "
                                     "compare, e.g. the text ablation)."),
    images: int = typer.Option(1024, help="Held-out shapes-world images."),
    classifier: str = typer.Option("shapes-classifier", help="Judge and feature network: zoo name or directory."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """PSNR / SSIM, proxy rFID and detector object recall of reconstructions, one row per model (markdown)."""
    import json

    import torch

    from pipelines.base import InputError
    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.textok.evaluate import evaluate_textoks, markdown_table
    from pipelines.zoo import resolve_model
    from tokenizers_media.image.textok import TexTok

    torch.set_num_threads(threads)
    try:
        judge = ShapesClassifier.from_pretrained(resolve_model(classifier).path)
        tokenizers = []
        for name in models:
            ref = resolve_model(name)
            if ref.model_class != "TexTok":
                raise InputError(f"{name!r} is a {ref.model_class}, not a TexTok")
            tokenizers.append(TexTok.from_pretrained(ref.path))
        rows = list(zip(models, tokenizers, evaluate_textoks(tokenizers, images, judge), strict=True))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"{images} held-out shapes-world images (eval split); rFID is a proxy (shapes-classifier features)\n")
    typer.echo(markdown_table(rows))
    if json_out is not None:
        json_out.write_text(json.dumps({name: report.metrics() for name, _, report in rows}, indent=2))


@app.command("binding")
def binding_command(
    model: str = typer.Option("sd-shapes-tiny", "--model", "-m", help="SD pipeline folder: zoo name or path."),
    judge: str = typer.Option("detector", help="detector (per-object, training-free) or classifier."),
    classifier: str = typer.Option("shapes-classifier", help="--judge classifier: zoo name or model directory."),
    prompts: int = typer.Option(24, help="Prompts (alternately two and three objects)."),
    images_per_prompt: int = typer.Option(4, help="Images per prompt and method (same seeds for every method)."),
    steps: int = typer.Option(25, help="DDIM steps."),
    guidance: float = typer.Option(7.5, help="Classifier-free guidance scale."),
    methods: str = typer.Option("plain,tome-merge-only,tome", help="Comma-separated methods to compare."),
    noun_weight: float | None = typer.Option(None, help="ToMe composite token: weight of the noun (paper 1.1)."),
    attribute_weight: float | None = typer.Option(None, help="ToMe composite: weight of the attributes (paper 1.2)."),
    tome_option: list[str] = typer.Option([], "--tome-option", help="Any other ToMe knob, KEY=VALUE with a JSON "
                                           "value (repeatable), e.g. token_step_size=100."),
    seed: int = typer.Option(0, help="Seed of the prompts and of the initial noise."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Attribute-binding accuracy of a shapes-world text-to-image model with and without ToMe."""
    import json

    import torch

    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.tome.evaluate import (
        METHODS,
        binding_prompts,
        classifier_judge,
        detector_judge,
        evaluate_binding,
        reference_binding,
    )
    from pipelines.tome.pipeline import ToMeStableDiffusionPipeline
    from pipelines.zoo import resolve_model

    torch.set_num_threads(threads)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown or not chosen:
        raise typer.BadParameter(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    if judge not in ("detector", "classifier"):
        raise typer.BadParameter(f"unknown judge {judge!r}; choose detector or classifier")
    try:
        ref = resolve_model(model)
        pipe = ToMeStableDiffusionPipeline.from_pretrained(ref.path)
        scorer = (detector_judge() if judge == "detector"
                  else classifier_judge(ShapesClassifier.from_pretrained(resolve_model(classifier).path)))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    pipe.set_progress_bar_config(disable=True)
    tome_kwargs = json.loads((ref.path / "config.json").read_text()).get("tome", {})
    weights = {"noun_weight": noun_weight, "attribute_weight": attribute_weight}
    tome_kwargs.update({k: v for k, v in weights.items() if v is not None})
    tome_kwargs.update(_tome_options(tome_option))
    results = evaluate_binding(pipe, scorer, binding_prompts(prompts, seed), images_per_prompt, steps, guidance,
                               {m: METHODS[m] for m in chosen}, tome_kwargs, seed, progress=typer.echo)
    reference = reference_binding(scorer, pipe.unet.config.sample_size * pipe.vae_scale_factor)
    typer.echo("| method | binding accuracy | object recall | swap rate | images |\n|---|---|---|---|---|")
    for name, r in {**results, "real shapes-world images": reference}.items():
        typer.echo(f"| {name} | {r.bound:.3f} | {r.object_recall:.3f} | {r.swap_rate:.3f} | {r.images} |")
    if json_out is not None:
        json_out.write_text(json.dumps({
            "model": ref.name, "prompts": prompts, "images_per_prompt": images_per_prompt, "steps": steps,
            "guidance_scale": guidance, "seed": seed, "judge": judge, "tome": tome_kwargs,
            "methods": {name: r.to_dict() for name, r in results.items()},
            "reference_real_images": reference.to_dict()}, indent=2) + "\n")


def _tome_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` items (VALUE as JSON) -> ToMeConfig overrides; unknown keys and bad values are errors."""
    import dataclasses
    import json

    from pipelines.tome.pipeline import ToMeConfig

    fields = {f.name for f in dataclasses.fields(ToMeConfig)}
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise typer.BadParameter(f"--tome-option {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError as err:
            raise typer.BadParameter(f"--tome-option {key}: {raw!r} is not a JSON value") from err
    return options


@app.command("xar")
def xar_command(
    model: str = typer.Option(..., "--model", "-m", help="xAR zoo name or model directory (with vae/)."),
    classifier: str = typer.Option("shapes-classifier", help="Shapes classifier zoo name or directory."),
    images_per_class: int = typer.Option(10, help="Generated images per class (40 classes)."),
    steps: int = typer.Option(25, help="Flow steps per entity."),
    guidance_scale: float = typer.Option(2.0, help="Final CFG scale (ramped over entities)."),
    sampler: str = typer.Option("sde", help="sde (Euler-Maruyama) or ode (Euler)."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Class accuracy per class, proxy FD and sampling time of generated shapes-world images (markdown)."""
    import torch
    from diffusers import AutoencoderKL

    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.xar.evaluate import evaluate_xar
    from pipelines.xar.model import XAR
    from pipelines.xar.pipeline import XARPipeline
    from pipelines.zoo import resolve_model

    torch.set_num_threads(threads)
    path = resolve_model(model).path
    pipe = XARPipeline(XAR.from_pretrained(path), AutoencoderKL.from_pretrained(path / "vae").eval())
    judge = ShapesClassifier.from_pretrained(resolve_model(classifier).path)
    try:
        report = evaluate_xar(pipe, judge, images_per_class, steps, guidance_scale, sampler)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(report.markdown())


@app.command("flow-omni")
def flow_omni_command(
    model: str = typer.Option("flow-omni-tiny", "--model", "-m", help="FlowOmni zoo name or model directory."),
    judge: str = typer.Option("speech-judge", help="Phoneme recogniser: zoo name or model directory."),
    codec_ref: str = typer.Option("wavtokenizer-tiny", "--codec", help="Codec of a codes-baseline model."),
    statements: int = typer.Option(30, help="Unseen sentences (TTS and ASR)."),
    dialogues: int = typer.Option(30, help="Unseen questions (speech-to-speech and text-to-text)."),
    snr_db: float = typer.Option(10.0, "--snr-db", help="White-noise level of the noisy spoken prompts."),
    flow_steps: int | None = typer.Option(None, help="Euler steps per frame group (default: the model's)."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Intelligibility (judge PER), duration, mel distance, ASR CER and answer accuracy, clean and noisy."""
    import json

    import torch

    from pipelines.flow_omni.codec import codec_bridge
    from pipelines.flow_omni.data import build_dialogue_corpus
    from pipelines.flow_omni.evaluate import as_rows, codec_ceiling_per, score_dialogue, score_tts
    from pipelines.flow_omni.generate import GenerationOptions
    from pipelines.flow_omni.model import FlowOmni
    from pipelines.zoo import resolve_model
    from tokenizers_media.speech.recognizer import PhonemeRecognizer

    torch.set_num_threads(threads)
    flow_omni = FlowOmni.from_pretrained(resolve_model(model).path)
    recognizer = PhonemeRecognizer.from_pretrained(resolve_model(judge).path)
    codec = codec_bridge(codec_ref, flow_omni.config.mel_spec) if flow_omni.config.output == "codes" else None
    corpus = build_dialogue_corpus("eval", statements, dialogues, seed=0, spec=flow_omni.config.mel_spec)
    options = GenerationOptions(flow_steps=flow_steps)
    results = {"model": model, "tts": as_rows(score_tts(flow_omni, recognizer, corpus.statements, options, codec))}
    if codec is not None:
        results["tts"]["codec_ceiling_per"] = round(codec_ceiling_per(recognizer, corpus.statements, codec), 4)
    typer.echo(f"tts: {results['tts']}")
    for name, snr in (("clean", None), (f"noisy_{snr_db:g}db", snr_db)):
        results[name] = as_rows(score_dialogue(flow_omni, recognizer, corpus, options, snr, codec))
        typer.echo(f"{name}: {results[name]}")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n")
