"""Released KARL checkpoints (github.com/ShivamDuggal4/karl ``.pth``) -> mediaforge model directories.

The official ``save_model`` writes ``{"model", "ema", "epoch", "args", ...}``; the demo loads ``ema``, so EMA is
preferred. ``args`` is a pickled ``argparse.Namespace``: it is the only class allowed to the unpickler
(``torch.load`` stays ``weights_only``, so nothing else in the file can run code; a file that pickles anything
else is refused, naming the class). Module names of ``KARLOfficial`` are the official ones; the sizes and the
base tokenizer are read from tensor shapes, and the weights load strictly. Keys of training-only modules
(``gan_losses.*``: LPIPS / discriminator) are dropped by name; any other missing, unexpected or mis-shaped key is
an error that names it.

Two sizes are not in the shapes and come from ``args``: the image side (``args.input_size``; the positional
tables are resampled to any grid) and the attention heads (those of the official constructor ``args.model``
names). A checkpoint without them is refused with an error naming what is missing, rather than guessed.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from pathlib import Path

import torch

from tokenizers_media.image.karl_official import KARLOfficial, KARLOfficialConfig

logger = logging.getLogger(__name__)

TRAINING_ONLY_PREFIXES = ("gan_losses.",)
MODEL_HEADS = {"karl_small": 8}
"""Attention heads of each official constructor (``args.model``) in both transformers; the released weights are
all ``karl_small`` (8 heads of 128 at width 1024)."""
FROM_ARGS = {"input_size": "the image side", "model": "the official model, which fixes the attention heads"}
"""What a conversion needs from ``args`` because no tensor shape shows it."""


def read_official_checkpoint(path: str | Path, use_ema: bool = True) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict, args or None) of an official ``.pth``: ``ema`` when present (default), else ``model``."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message says which global was refused, after its generic advice to load with weights_only=False.
        refused = str(err).rpartition("WeightsUnpickler error:")[2].strip().split(". ")[0]
        raise ValueError(f"{path} pickles more than tensors and the argparse.Namespace of its args, which is all "
                         f"the converter unpickles (so nothing in the file can run code): {refused}") from err
    except RuntimeError as err:  # not a torch zip archive: a truncated download, another format
        raise ValueError(f"{path} is not a readable torch checkpoint ({err})") from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    order = ["ema", "model"] if use_ema else ["model"]
    name = next((k for k in order if k in checkpoint), None)
    if name is None:
        raise ValueError(f"{path} has none of the entries {order}; it has {sorted(checkpoint)}")
    if use_ema and name != "ema":
        logger.warning("%s has no ema; converting the raw (non-EMA) weights", path)
    state = {k.removeprefix("module."): v for k, v in checkpoint[name].items()
             if not k.removeprefix("module.").startswith(TRAINING_ONLY_PREFIXES)}
    return state, checkpoint.get("args")


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def _sizes_from_args(args: object, width: int) -> tuple[int, int]:
    """(image side, attention heads) from the checkpoint's ``args``: neither is visible in the tensor shapes."""
    missing = [f"args.{name} ({what})" for name, what in FROM_ARGS.items() if getattr(args, name, None) is None]
    if missing:
        entry = " (it has no 'args' entry)" if args is None else ""
        raise ValueError(f"the checkpoint{entry} lacks {' and '.join(missing)}, which the tensor shapes do not "
                         "show")
    model = args.model
    if model not in MODEL_HEADS:
        raise ValueError(f"args.model is {model!r}, whose attention heads are not known; known: {sorted(MODEL_HEADS)}")
    heads = MODEL_HEADS[model]
    if width % heads:
        raise ValueError(f"width {width} (from latent_tokens) does not split into the {heads} heads of {model!r}")
    return int(args.input_size), heads


def infer_config(state: dict[str, torch.Tensor], args: object) -> KARLOfficialConfig:
    """The ``KARLOfficialConfig`` whose layout these tensors have; ``args`` (the checkpoint's) gives the image side
    and the model whose head count is used."""
    bases = sorted({m.group(1) for k in state if (m := re.match(r"base_tokenizer\.(\w+)\.", k))})
    if len(bases) != 1 or bases[0] not in ("vqgan", "vae"):
        raise ValueError(f"expected base_tokenizer.vqgan.* or base_tokenizer.vae.* keys, found bases {bases}")
    base = bases[0]
    official = getattr(args, "base_tokenizer", base)
    if official != base:
        raise ValueError(f"args.base_tokenizer is {official!r} but the tensors are those of a {base!r} base")
    try:
        b = f"base_tokenizer.{base}."
        base_ch = state[b + "encoder.conv_in.weight"].shape[0]
        levels = _count(state, rf"{re.escape(b)}encoder\.down\.(\d+)\.")
        width = state["latent_tokens"].shape[1]
        image_size, num_heads = _sizes_from_args(args, width)
        return KARLOfficialConfig(
            base=base,
            image_size=image_size,
            patch_size=state["patch_embed.weight"].shape[-1],
            width=width,
            encoder_depth=_count(state, r"encoder\.transformer\.(\d+)\."),
            decoder_depth=_count(state, r"decoder\.transformer\.(\d+)\."),
            num_heads=num_heads,
            latent_pool=state["latent_tokens"].shape[0],
            max_tokens=min(256, state["latent_tokens"].shape[0]),
            position_grid=state["encoder_positional_embedding"].shape[-1],
            code_dim=state["pre_quantizer_mlp.weight"].shape[0],
            codebook_size=state["quantize.embedding.weight"].shape[0] if "quantize.embedding.weight" in state else 0,
            base_ch=base_ch,
            base_ch_mult=tuple(state[b + f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // base_ch
                               for i in range(levels)),
            base_embed_dim=state[b + "decoder.conv_in.weight"].shape[1],
            base_codebook_size=state[b + "quantize.embedding.weight"].shape[0] if base == "vqgan" else 1024,
            base_decoder_blocks=_count(state, rf"{re.escape(b)}decoder\.up\.0\.block\.(\d+)\."),
        )
    except KeyError as err:
        raise ValueError(f"not a KARL state dict: it has no {err.args[0]!r}") from err


def convert_state_dict(state: dict[str, torch.Tensor], args: object) -> KARLOfficial:
    """Build a ``KARLOfficial`` for these tensors and load them strictly (errors name every bad key)."""
    config = infer_config(state, args)
    with torch.device("meta"):
        model = KARLOfficial(config)
    own = {k: v.shape for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if state[k].shape != own[k])
    if missing or unexpected or misshaped:
        raise ValueError(f"checkpoint does not fit {config}: missing {missing}, unexpected {unexpected}, "
                         f"wrong shape {misshaped}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def convert_checkpoint(path: str | Path, output_dir: str | Path, use_ema: bool = True) -> Path:
    """``mediaforge convert karl``: official ``.pth`` -> ``config.json`` + ``model.safetensors``."""
    state, args = read_official_checkpoint(path, use_ema)
    return convert_state_dict(state, args).save_pretrained(output_dir)
