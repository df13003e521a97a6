"""Official WavTokenizer checkpoints -> mediaforge model directories.

The released files are PyTorch-Lightning checkpoints (``{"state_dict": ...}``) holding the inference model plus
discriminators, a stale DAC copy and mel buffers (shared/specs/audio.md, "Checkpoint format"). Like the official
loader we keep the ``feature_extractor.`` / ``backbone.`` / ``head.`` keys; we also drop the never-used EnCodec
decoder (``feature_extractor.encodec.decoder.*``) by name. The configuration follows from the tensor shapes (both
published variants, or any size of the same architecture); an official YAML config, if given, is cross-checked.
Loading is strict: any other missing, unexpected or mis-shaped key is an error that names it.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import torch

from tokenizers_media.audio.wavtokenizer import WavTokenizer, WavTokenizerConfig

logger = logging.getLogger(__name__)

INFERENCE_PREFIXES = ("feature_extractor.", "backbone.", "head.")
UNUSED_PREFIX = "feature_extractor.encodec.decoder."
_ENCODER = "feature_extractor.encodec.encoder.model"
_CODEBOOK = "feature_extractor.encodec.quantizer.vq.layers.0._codebook"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a Lightning ``.ckpt`` (its ``state_dict`` entry) or of a bare state-dict file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling failures come in many types; all mean "not loadable safely"
        raise ValueError(f"{path} is not a torch checkpoint loadable with weights_only=True: {err}") from err
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds neither a state dict nor a Lightning checkpoint with a 'state_dict'")
    return state


def select_inference_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the inference keys, dropping the unused EnCodec decoder and training-only modules."""
    kept = {k: v for k, v in state.items() if k.startswith(INFERENCE_PREFIXES) and not k.startswith(UNUSED_PREFIX)}
    dropped = sorted({k.split(".")[0] for k in state if not k.startswith(INFERENCE_PREFIXES)})
    logger.info("kept %d of %d tensors; dropped the EnCodec decoder and training-only %s", len(kept), len(state),
                dropped)
    return kept


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"checkpoint has no {key!r}, which the WavTokenizer layout needs")
    return tuple(state[key].shape)


