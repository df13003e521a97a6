"""``mediaforge train MODEL``: one sub-command per trainable model, its options built from the model's config.

Every option default is the config dataclass's (``api.cli.config_options``); fields without an option of their
own are reachable with ``--set key=value`` or ``--config run.json``. Every command shares ``-o/--output DIR``,
``--threads N`` (default 1; 0 keeps torch's default), ``--progress/--no-progress`` and ``--resume``: a run
starts only in a new or empty directory, ``--resume`` continues the one there (exit 2 otherwise).
"""

from __future__ import annotations

import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from api.cli.config_options import (
    Opt,
    OptionGroup,
    config_command,
    default_of,
    set_threads,
    threads_option,
)
from pipelines.flow_omni.train import FlowOmniTrainConfig, train_flow_omni
from pipelines.gdt.train import GDTTrainConfig, train_gdt
from pipelines.karl.train import KARLTrainConfig, PerturbOptions, train_karl
from pipelines.sd.train import SDDecoderConfig, SDTrainConfig, finetune_decoder_in_place, train_sd
from pipelines.shapes_classifier.train import ClassifierTrainConfig, train_shapes_classifier
from pipelines.speech_judge.train import JudgeTrainConfig, train_speech_judge
from pipelines.textok.train import TexTokTrainConfig, train_textok
from pipelines.training.vae import PRESETS as VAE_PRESETS
from pipelines.training.vae import VAETrainConfig, train_vae
from pipelines.vocoder.train import VocoderTrainConfig, train_vocoder
from pipelines.wavtokenizer.train import TrainConfig as WavTokenizerTrainConfig
from pipelines.wavtokenizer.train import train_wavtokenizer
from pipelines.xar.train import XARTrainConfig, train_xar
from pipelines.zoo import resolve_model

app = typer.Typer(no_args_is_help=True)


def start_run(threads: int) -> None:
    """Log lines with timestamps and a fixed torch thread count (0: torch's default) for a training run."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    set_threads(threads)


@dataclass(frozen=True)
class TrainRun:
    """Where and how a command trains: its directory, whether it continues the run there, the progress bar."""

    output: Path
    resume: bool = False
    show_progress: bool = True

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments every trainer takes."""
        return {"resume": self.resume, "show_progress": self.show_progress}


def _open_run(output: Path | None, old_output: Path | None, threads: int, progress: bool, resume: bool) -> TrainRun:
    """The common options as a :class:`TrainRun`; a reused directory needs ``--resume`` (checked before any
    data is built, also for trainers that keep no checkpoint)."""
    path = output or old_output
    if path is None:
        raise typer.BadParameter("missing option -o/--output DIR", param_hint="'-o' / '--output'")
    if not resume and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} is not empty: pass --resume to continue the run in it, or give a new or "
                              "empty directory to start over")
    start_run(threads)
    return TrainRun(path, resume, progress)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


