import pytest
import torch

from pipelines.karl.train import KARLTrainConfig, PerturbOptions, draw_budgets, train_karl, train_step
from tokenizers_media.image.karl import ERROR_BINS, KARL, PAD_CODE, KARLConfig
from tokenizers_media.modeling import load_pretrained

MICRO = dict(image_size=16, patch_size=4, width=32, encoder_depth=1, decoder_depth=1, num_heads=2, latent_pool=8,
             max_tokens=8, codebook_size=64)


pytestmark = pytest.mark.usefixtures("one_thread")


def micro(**overrides) -> KARL:
    torch.manual_seed(0)
    return KARL.from_preset("tiny", **{**MICRO, **overrides}).eval()


def test_presets_sizes():
    tiny = KARL.from_preset("tiny")
    assert sum(p.numel() for p in tiny.parameters()) * 4 < 10e6  # fp32 weights fit the 10 MB budget
    paper = KARL.preset_config("paper-small")
    assert (paper.width, paper.encoder_depth, paper.num_heads, paper.codebook_size, paper.code_dim) == \
        (1024, 8, 8, 4096, 12)
    assert paper.error_bins == ERROR_BINS and len(ERROR_BINS) == 19


def test_error_bin_snaps_up():
    model = micro()
    bins = model.error_bin(torch.tensor([0.001, 0.005, 0.0501, 0.08, 0.5]), 5)
    assert [ERROR_BINS[i] for i in bins] == [0.005, 0.005, 0.06, 0.09, 0.38]
    with pytest.raises(ValueError, match="target_error"):
        model.error_bin(-0.1, 2)


def test_encode_decode_shapes_and_padding():
    model = micro()
    images = torch.rand(3, 3, 16, 16)
    enc = model.encode(images, target_error=0.05, max_tokens=6)
    assert enc.codes.shape == (3, 6) and enc.lengths.shape == (3,) and enc.latents.shape == (3, 6, 12)
    for row, length in zip(enc.codes, enc.lengths, strict=True):
        assert torch.all(row[length:] == PAD_CODE) and torch.all(row[:length] >= 0)
    out = model.decode(enc.codes, enc.lengths)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="images"):
        model.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="budget"):
        model.encode(images, max_tokens=9)


def test_halting_respects_threshold_and_is_monotone():
    model = micro()
    with torch.no_grad():  # make halting probabilities spread over (0, 1)
        model.halting_head[-1].weight.normal_(0, 2.0)
    images = torch.rand(4, 3, 16, 16)
    lengths = []
    for threshold in (0.2, 0.5, 0.8, 0.95):
        enc = model.encode(images, halt_threshold=threshold)
        assert torch.all(enc.halt_probs.diff(dim=1) >= 0)
        for probs, length in zip(enc.halt_probs, enc.lengths, strict=True):
            assert torch.all(probs[:length] <= threshold) and torch.all(probs[length:] > threshold)
        lengths.append(enc.lengths)
    assert all(torch.all(a <= b) for a, b in zip(lengths, lengths[1:], strict=False))
    assert not torch.equal(lengths[0], lengths[-1])


def test_masked_tokens_do_not_change_the_decoding():
    model = micro()
    codes = torch.randint(0, 64, (2, 8))
    lengths = torch.tensor([3, 5])
    other = codes.clone()
    other[0, 3:], other[1, 5:] = torch.randint(0, 64, (5,)), PAD_CODE
    torch.testing.assert_close(model.decode(codes, lengths), model.decode(other, lengths))
    changed = codes.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 64
    assert not torch.allclose(model.decode(changed, lengths)[0], model.decode(codes, lengths)[0])


def test_per_image_budgets_encode_each_image_as_its_own_budget_would():
    model = micro()
    images, bins = torch.rand(2, 3, 16, 16), torch.tensor([2, 5])
    out = model.encode_latents(images, bins, 8, lengths=torch.tensor([3, 6]))
    for b, length in enumerate((3, 6)):
        alone = model.encode_latents(images[b : b + 1], bins[b : b + 1], length)
        torch.testing.assert_close(out.latents[b, :length], alone.latents[0])
        torch.testing.assert_close(out.halt_logits[b, :length], alone.halt_logits[0])
    unmasked = model.encode_latents(images, bins, 8)
    assert not torch.allclose(unmasked.latents[0, :3], out.latents[0, :3])


