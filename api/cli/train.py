"""``mediaforge train MODEL``: one sub-command per trainable model (the loops live in pipelines/training)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train a model from this repo's own data.", no_args_is_help=True)


def start_run(threads: int) -> None:
    """Log lines with timestamps and a fixed torch thread count (0: torch's default) for a training run."""
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if threads:
        torch.set_num_threads(threads)


@app.command("shapes-classifier")
def train_shapes_classifier_command(
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Images per step."),
    seed: int = typer.Option(0, help="Torch seed for the initial weights."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Train the shapes-world classifier (proxy-FID features and judge) and write its model card."""
    import sys

    from pipelines.shapes_classifier.train import ClassifierTrainConfig, train_shapes_classifier

    start_run(threads)
    config = ClassifierTrainConfig(steps=steps, batch_size=batch_size, seed=seed)
    metrics = train_shapes_classifier(config, out, command="mediaforge " + " ".join(sys.argv[1:]))
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


@app.command("karl")
def train_karl_command(
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write (resumes its checkpoint)."),
    preset: str = typer.Option("tiny", help="KARL preset (tiny, paper-small)."),
    steps: int = typer.Option(1500, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Images per step."),
    lr: float = typer.Option(3e-4, help="Peak learning rate."),
    l1_weight: float = typer.Option(1.0, help="Pixel L1 loss weight."),
    l2_weight: float = typer.Option(1.0, help="Pixel L2 loss weight."),
    token_step: int = typer.Option(4, help="Budget-pass token counts are token_step, 2 token_step, ..., max "
                                   "(1: every count, so the halting head also learns the fewest-token regime)."),
    halt_weight: float = typer.Option(0.1, help="Weight of the halting BCE in the learn-to-tokenize pass."),
    perturb: str | None = typer.Option(None, help="Robust latent perturbation, e.g. alpha=1,beta=0.1,delta=100."),
    seed: int = typer.Option(0, help="Torch seed for the initial weights and the pass randomness."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    stop_at: int | None = typer.Option(None, help="End this session after this step (resume later)."),
    init: str | None = typer.Option(None, help="Start from this trained KARL (zoo name or directory)."),
    halting_only: bool = typer.Option(False, help="Train only the halting head of --init (the rest frozen)."),
    budget_per_image: bool = typer.Option(False, help="Draw the budget-pass T per image, not once per step."),
) -> None:
    """Train KARL on shapes world (two-pass adaptive-token training), saving samples and checkpoints."""

    from pipelines.karl.train import KARLTrainConfig, PerturbOptions, train_karl
    from pipelines.zoo import resolve_model

    start_run(threads)
    try:
        options = None if perturb is None else PerturbOptions.parse(perturb)
        config = KARLTrainConfig(preset=preset, steps=steps, batch_size=batch_size, lr=lr, l1_weight=l1_weight,
                                 l2_weight=l2_weight, token_step=token_step, halt_weight=halt_weight,
                                 seed=seed, perturb=options,
                                 init=None if init is None else str(resolve_model(init).path),
                                 halting_only=halting_only, budget_per_image=budget_per_image)
        train_karl(config, out, show_progress=progress, stop_at=stop_at)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"saved {out}")


@app.command("wavtokenizer")
def wavtokenizer_command(
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="run directory: checkpoints + final model"),
    preset: str = typer.Option("tiny", help="model size: tiny (CPU) or paper-75 / paper-40"),
    steps: int = typer.Option(6000, help="generator steps in total (may be raised on --resume)"),
    batch_size: int = typer.Option(8, help="crops per step"),
    crop_seconds: float = typer.Option(1.0, help="crop length in seconds (official: 3)"),
    lr: float = typer.Option(2e-4, help="peak AdamW learning rate (generator and discriminators)"),
    mel_only_steps: int = typer.Option(0, help="first steps on mel + commitment only, before the GAN starts "
                                                 "(may be raised on --resume)"),
    quantizer_warmup_steps: int = typer.Option(0, help="first steps without the quantizer; k-means init after"),
    encoder_init: str = typer.Option("default", help="encoder kernels: default (official) or kaiming (CPU runs)"),
    commit_coeff: float = typer.Option(1000.0, help="commitment weight (official 1000, tuned to its latent scale)"),
    mpd_width: int = typer.Option(32, help="multi-period discriminator width (official 32)"),
    mrd_width: int = typer.Option(64, help="multi-resolution discriminator width (official 64)"),
    train_utterances: int = typer.Option(400, help="espeak-ng utterances in the training corpus"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)"),
    checkpoint_every: int = typer.Option(250, help="steps between resumable train_state.pt saves"),
    snapshot_every: int = typer.Option(1000, help="steps between model snapshots in OUTPUT_DIR/snapshots/"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUTPUT_DIR"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar with losses"),
) -> None:
    """Train WavTokenizer on espeak-ng speech + synthetic tones (see pipelines/wavtokenizer/train.py)."""

    from pipelines.wavtokenizer.train import TrainConfig, train_wavtokenizer

    start_run(threads)
    config = TrainConfig(preset=preset, steps=steps, batch_size=batch_size, crop_seconds=crop_seconds, lr=lr,
                         disc_lr=lr, mel_only_steps=mel_only_steps,
                         quantizer_warmup_steps=quantizer_warmup_steps, encoder_init=encoder_init,
                         commit_coeff=commit_coeff,
                         mpd_width=mpd_width, mrd_width=mrd_width,
                         train_utterances=train_utterances, checkpoint_every=checkpoint_every,
                         snapshot_every=snapshot_every)
    out = train_wavtokenizer(config, output_dir, resume=resume, progress=progress)
    typer.echo(f"saved {out}")


@app.command("vocoder")
def vocoder_command(
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="run directory: checkpoint + final model"),
    preset: str = typer.Option("tiny", help="MelVocoder size: tiny (CPU) or paper"),
    steps: int = typer.Option(3000, help="generator steps in total (may be raised on --resume)"),
    batch_size: int = typer.Option(8, help="crops per step"),
    crop_seconds: float = typer.Option(1.0, help="crop length in seconds"),
    lr: float = typer.Option(5e-4, help="peak AdamW learning rate of the vocoder"),
    mel_only_steps: int = typer.Option(0, help="first steps on the mel loss only, before the GAN starts "
                                                 "(may be raised on --resume)"),
    input_mel_coeff: float = typer.Option(0.0, help="weight of an extra L1 to the input log-mel (not in Vocos)"),
    mpd_width: int = typer.Option(8, help="multi-period discriminator width (official 32)"),
    mrd_width: int = typer.Option(16, help="multi-resolution discriminator width (official 64)"),
    train_utterances: int = typer.Option(400, help="espeak-ng utterances in the 10 codec training voices"),
    answer_utterances: int = typer.Option(200, help="dialogue sentences in Flow-Omni's answer voice"),
    eval_clips: int = typer.Option(10, help="held-out sentences per voice set for the model card (0: none)"),
    init: str | None = typer.Option(None, help="start from this trained vocoder (zoo name or directory)"),
    threads: int = typer.Option(1, help="torch CPU threads (0: torch's default)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUTPUT_DIR"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar with losses"),
) -> None:
    """Train the Flow-Omni mel vocoder (Vocos recipe) on espeak-ng speech; card compares it with Griffin-Lim."""
    import sys

    from pipelines.vocoder.train import VocoderTrainConfig, train_vocoder
    from pipelines.zoo import resolve_model

    start_run(threads)
    try:
        config = VocoderTrainConfig(preset=preset, steps=steps, batch_size=batch_size, crop_seconds=crop_seconds,
                                    lr=lr, mel_only_steps=mel_only_steps, input_mel_coeff=input_mel_coeff,
                                    mpd_width=mpd_width, mrd_width=mrd_width,
                                    train_utterances=train_utterances, answer_utterances=answer_utterances,
                                    init="" if init is None else str(resolve_model(init).path))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    out = train_vocoder(config, output_dir, resume=resume, progress=progress, evaluate_clips=eval_clips,
                        command="mediaforge " + " ".join(sys.argv[1:]))
    typer.echo(f"saved {out}")


@app.command("textok")
def train_textok_command(
    out: Path = typer.Option(..., "-o", "--out", help="Run directory (checkpoint, samples; model in DIR/model)."),
    preset: str = typer.Option("tiny", help="TexTok preset (tiny, tiny-64, paper-B)."),
    tokens: int = typer.Option(32, help="Number of latent tokens N (32, 64, 128, 256)."),
    text: bool = typer.Option(True, "--text/--no-text", help="Text conditioning (--no-text: the ablation)."),
    text_encoder: str = typer.Option("minilm", help="minilm (frozen, pretrained) or learned."),
    bottleneck: str = typer.Option("kl", help="kl (continuous, the paper) or vq."),
    steps: int = typer.Option(1000, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Images per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    pool_size: int = typer.Option(4096, help="Training images (with precomputed caption embeddings)."),
    eval_images: int = typer.Option(512, help="Held-out images for the final PSNR / SSIM."),
    perturb: str | None = typer.Option(None, help="vq only: robust latent perturbation alpha=..,beta=..,delta=.."),
    text_dropout: float = typer.Option(0.0, help="Share of training images trained without their caption."),
    caption_style: str = typer.Option("coarse", help="coarse (names objects) or exact (pins all geometry)."),
    init: str | None = typer.Option(None, help="Start from this trained TexTok (zoo name or directory)."),
    seed: int = typer.Option(0, help="Torch seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train TexTok on shapes world; resumes DIR/checkpoint.pt; writes DIR/model and DIR/metrics.json."""

    from pipelines.textok.train import TexTokTrainConfig, train_textok
    from pipelines.zoo import resolve_model

    start_run(threads)
    try:
        strength = None
        if perturb is not None:
            from pipelines.karl.train import PerturbOptions

            options = PerturbOptions.parse(perturb)
            strength = (options.alpha, options.beta, options.delta)
        config = TexTokTrainConfig(preset=preset, num_latent_tokens=tokens, text_conditioning=text,
                                   text_encoder=text_encoder, bottleneck=bottleneck, steps=steps,
                                   batch_size=batch_size, lr=lr, pool_size=pool_size, eval_images=eval_images,
                                   seed=seed, perturb=strength, text_dropout=text_dropout,
                                   caption_style=caption_style,
                                   init=None if init is None else str(resolve_model(init).path))
        metrics = train_textok(config, out, show_progress=progress)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(" ".join(f"{k}={v}" for k, v in metrics.items()))


@app.command("sd")
def train_sd_command(
    out: Path = typer.Option(..., "-o", "--out", help="Pipeline folder to write (diffusers layout + config.json)."),
    preset: str = typer.Option("tiny", help="Model sizes (tiny)."),
    vae_steps: int = typer.Option(300, help="AutoencoderKL steps (first phase)."),
    unet_steps: int = typer.Option(20000, help="UNet + text encoder steps (second phase)."),
    max_minutes: float = typer.Option(60.0, help="Wall-clock budget of the second phase; saves and stops."),
    batch_size: int = typer.Option(16, help="Images per step."),
    seed: int = typer.Option(0, help="Torch / caption seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue the UNet phase of the run saved in OUT."),
) -> None:
    """Train a tiny latent diffusion text-to-image model on shapes world (VAE, CLIP text encoder, UNet)."""

    from pipelines.sd.train import SDTrainConfig, train_sd

    start_run(threads)
    try:
        config = SDTrainConfig(preset=preset, vae_steps=vae_steps, unet_steps=unet_steps, max_minutes=max_minutes,
                               batch_size=batch_size, seed=seed)
        result = train_sd(config, out, resume=resume)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(" ".join(f"{k}={v:.4g}" for k, v in result.items()))


@app.command("gdt")
def train_gdt_command(
    out: Path = typer.Option(..., "-o", "--out", help="Pipeline folder to write (saved every 500 steps)."),
    preset: str = typer.Option("tiny", help="GDT preset (tiny)."),
    vae: Path | None = typer.Option(None, help="A trained AutoencoderKL folder; default: train one first."),
    group_size: int = typer.Option(4, help="Images per group."),
    single_image: bool = typer.Option(False, "--single-image", help="Baseline: same data, G = 1 attention."),
    same_image_bias: bool = typer.Option(False, "--same-image-bias",
                                         help="Learn a same-image attention bias per layer and head."),
    drop_shared: float = typer.Option(0.5, min=0.0, max=1.0,
                                      help="Share of groups whose later captions leave out the shared attribute."),
    kinds: str = typer.Option("same_shape,same_colour,moving,same_style",
                              help="Comma-separated group kinds to train on, drawn uniformly from the list "
                                   "(repeat a kind to weight it)."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    groups_per_step: int = typer.Option(8, help="Groups per step."),
    seed: int = typer.Option(0, help="Torch seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Train GDT (group diffusion transformer) on shapes-world groups (see pipelines/gdt/train.py)."""
    import sys

    from pipelines.gdt.train import GDTTrainConfig, train_gdt

    start_run(threads)
    try:
        config = GDTTrainConfig(preset=preset, group_size=group_size, single_image=single_image,
                                same_image_bias=same_image_bias, drop_shared=drop_shared,
                                kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()), steps=steps,
                                groups_per_step=groups_per_step, seed=seed)
        info = train_gdt(config, out, vae, command="mediaforge " + " ".join(sys.argv[1:]))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"saved {out} at step {info['step']} (loss {info['loss']})")


@app.command("sd-decoder")
def train_sd_decoder_command(
    pipeline: Path = typer.Option(..., "-p", "--pipeline", help="SD pipeline folder whose vae/ is fine-tuned."),
    steps: int = typer.Option(2000, help="Decoder steps."),
    max_minutes: float = typer.Option(60.0, help="Wall-clock budget; saves and stops."),
    batch_size: int = typer.Option(16, help="Images per step."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Fine-tune the VAE decoder of a `train sd` pipeline (encoder frozen: the UNet's latents are unchanged)."""
    from diffusers import AutoencoderKL

    from pipelines.data.shapes import ShapesWorld
    from pipelines.sd.train import finetune_vae_decoder

    start_run(threads)
    vae = AutoencoderKL.from_pretrained(pipeline / "vae")
    world = ShapesWorld(vae.config.sample_size, min_objects=1, max_objects=3)
    done = finetune_vae_decoder(vae, world, steps, batch_size, max_minutes=max_minutes,
                                on_save=lambda v: v.save_pretrained(pipeline / "vae"))
    typer.echo(f"decoder steps {done}; saved {pipeline / 'vae'}")


@app.command("vae")
def train_vae_command(
    out: Path = typer.Option(..., "-o", "--out", help="AutoencoderKL folder to write."),
    steps: int = typer.Option(600, help="Optimizer steps."),
    batch_size: int = typer.Option(16, help="Images per step."),
    seed: int = typer.Option(0, help="Torch seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Train xAR's latent space: a 16-channel stride-8 AutoencoderKL on class-conditional shapes world."""

    from pipelines.xar.vae import VAETrainConfig, train_vae

    start_run(threads)
    metrics = train_vae(VAETrainConfig(steps=steps, batch_size=batch_size, seed=seed), out)
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


@app.command("xar")
def train_xar_command(
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write (resumes its checkpoint)."),
    vae: Path = typer.Option(..., "--vae", help="AutoencoderKL folder from `mediaforge train vae`."),
    preset: str = typer.Option("tiny", help="XAR preset."),
    entity: str = typer.Option("cell", help="Prediction entity: cell, patch, subsample, scale, image."),
    entity_size: int = typer.Option(4, help="Side k of a cell / subsample entity."),
    teacher_forcing: bool = typer.Option(False, "--teacher-forcing", help="Baseline: clean context, no NCL."),
    steps: int = typer.Option(3000, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Images per step."),
    lr: float = typer.Option(5e-4, help="Peak learning rate."),
    seed: int = typer.Option(0, help="Torch seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
) -> None:
    """Train class-conditional xAR (flow matching + Noisy Context Learning) on shapes-world latents."""

    from pipelines.xar.train import XARTrainConfig, train_xar

    start_run(threads)
    try:
        config = XARTrainConfig(preset=preset, entity=entity, entity_size=entity_size,
                                noisy_context=not teacher_forcing, steps=steps, batch_size=batch_size, lr=lr,
                                seed=seed)
        info = train_xar(config, vae, out)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"saved {out} at step {info['step']} (loss {info['loss']:.4f}, {info['wall_s']:.0f} s)")


def _weights(text: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise typer.BadParameter(f"expected {count} comma-separated weights, got {text!r}") from err
    if len(values) != count or min(values) < 0 or sum(values) <= 0:
        raise typer.BadParameter(f"expected {count} non-negative weights with a positive sum, got {text!r}")
    return values


@app.command("flow-omni")
def train_flow_omni_command(
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write (resumes its checkpoint)."),
    preset: str = typer.Option("tiny", help="FlowOmni preset (tiny, paper)."),
    output: str = typer.Option("mel", help="Speech output: mel (flow matching) or codes (the codec baseline)."),
    codec: str = typer.Option("wavtokenizer-tiny", help="Codec for --output codes (zoo name or directory)."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(16, help="Examples per step (tasks mixed)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    statements: int = typer.Option(2000, help="Spoken statements (ASR / TTS material)."),
    dialogues: int = typer.Option(600, help="Spoken Q&A pairs (speech-to-speech / text-to-text material)."),
    seed: int = typer.Option(0, help="Torch seed and data seed."),
    threads: int = typer.Option(2, help="torch.set_num_threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    stop_at: int | None = typer.Option(None, help="End this session after this step (resume later)."),
    save_dtype: str = typer.Option("float32", help="dtype of the saved weights: float32 or float16."),
    task_weights: str = typer.Option("0.2,0.4,0.3,0.1", help="Sampling weights of asr,tts,s2s,t2t."),
) -> None:
    """Train Flow-Omni (text + speech-state streams, flow-matching mel head) on espeak dialogue.

    Re-running on the same --out resumes its checkpoint; a larger --steps extends the run (the cosine schedule is
    recomputed for the new total)."""
    from pipelines.flow_omni.train import FlowOmniTrainConfig, train_flow_omni

    start_run(threads)
    try:
        config = FlowOmniTrainConfig(preset=preset, output=output, codec=codec, steps=steps, batch_size=batch_size,
                                     lr=lr, num_statements=statements, num_dialogues=dialogues, seed=seed,
                                     save_dtype=save_dtype, task_weights=_weights(task_weights, 4))
        train_flow_omni(config, out, show_progress=progress, stop_at=stop_at)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"saved {out}")


@app.command("speech-judge")
def train_speech_judge_command(
    out: Path = typer.Option(..., "-o", "--out", help="Model directory to write."),
    preset: str = typer.Option("tiny", help="PhonemeRecognizer preset (tiny, small)."),
    steps: int = typer.Option(1200, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Utterances per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    codec_sentences: int = typer.Option(2500, help="Training sentences from the codec corpus templates."),
    dialogue_sentences: int = typer.Option(2500, help="Training sentences from the dialogue templates."),
    seed: int = typer.Option(0, help="Torch seed and data seed."),
    threads: int = typer.Option(1, help="torch.set_num_threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train the phoneme CTC intelligibility judge on espeak speech in the judge voices."""
    import sys

    from pipelines.speech_judge.train import JudgeTrainConfig, train_speech_judge

    start_run(threads)
    config = JudgeTrainConfig(preset=preset, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                              codec_sentences=codec_sentences, dialogue_sentences=dialogue_sentences)
    metrics = train_speech_judge(config, out, show_progress=progress, command="mediaforge " + " ".join(sys.argv[1:]))
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
