"""Official xAR checkpoints (OliverRensu/xAR ``.pth``) -> mediaforge model directories.

The official training script saves a dict with ``model`` and ``model_ema`` state dicts (plus optimizer state
and the argparse namespace). Module names already match ``XAR``; the converter infers the size from tensor
shapes, checks that the stored mask and RoPE tables equal the ones this implementation computes (a mismatch
means a different token layout), loads strictly and saves.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch

from pipelines.xar.model import XAR, XARConfig

logger = logging.getLogger(__name__)

_DERIVED_SUFFIXES = ("rope.freqs", "rope.freqs_cos", "rope.freqs_sin")


def read_official_state_dict(path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The EMA (default) or raw weights of an official ``.pth``; a bare state dict is accepted too."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    order = ["model_ema", "model"] if use_ema else ["model"]
    state = next((checkpoint[k] for k in order if k in checkpoint), None)
    if state is None:
        if "z_proj.weight" not in checkpoint:
            raise ValueError(f"{path} has none of the keys {order} and is not a bare xAR state dict")
        state = checkpoint
    elif use_ema and "model_ema" not in checkpoint:
        logger.warning("%s has no model_ema; converting the raw (non-EMA) weights", path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_config(state: dict[str, torch.Tensor]) -> XARConfig:
    """Sizes of an official xAR (next-cell, square grid) from its state dict."""
    width, channels = state["z_proj.weight"].shape
    num_tokens = state["encoder_pos_embed_learned"].shape[1]
    grid = int(round(num_tokens**0.5))
    first_cell = int((state["mask"][0, 0, 0] == 0).sum())  # tokens visible to token 0 = its own cell
    head_dim = state["encoder_blocks.0.attn.rope.freqs_cos"].shape[-1]

    def depth(stack: str) -> int:
        return len({m.group(1) for k in state if (m := re.match(rf"{stack}\.(\d+)\.", k))})

    return XARConfig(
        latent_channels=channels,
        grid_size=grid,
        entity="cell",
        entity_size=int(round(first_cell**0.5)),
        width=width,
        encoder_depth=depth("encoder_blocks"),
        decoder_depth=depth("decoder_blocks"),
        num_heads=width // head_dim,
        mlp_hidden_dim=state["encoder_blocks.0.mlp.fc1_g.weight"].shape[0],
        num_classes=state["class_emb.weight"].shape[0] - 1,
    )


def convert_state_dict(state: dict[str, torch.Tensor]) -> XAR:
    """Build and strictly load an ``XAR`` from an official state dict."""
    model = XAR(infer_config(state))
    own = model.state_dict()
    for key, value in state.items():
        if (key == "mask" or key.endswith(_DERIVED_SUFFIXES)) and key in own:
            if value.shape != own[key].shape or not torch.allclose(value.float(), own[key], atol=1e-4):
                raise ValueError(f"checkpoint buffer {key} differs from the one computed for {model.config}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def convert_checkpoint(path: str | Path, output_dir: str | Path, use_ema: bool = True) -> Path:
    """``mediaforge convert xar``: official ``.pth`` -> a model directory loadable by ``XAR.from_pretrained``."""
    model = convert_state_dict(read_official_state_dict(path, use_ema))
    return model.save_pretrained(output_dir)