TRAIN = OptionGroup([
    _param("output", Path | None, typer.Option(None, "-o", "--output", help="Run directory to write (required): new or "
                                               "empty, or with --resume the run to continue.", show_default=False)),
    _param("old_output", Path | None, typer.Option(None, "--out", "--output-dir", hidden=True,
                                                   help="Deprecated spelling of -o/--output.")),
    threads_option(),
    _param("progress", bool, typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")),
    _param("resume", bool, typer.Option(False, "--resume", help="Continue the run in the output directory under "
                                        "its saved config (a larger --steps extends it).")),
], _open_run)

THREADS_ONLY = OptionGroup([threads_option()], start_run)


def zoo_path(name: str) -> str:
    """A zoo name or model directory -> the directory, as configs store it."""
    return str(resolve_model(name).path)


def _command_line() -> str:
    """This invocation, for model cards."""
    return "mediaforge " + " ".join(sys.argv[1:])


def _init(what: str) -> Opt:
    return Opt(f"Start from this trained {what} (zoo name or model directory).", parse=zoo_path)


@app.command("shapes-classifier")
@config_command(ClassifierTrainConfig, {
    "steps": "Optimizer steps.",
    "batch_size": "Images per step.",
    "seed": "Torch seed for the initial weights.",
}, TRAIN)
def train_shapes_classifier_command(config: ClassifierTrainConfig, run: TrainRun) -> None:
    """Train the shapes-world classifier (proxy-FID features and judge) and write its model card."""
    metrics = train_shapes_classifier(config, run.output, **run.kwargs, command=_command_line())
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


@app.command("karl")
@config_command(KARLTrainConfig, {
    "preset": "KARL preset (tiny, paper-small).",
    "steps": "Optimizer steps.",
    "batch_size": "Images per step.",
    "lr": "Peak learning rate.",
    "l1_weight": "Pixel L1 loss weight.",
    "l2_weight": "Pixel L2 loss weight.",
    "token_step": "Budget-pass token counts are token_step, 2 token_step, ..., max (1: every count, so the halting "
                  "head also learns the fewest-token regime).",
    "halt_weight": "Weight of the halting BCE in the learn-to-tokenize pass.",
    "perturb": Opt("Robust latent perturbation, e.g. alpha=1,beta=0.1,delta=100.", parse=PerturbOptions.parse),
    "seed": "Torch seed for the initial weights and the pass randomness.",
    "init": _init("KARL"),
    "halting_only": "Train only the halting head of --init (the rest frozen).",
    "budget_per_image": "Draw the budget-pass T per image, not once per step.",
}, TRAIN)
def train_karl_command(config: KARLTrainConfig, run: TrainRun,
                       stop_at: int | None = typer.Option(None, help="End this session after this step (resume "
                                                          "later).")) -> None:
    """Train KARL on shapes world (two-pass adaptive-token training), saving samples and checkpoints."""
    train_karl(config, run.output, **run.kwargs, stop_at=stop_at)
    typer.echo(f"saved {run.output}")


GAN_FIELDS: dict[str, str | Opt | None] = {
    "steps": "Generator steps in total (may be raised on --resume).",
    "batch_size": "Crops per step.",
    "crop_seconds": "Crop length in seconds.",
    "lr": "Peak AdamW learning rate of the generator.",
    "disc_lr": "Peak AdamW learning rate of the discriminators.",
    "mel_only_steps": "First steps on the reconstruction losses only, before the GAN starts (may be raised on "
                      "--resume).",
    "mpd_width": "Multi-period discriminator width (official 32).",
    "mrd_width": "Multi-resolution discriminator width (official 64).",
    "train_utterances": None,
    "seed": "Seed of the weights, the corpus and the crops.",
    "checkpoint_every": "Steps between resumable checkpoint.pt saves.",
}
"""Options of the knobs every GAN audio run has (``GanTrainConfig``)."""


@app.command("wavtokenizer")
@config_command(WavTokenizerTrainConfig, {
    "preset": "Model size: tiny (CPU) or paper-75 / paper-40.",
    **GAN_FIELDS,
    "quantizer_warmup_steps": "First steps without the quantizer; k-means init after.",
    "encoder_init": "Encoder kernels: default (official) or kaiming (CPU runs).",
    "commit_coeff": "Commitment weight (official 1000, tuned to its latent scale).",
    "snapshot_every": "Steps between model snapshots in OUTPUT/snapshots/.",
}, TRAIN)
def train_wavtokenizer_command(config: WavTokenizerTrainConfig, run: TrainRun) -> None:
    """Train WavTokenizer on espeak-ng speech + synthetic tones (see pipelines/wavtokenizer/train.py)."""
    typer.echo(f"saved {train_wavtokenizer(config, run.output, **run.kwargs)}")


@app.command("vocoder")
@config_command(VocoderTrainConfig, {
    "preset": "MelVocoder size: tiny (CPU) or paper.",
    **GAN_FIELDS,
    "input_mel_coeff": "Weight of an extra L1 to the input log-mel (not in Vocos).",
    "answer_utterances": None,
    "init": Opt("Start from this trained vocoder (zoo name or model directory).", parse=zoo_path),
}, TRAIN)
def train_vocoder_command(config: VocoderTrainConfig, run: TrainRun,
                          eval_clips: int = typer.Option(default_of(train_vocoder, "evaluate_clips"),
                                                         help="Held-out sentences per voice set for the model "
                                                              "card (0: none).")) -> None:
    """Train the Flow-Omni mel vocoder (Vocos recipe) on espeak-ng speech; card compares it with Griffin-Lim."""
    out = train_vocoder(config, run.output, **run.kwargs, evaluate_clips=eval_clips, command=_command_line())
    typer.echo(f"saved {out}")


def _perturb_strength(text: str) -> tuple[float, float, int]:
    options = PerturbOptions.parse(text)
    return options.alpha, options.beta, options.delta


@app.command("textok")
@config_command(TexTokTrainConfig, {
    "preset": "TexTok preset (tiny, tiny-64, paper-B).",
    "num_latent_tokens": Opt("Number of latent tokens N (32, 64, 128, 256).", flag="--tokens"),
    "text_conditioning": Opt("Text conditioning (--no-text: the ablation).", flag="--text/--no-text"),
    "text_encoder": "minilm (frozen, pretrained) or learned.",
    "bottleneck": "kl (continuous, the paper) or vq.",
    "steps": "Optimizer steps.",
    "batch_size": "Images per step.",
    "lr": "Peak learning rate.",
    "pool_size": "Training images (with precomputed caption embeddings).",
    "eval_images": "Held-out images for the final PSNR / SSIM.",
    "perturb": Opt("vq only: robust latent perturbation alpha=..,beta=..,delta=..", parse=_perturb_strength),
    "text_dropout": "Share of training images trained without their caption.",
    "caption_style": "coarse (names objects) or exact (pins all geometry).",
    "init": _init("TexTok"),
    "seed": "Torch seed.",
}, TRAIN)
def train_textok_command(config: TexTokTrainConfig, run: TrainRun) -> None:
    """Train TexTok on shapes world; writes OUTPUT/checkpoint.pt, OUTPUT/model and OUTPUT/metrics.json."""
    metrics = train_textok(config, run.output, **run.kwargs)
    typer.echo(" ".join(f"{k}={v}" for k, v in metrics.items()))


@app.command("sd")
@config_command(SDTrainConfig, {
    "preset": "Model sizes (tiny).",
    "vae_steps": "AutoencoderKL steps (first phase).",
    "unet_steps": "UNet + text encoder steps (second phase).",
    "max_minutes": None,
    "batch_size": "Images per step.",
    "seed": "Torch / caption seed.",
}, TRAIN)
def train_sd_command(config: SDTrainConfig, run: TrainRun) -> None:
    """Train a tiny latent diffusion text-to-image model on shapes world (VAE, CLIP text encoder, UNet)."""
    result = train_sd(config, run.output, **run.kwargs)
    typer.echo(" ".join(f"{k}={v:.4g}" for k, v in result.items()))


@app.command("gdt")
@config_command(GDTTrainConfig, {
    "preset": "GDT preset (tiny).",
    "group_size": "Images per group.",
    "single_image": None,
    "same_image_bias": None,
    "drop_shared": None,
    "kinds": "Comma-separated group kinds to train on, drawn uniformly from the list (repeat a kind to weight it).",
    "steps": "Optimizer steps.",
    "groups_per_step": "Groups per step.",
    "seed": "Torch seed.",
}, TRAIN)
def train_gdt_command(config: GDTTrainConfig, run: TrainRun,
                      vae: Path | None = typer.Option(None, help="A trained AutoencoderKL folder; default: train "
                                                      "one first.")) -> None:
    """Train GDT (group diffusion transformer) on shapes-world groups (see pipelines/gdt/train.py)."""
    info = train_gdt(config, run.output, vae_dir=vae, **run.kwargs, command=_command_line())
    typer.echo(f"saved {run.output} at step {info['step']} (loss {info['loss']})")


@app.command("sd-decoder")
@config_command(SDDecoderConfig, {"steps": None, "batch_size": None, "max_minutes": None}, THREADS_ONLY)
def train_sd_decoder_command(config: SDDecoderConfig, _: None,
                             pipeline: Path = typer.Option(..., "-p", "--pipeline", help="An existing `train sd` "
                                                           "pipeline folder; its vae/ is overwritten in place.")
                             ) -> None:
    """Fine-tune, in place, the VAE decoder of an existing `train sd` pipeline folder (encoder frozen: the UNet's
    latents are unchanged). Unlike the other trainers it edits a model rather than starting a run: no -o, no
    --resume, PIPELINE/vae is rewritten every save_every steps; copy the folder first to keep the original."""
    done = finetune_decoder_in_place(config, pipeline)
    typer.echo(f"decoder steps {done}; saved {pipeline / 'vae'}")


@app.command("vae")
@config_command(VAETrainConfig, {
    "steps": "Optimizer steps.",
    "batch_size": "Images per step.",
    "lr": "Peak learning rate.",
    "seed": "Torch seed.",
}, TRAIN, presets=VAE_PRESETS)
def train_vae_command(config: VAETrainConfig, run: TrainRun) -> None:
    """Train a latent space: an AutoencoderKL on shapes world, by default xAR's (16 channels, stride 8,
    class-conditional images). --preset gdt / sd gives the VAE phase of `train gdt` / `train sd` on its own (see
    pipelines/training/vae.py); the options override the preset's values."""
    metrics = train_vae(config, run.output, **run.kwargs)
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


@app.command("xar")
@config_command(XARTrainConfig, {
    "preset": "XAR preset.",
    "entity": "Prediction entity: cell, patch, subsample, scale, image.",
    "entity_size": "Side k of a cell / subsample entity.",
    "noisy_context": Opt("Noisy Context Learning (--teacher-forcing: the baseline, clean context).",
                         flag="--noisy-context/--teacher-forcing"),
    "steps": "Optimizer steps.",
    "batch_size": "Images per step.",
    "lr": "Peak learning rate.",
    "seed": "Torch seed.",
}, TRAIN)
def train_xar_command(config: XARTrainConfig, run: TrainRun,
                      vae: Path = typer.Option(..., "--vae", help="AutoencoderKL folder from `mediaforge train "
                                               "vae`.")) -> None:
    """Train class-conditional xAR (flow matching + Noisy Context Learning) on shapes-world latents."""
    info = train_xar(config, run.output, vae_dir=vae, **run.kwargs)
    typer.echo(f"saved {run.output} at step {info['step']} (loss {info['loss']:.4f})")


@app.command("flow-omni")
@config_command(FlowOmniTrainConfig, {
    "preset": "FlowOmni preset (tiny, paper).",
    "output": Opt("Speech head: mel (flow matching) or codes (the codec baseline).", flag="--speech-output"),
    "codec": None,
    "steps": "Optimizer steps (a larger value on --resume extends the run; the cosine follows the new total).",
    "batch_size": "Examples per step (tasks mixed).",
    "lr": "Peak learning rate.",
    "num_statements": Opt("Spoken statements (ASR / TTS material).", flag="--statements"),
    "num_dialogues": Opt("Spoken Q&A pairs (speech-to-speech / text-to-text material).", flag="--dialogues"),
    "seed": "Torch seed and data seed.",
    "save_dtype": None,
    "task_weights": None,
}, TRAIN)
def train_flow_omni_command(config: FlowOmniTrainConfig, run: TrainRun,
                            stop_at: int | None = typer.Option(None, help="End this session after this step "
                                                               "(resume later).")) -> None:
    """Train Flow-Omni (text + speech-state streams, flow-matching mel head) on espeak dialogue."""
    train_flow_omni(config, run.output, **run.kwargs, stop_at=stop_at)
    typer.echo(f"saved {run.output}")


@app.command("speech-judge")
@config_command(JudgeTrainConfig, {
    "preset": "PhonemeRecognizer preset (tiny, small).",
    "steps": "Optimizer steps.",
    "batch_size": "Utterances per step.",
    "lr": "Peak learning rate.",
    "codec_sentences": "Training sentences from the codec corpus templates.",
    "dialogue_sentences": "Training sentences from the dialogue templates.",
    "seed": "Torch seed and data seed.",
}, TRAIN)
def train_speech_judge_command(config: JudgeTrainConfig, run: TrainRun) -> None:
    """Train the phoneme CTC intelligibility judge on espeak speech in the judge voices."""
    metrics = train_speech_judge(config, run.output, **run.kwargs, command=_command_line())
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
