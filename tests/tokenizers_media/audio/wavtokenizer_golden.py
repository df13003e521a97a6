"""The WavTokenizer golden check: recipe weights -> Lightning ckpt -> converter -> outputs vs the official code.

``golden/README.md`` (copied from shared/reference/wavtokenizer_golden) documents the weight recipe and the
inputs; the ``*.npy`` files are outputs of the official implementation. The helpers take the seed and the golden
directory as arguments, so the same check runs on other seeds and inputs::

    python -m tests.tokenizers_media.audio.wavtokenizer_golden --golden-dir DIR --seed 1234 --variant 75
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tokenizers_media.audio.convert_wavtokenizer import convert_wavtokenizer
from tokenizers_media.audio.wavtokenizer import WavTokenizer

DATA = Path(__file__).resolve().parents[2] / "data" / "wavtokenizer"
GOLDEN = DATA / "golden"
TOLERANCE = 1e-4


def load_layout(variant: str) -> dict[str, tuple[int, ...]]:
    """Official inference state-dict layout (key -> shape) of the 75 or 40 tokens/s model."""
    layout = json.loads((DATA / f"wavtokenizer_state_dict_{variant}tps.json").read_text())
    return {k: tuple(v) for k, v in layout.items()}


def load_extra_layout() -> dict[str, tuple[int, ...]]:
    """Training-only keys of a full Lightning checkpoint (discriminators, DAC, mel buffers)."""
    return {k: tuple(v) for k, v in
            json.loads((DATA / "wavtokenizer_lightning_ckpt_extra_keys_75tps.json").read_text())["keys"].items()}


def recipe_state_dict(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights by the golden README's recipe: one generator, keys in sorted order, first matching rule."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(layout):
        shape = layout[key]
        if key.endswith(("_codebook.inited", "_codebook.cluster_size")):
            value = torch.ones(shape)
        elif key.endswith("head.istft.window"):
            value = torch.hann_window(shape[0])
        elif key.endswith(("_codebook.embed", "_codebook.embed_avg")):
            value = torch.randn(shape, generator=g)
        elif key.endswith("weight_g"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("bias"):
            value = torch.randn(shape, generator=g) * 0.02
        elif any(w in key for w in ("norm", "gamma", "scale")) and len(shape) <= 2 and not key.endswith("weight_v"):
            value = 1.0 + torch.randn(shape, generator=g) * 0.02
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        state[key] = value.float()
    return state


def write_lightning_checkpoint(state: dict[str, torch.Tensor], path: Path,
                               extra: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A Lightning-style ``{"state_dict": ...}`` file; ``extra`` keys get cheap zero stand-ins of their shapes."""
    full = dict(state)
    for key, shape in (extra or {}).items():
        full[key] = torch.zeros(1).expand(shape)  # stride-0 view: saved as one element
    torch.save({"state_dict": full, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.8.6"}, path)
    return path


@dataclass
class CaseResult:
    tag: str
    codes_equal: bool
    encoder_max_abs: float
    audio_max_abs: float

    @property
    def ok(self) -> bool:
        return self.codes_equal and self.encoder_max_abs <= TOLERANCE and self.audio_max_abs <= TOLERANCE


def compare_model(model: WavTokenizer, golden_dir: Path, variant: str, seed: int) -> list[CaseResult]:
    """Encode every golden input of (variant, seed) and compare codes / encoder output / audio."""
    results = []
    summary = json.loads((golden_dir / f"summary_{variant}tps_seed{seed}.json").read_text())
    for case in summary["cases"]:
        tag = case["tag"]
        wav = torch.from_numpy(np.load(golden_dir / f"input_{tag}.npy"))
        latents = model.encode_latents(wav)
        codes = model.encode(wav)
        audio = model.decode(codes)
        want_codes = torch.from_numpy(np.load(golden_dir / f"codes_{tag}.npy"))
        want_latents = torch.from_numpy(np.load(golden_dir / f"encoder_{tag}.npy"))
        want_audio = torch.from_numpy(np.load(golden_dir / f"audio_{tag}.npy"))
        results.append(CaseResult(
            tag, codes.shape == want_codes.shape and torch.equal(codes, want_codes.long()),
            _max_abs(latents, want_latents), _max_abs(audio, want_audio)))
    return results


def _max_abs(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max()) if got.shape == want.shape else math.inf


def convert_recipe_model(variant: str, seed: int, workdir: Path, extra_keys: bool = True) -> WavTokenizer:
    """Recipe weights -> Lightning ckpt in ``workdir`` -> ``convert_wavtokenizer`` -> ``from_pretrained``."""
    state = recipe_state_dict(load_layout(variant), seed)
    ckpt = write_lightning_checkpoint(state, workdir / f"wavtokenizer_{variant}.ckpt",
                                      load_extra_layout() if extra_keys else None)
    del state
    model_dir = convert_wavtokenizer(ckpt, workdir / f"converted_{variant}")
    ckpt.unlink()
    return WavTokenizer.from_pretrained(model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden-dir", type=Path, default=GOLDEN)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--variant", choices=["75", "40"], default="75")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wavtokenizer_golden"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = convert_recipe_model(args.variant, args.seed, args.workdir)
    results = compare_model(model, args.golden_dir, args.variant, args.seed)
    for r in results:
        print(f"{r.tag}: codes_equal={r.codes_equal} encoder_max_abs={r.encoder_max_abs:.2e} "
              f"audio_max_abs={r.audio_max_abs:.2e} {'OK' if r.ok else 'FAIL'}")
    raise SystemExit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
