"""What the KARL image job kinds share, for ``karl-tiny`` (``KARL``) and converted release weights (``KARLOfficial``).

Both models serve ``image.tokenize`` and ``image.detokenize`` with the same params, checks and batching; each
job-kind file states only what differs: the input transform, what the tokens file holds (a ``lengths`` prefix
or a per-position ``mask``) and how a file is read back (see :class:`pipelines.base.TokenizerPipeline` for
loading and provenance).
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipelines.base import InputError, ModelT, Params, ProgressCallback, Request, Result, TokenizerPipeline
from pipelines.image_resize import check_rgb_image
from pipelines.media import Image, Tokens
from tokenizers_media.image.karl_common import BaseKARLEncoding

MAX_LATENT_POOL = 512
"""The latent pool of the paper's models: no KARL takes a larger token budget."""


class KARLTokenizeParams(Params):
    target_error: float = Field(0.05, gt=0.0, le=1.0, description="desired per-image L1 in [0, 1] pixels")
    max_tokens: int | None = Field(None, ge=1, le=MAX_LATENT_POOL,
                                   description=f"token budget (default: the model's); at most {MAX_LATENT_POOL}, the "
                                   "latent pool of the paper's models (the model's own is checked before compute)")
    halt_threshold: float | None = Field(None, gt=0.0, lt=1.0, description="halting probability above which "
                                         "tokens are dropped (default: the model's; lower = fewer tokens)")


class KARLTokenizePipeline(TokenizerPipeline[ModelT]):
    """``image.tokenize`` on a KARL model: one batched encoder pass per distinct (budget, threshold).

    A job-kind class names ``model_class`` and gives ``prepare`` (the input transform) and ``tokens_file``.
    """

    kind = "image.tokenize"
    params_model = KARLTokenizeParams
    inputs = {"image": "image"}

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """An input image (3, H, W) in [0, 1] -> the model's input (3, S, S)."""
        raise NotImplementedError

    def tokens_file(self, encoding: BaseKARLEncoding, row: int, params: KARLTokenizeParams, budget: int,
                    threshold: float) -> Tokens:
        """Row ``row`` of a batch ``encoding`` -> the request's tokens file (tensors with a batch of one)."""
        raise NotImplementedError

    def metadata(self, params: KARLTokenizeParams, budget: int, threshold: float) -> dict[str, str]:
        """What every KARL tokens file records: the model, the image side and the settings it was encoded with."""
        return {**self.provenance(), "model_class": type(self.model).__name__,
                "image_size": str(self.model.config.image_size), "target_error": f"{params.target_error:g}",
                "max_tokens": str(budget), "halt_threshold": f"{threshold:g}"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        check_rgb_image(request.inputs["image"], self.kind)
        budget = request.params.max_tokens
        if budget is not None and budget > self.model.config.latent_pool:
            raise InputError(f"max_tokens {budget} is larger than this model's {self.model.config.latent_pool}")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        # 1. Check inputs and bring every image to the model's input.
        c = self.model.config
        images = torch.stack([self.prepare(r.inputs["image"].pixels) for r in requests]).to(self.device)
        settings = [(r.params.max_tokens or c.max_tokens, r.params.halt_threshold or c.halt_threshold)
                    for r in requests]
        results: list[Result | None] = [None] * len(requests)
        # 2. One encoder pass per distinct (budget, threshold); targets may differ per image.
        for budget, threshold in sorted(set(settings)):
            rows = [i for i, s in enumerate(settings) if s == (budget, threshold)]
            targets = torch.tensor([requests[i].params.target_error for i in rows])
            enc = self.model.encode(images[rows], target_error=targets, max_tokens=budget, halt_threshold=threshold)
            for j, i in enumerate(rows):
                results[i] = {"tokens": self.tokens_file(enc, j, requests[i].params, budget, threshold)}
            if progress:
                progress(sum(r is not None for r in results) / len(results), f"encoded {len(rows)} image(s)")
        return [r for r in results if r is not None]


class KARLDetokenizePipeline(TokenizerPipeline[ModelT]):
    """``image.detokenize`` on a KARL model: each tokens file decoded on its own, the image clipped to [0, 1].

    A job-kind class names ``model_class`` and gives ``decode_args``, which reads and checks a file.
    """

    kind = "image.detokenize"
    params_model = Params
    inputs = {"tokens": "tokens"}

    def decode_args(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (1, T[, D]), active tokens) of a file, as the model's ``decode`` takes them; ``InputError``
        naming what is wrong otherwise."""
        raise NotImplementedError

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        tokens = request.inputs["tokens"]
        if not isinstance(tokens, Tokens):
            raise InputError("image.detokenize needs a tokens file")
        self.check_provenance(tokens)
        self.decode_args(tokens)

    def _check_slots(self, name: str, values: torch.Tensor) -> int:
        """T of ``name`` (1, T, ...): at least one slot and no more than the model's latent pool."""
        slots, pool = values.shape[1], self.model.config.latent_pool
        if not 1 <= slots <= pool:
            raise InputError(f"'{name}' has {slots} slots; this model takes 1..{pool}")
        return slots

    def _prefix_mask(self, lengths: torch.Tensor, slots: int) -> torch.Tensor:
        """A karl-tiny ``lengths`` (1,) -> its (1, T) active prefix."""
        if lengths.shape != (1,) or not 0 <= int(lengths[0]) <= slots:
            raise InputError(f"'lengths' must be one value in [0, {slots}], got {lengths.tolist()}")
        return torch.arange(slots)[None] < int(lengths[0])

    def _check_codes(self, active: torch.Tensor) -> None:
        """The active codes must index the model's codebook (padding outside them may be anything)."""
        size = self.model.config.codebook_size
        if active.numel() and (int(active.min()) < 0 or int(active.max()) >= size):
            raise InputError(f"codes out of range [{int(active.min())}, {int(active.max())}]; this model has "
                             f"{size} codes")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        results: list[Result] = []
        for i, request in enumerate(requests):
            # One by one: budgets (T) may differ between files, and decoding needs no padding across them.
            values, active = self.decode_args(request.inputs["tokens"])
            image = self.model.decode(values.to(self.device), active.to(self.device))[0].clamp(0.0, 1.0).cpu()
            results.append({"image": Image(image)})
            if progress:
                progress((i + 1) / len(requests), f"decoded {i + 1}/{len(requests)}")
        return results