def infer_config(state: dict[str, torch.Tensor], sample_rate: int = 24000) -> WavTokenizerConfig:
    """The WavTokenizerConfig whose layout has these shapes (75 or 40 tokens/s, or another size)."""
    n_filters = _shape(state, f"{_ENCODER}.0.conv.conv.weight_v")[0]
    # SEANet stages are [resblock, ELU, down-conv] at indices 1+3s .. 3+3s; down-conv kernel = 2 x stride.
    strides, index = [], 3
    while f"{_ENCODER}.{index - 2}.block.1.conv.conv.weight_v" in state:  # stage has a resblock
        strides.append(_shape(state, f"{_ENCODER}.{index}.conv.conv.weight_v")[-1] // 2)
        index += 3
    if not strides:
        raise ValueError(f"checkpoint has no SEANet downsampling convs under {_ENCODER!r}")
    lstm_layers = len([k for k in state if re.fullmatch(rf"{re.escape(_ENCODER)}\.\d+\.lstm\.weight_ih_l\d+", k)])
    codebook_size, latent_dim = _shape(state, f"{_CODEBOOK}.embed")
    backbone_dim = _shape(state, "backbone.embed.weight")[0]
    num_layers = len({k.split(".")[2] for k in state if k.startswith("backbone.convnext.")})
    n_fft = _shape(state, "head.istft.window")[0]
    return WavTokenizerConfig(
        sample_rate=sample_rate, encoder_n_filters=n_filters, encoder_ratios=tuple(reversed(strides)),
        encoder_lstm_layers=lstm_layers, latent_dim=latent_dim, codebook_size=codebook_size,
        backbone_dim=backbone_dim, backbone_intermediate_dim=_shape(state, "backbone.convnext.0.pwconv1.weight")[0],
        backbone_layers=num_layers, adanorm_num_embeddings=_shape(state, "backbone.norm.scale.weight")[0],
        n_fft=n_fft, hop_length=math.prod(strides))


def _model_args(official: dict[str, Any]) -> dict[str, Any]:
    """``model.init_args`` of a LightningCLI config (or the mapping itself when it is already that)."""
    model = official.get("model", official)
    return model.get("init_args", model)


def check_official_yaml(config: WavTokenizerConfig, official: dict[str, Any]) -> None:
    """Raise ValueError naming each field where an official YAML config disagrees with the weights."""
    args = _model_args(official)
    parts = {name: (args.get(name) or {}).get("init_args", {}) for name in ("feature_extractor", "backbone", "head")}
    expected = {
        "sample_rate": (args.get("sample_rate"), config.sample_rate),
        "feature_extractor.dowmsamples": (parts["feature_extractor"].get("dowmsamples"), list(config.encoder_ratios)),
        "feature_extractor.vq_bins": (parts["feature_extractor"].get("vq_bins"), config.codebook_size),
        "feature_extractor.num_quantizers": (parts["feature_extractor"].get("num_quantizers"), 1),
        "backbone.input_channels": (parts["backbone"].get("input_channels"), config.latent_dim),
        "backbone.dim": (parts["backbone"].get("dim"), config.backbone_dim),
        "backbone.intermediate_dim": (parts["backbone"].get("intermediate_dim"), config.backbone_intermediate_dim),
        "backbone.num_layers": (parts["backbone"].get("num_layers"), config.backbone_layers),
        "head.n_fft": (parts["head"].get("n_fft"), config.n_fft),
        "head.hop_length": (parts["head"].get("hop_length"), config.hop_length),
        "head.padding": (parts["head"].get("padding"), "same"),
    }
    wrong = [f"{name}: YAML says {said!r}, weights say {have!r}" for name, (said, have) in expected.items()
             if said is not None and said != have]
    if wrong:
        raise ValueError("the YAML config does not match the checkpoint: " + "; ".join(wrong))
    if parts["feature_extractor"].get("vq_kmeans") not in (None, config.kmeans_iters):
        logger.info("YAML vq_kmeans=%s only matters for training", parts["feature_extractor"]["vq_kmeans"])


def load_strict(model: WavTokenizer, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict`` (assigning the tensors, so ``model`` may live on the meta device) that raises
    ValueError naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                        if k in state and state[k].shape != v.shape)
    problems = [f"{label}: {', '.join(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mis_shaped)) if keys]
    if problems:
        raise ValueError("checkpoint does not match the WavTokenizer layout; " + "; ".join(problems))
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)


def convert_wavtokenizer(checkpoint: str | Path, output_dir: str | Path, config_yaml: str | Path | None = None,
                         ) -> Path:
    """Convert an official checkpoint into a model directory loadable by ``WavTokenizer.from_pretrained``."""
    state = select_inference_weights(read_checkpoint(checkpoint))
    official = None
    if config_yaml is not None:
        import yaml

        try:
            official = yaml.safe_load(Path(config_yaml).read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{config_yaml} is not valid YAML: {err}") from err
        if not isinstance(official, dict):
            raise ValueError(f"{config_yaml} is not a YAML mapping")
    sample_rate = 24000
    if official is not None:
        sample_rate = int(_model_args(official).get("sample_rate", sample_rate))
    config = infer_config(state, sample_rate)
    if official is not None:
        check_official_yaml(config, official)
    with torch.device("meta"):  # no time spent on a random init that the checkpoint overwrites
        model = WavTokenizer(config)
    load_strict(model, state)
    if not model.feature_extractor.quantizer.codebook.is_initialized:
        logger.warning("the checkpoint's codebook is not initialised (inited == 0): encode will refuse to run")
    logger.info("converted a %g tokens/s WavTokenizer (hop %d, n_fft %d)", model.token_rate, config.hop_length,
                config.n_fft)
    return model.save_pretrained(output_dir)
