import pytest
import torch

from pipelines.data.shapes import ShapesWorld
from pipelines.robust.evaluate import Perturbation, karl_round_trip, pscore, textok_round_trip
from pipelines.shapes_classifier.model import ShapesClassifier
from tokenizers_media.image.karl import KARL
from tokenizers_media.image.textok import TexTok

MICRO = dict(image_size=32, patch_size=8, width=32, encoder_depth=1, decoder_depth=1, num_heads=2, latent_pool=8,
             max_tokens=8, codebook_size=64)


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield KARL.from_preset("tiny", **MICRO).eval(), ShapesClassifier.from_preset("tiny").eval()
    torch.set_num_threads(threads)


def run(models, alpha: float, delta: int, seed: int):
    karl, classifier = models
    return pscore(karl_round_trip(karl, target_error=0.05), classifier, 32, Perturbation(alpha, delta, seed),
                  num_images=24, batch_size=12)


def test_alpha_zero_equals_the_unperturbed_score(models):
    result = run(models, 0.0, 16, 0)
    assert result.perturbed == result.clean


def test_perturbation_is_seeded_and_moves_the_score(models):
    a, b, c = run(models, 1.0, 16, 0), run(models, 1.0, 16, 0), run(models, 1.0, 16, 1)
    assert a.perturbed == b.perturbed and a.clean == b.clean
    assert a.perturbed != a.clean and a.perturbed != c.perturbed


def test_report_says_proxy_and_names_the_settings(models):
    text = run(models, 0.5, 8, 3).describe()
    assert "proxy pFID" in text and "proxy rFID" in text
    assert "alpha=0.5" in text and "delta=8" in text and "seed=3" in text


def test_round_trip_shapes_and_rejects_continuous_models(models):
    karl, _ = models
    batch = ShapesWorld(32).batch("eval", 0, 2)
    out = karl_round_trip(karl)(batch)(Perturbation(1.0, 8, 0), torch.Generator().manual_seed(0))
    assert out.shape == batch.images.shape
    with pytest.raises(ValueError, match="quantised"):
        karl_round_trip(KARL.from_preset("tiny", **MICRO, quantize=False))


def test_textok_vq_round_trip():
    torch.manual_seed(0)
    textok = TexTok.from_preset("tiny", image_size=32, text_conditioning=False, bottleneck="vq",
                                codebook_size=64).eval()
    batch = ShapesWorld(32).batch("eval", 0, 3)
    decode = textok_round_trip(textok)(batch)
    clean = decode(None, torch.Generator())
    assert clean.shape == batch.images.shape
    assert torch.equal(decode(Perturbation(0.0, 8, 0), torch.Generator()), clean)
    assert not torch.equal(decode(Perturbation(1.0, 8, 0), torch.Generator().manual_seed(0)), clean)
    with pytest.raises(ValueError, match="vq bottleneck"):
        textok_round_trip(TexTok.from_preset("tiny", image_size=32, text_conditioning=False))