def test_per_image_budget_training_runs_and_trains_the_halting_head():
    torch.manual_seed(0)
    model = KARL.from_preset("tiny", **MICRO)
    before = model.halting_head[1].weight.clone()
    config = KARLTrainConfig(batch_size=4, token_step=1, steps=2, budget_per_image=True)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = [train_step(model, optim, torch.rand(4, 3, 16, 16), config, step) for step in range(2)]
    assert all(s.halt_bce > 0 and s.l1_budget > 0 for s in stats)
    assert not torch.equal(before, model.halting_head[1].weight)
    per_image = draw_budgets(config, 32, 64, torch.Generator().manual_seed(0))
    per_step = draw_budgets(KARLTrainConfig(token_step=4), 32, 64, torch.Generator().manual_seed(0))
    assert len(per_image.unique()) > 10 and per_image.min() >= 1 and per_image.max() <= 32
    assert len(per_step.unique()) == 1 and int(per_step[0]) % 4 == 0


def test_continuous_variant_round_trip():
    model = micro(quantize=False)
    enc = model.encode(torch.rand(2, 3, 16, 16))
    assert enc.codes is None and model.quantizer is None
    assert model.decode(enc.latents, enc.lengths).shape == (2, 3, 16, 16)


def test_save_load_equality(tmp_path):
    model = micro()
    images = torch.rand(2, 3, 16, 16)
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, KARL) and loaded.config == model.config
    a, b = model.encode(images, 0.03), loaded.encode(images, 0.03)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.lengths, b.lengths)
    torch.testing.assert_close(model.decode(a.codes, a.lengths), loaded.decode(b.codes, b.lengths))
    assert KARLConfig.from_dict(model.config.to_dict()) == model.config


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = KARL.from_preset("tiny", **MICRO)
    perturb = PerturbOptions(alpha=1.0, beta=0.5, delta=4)
    config = KARLTrainConfig(batch_size=4, lr=3e-3, warmup_steps=1, token_step=2, steps=16, perturb=perturb)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr)
    images = torch.rand(1, 3, 16, 16).expand(4, -1, -1, -1) * 0.5 + 0.25
    losses = [train_step(model, optim, images, config, step).loss for step in range(16)]
    assert sum(losses[-4:]) < 0.7 * sum(losses[:4])


def test_perturb_option_parsing():
    assert PerturbOptions.parse("alpha=0.5,delta=20") == PerturbOptions(alpha=0.5, beta=0.1, delta=20)
    with pytest.raises(ValueError, match="gamma"):
        PerturbOptions.parse("gamma=1")


def test_train_karl_checkpoints_resume_and_samples(tmp_path):
    overrides = {**MICRO, "image_size": 32, "patch_size": 8}
    config = KARLTrainConfig(steps=2, batch_size=4, token_step=4, checkpoint_every=1, sample_every=2,
                             model_overrides=overrides)
    first = train_karl(config, tmp_path, show_progress=False)
    assert (tmp_path / "samples_000002.png").is_file() and (tmp_path / "checkpoint.pt").is_file()
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileExistsError, match="not empty"):  # never a silent overwrite
        train_karl(config, tmp_path, show_progress=False)
    resumed = train_karl(config, tmp_path, show_progress=False, resume=True)  # finished: nothing left to train
    for a, b in zip(first.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_train_karl_rejects_a_token_step_outside_the_budget(tmp_path):
    config = KARLTrainConfig(steps=1, batch_size=2, token_step=0, model_overrides=MICRO)
    with pytest.raises(ValueError, match="token_step must be 1.."):
        train_karl(config, tmp_path, show_progress=False)


def test_halting_only_fine_tune_changes_only_the_halting_head(tmp_path):
    overrides = {**MICRO, "image_size": 32, "patch_size": 8}
    base = train_karl(KARLTrainConfig(steps=1, batch_size=4, token_step=4, model_overrides=overrides),
                      tmp_path / "base", show_progress=False)
    config = KARLTrainConfig(steps=3, batch_size=4, token_step=4, lr=1e-2, warmup_steps=1, halt_weight=1.0,
                             init=str(tmp_path / "base"), halting_only=True)
    tuned = train_karl(config, tmp_path / "tuned", show_progress=False)
    before, after = base.state_dict(), tuned.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("halting_head.") for name in changed)
    with pytest.raises(ValueError, match="give init"):
        train_karl(KARLTrainConfig(steps=1, halting_only=True), tmp_path / "x", show_progress=False)
