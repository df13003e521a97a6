import torch

from pipelines.karl.evaluate import _oracle_tokens, evaluate_karl
from tokenizers_media.image.karl import KARL


def test_report_tables_cover_counts_targets_and_groups():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = KARL.from_preset("tiny", image_size=32, patch_size=8, width=32, encoder_depth=1, decoder_depth=1,
                                 num_heads=2, latent_pool=8, max_tokens=8, codebook_size=64).eval()
        report = evaluate_karl(model, num_images=24, targets=(0.05, 0.1), complexity_targets=(0.05,))
    finally:
        torch.set_num_threads(threads)
    assert [t for t, *_ in report.fixed] == [1, 2, 4, 8]
    assert all(0 <= l1 <= 1 for *_, l1 in report.fixed)
    assert [row[0] for row in report.adaptive] == [0.05, 0.1]
    assert all(0 <= row[1] <= 8 and 0 <= row[3] <= 1 for row in report.adaptive)
    assert sum(report.group_sizes.values()) == 24
    text = report.markdown()
    assert "| target L1 |" in text and "| mean L1 |" in text
    assert "tokens @ 0.05" in text and "oracle @ 0.05" in text
    assert report.oracle.keys() == report.complexity.keys()
    assert all(1 <= v <= 8 for vals in report.oracle.values() for v in vals)


def test_oracle_tokens_pick_the_fewest_count_that_reaches_the_target():
    errors = torch.tensor([[0.09, 0.04, 0.03], [0.2, 0.1, 0.08], [0.01, 0.01, 0.01]])
    assert _oracle_tokens(errors, (2, 4, 8), 0.05).tolist() == [4.0, 8.0, 2.0]
