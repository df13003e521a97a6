"""GDT's zero-shot consistency claim on shapes world, as a table (the one in gdt-tiny's model card).

Given one reference image and captions that leave out one of its attributes (``pipelines.gdt.consistency``),
how often do the generated images keep that attribute? Compared in the same run: the GDT model (group
attention, G = 4), the same weights with group attention off (G = 1), and the same backbone trained on
single images for the same steps (``mediaforge train gdt --single-image``). The judge is the shapes classifier;
its top-1 accuracy on real 32 px images and on their VAE reconstructions is printed first (the ceiling).

Run: ``python benchmarks/gdt_consistency.py --group pipelines/weights/gdt-tiny --single DIR
[--judge pipelines/weights/shapes-classifier] [--groups 48] [--steps 25] [--guidance 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse

import torch

from pipelines.data.shapes import COLOUR_NAMES, SHAPES
from pipelines.gdt.consistency import ATTRIBUTES, classify, consistency_case, measure
from pipelines.gdt.groups import group_world
from pipelines.gdt.pipeline import GroupDiffusionPipeline
from tokenizers_media.modeling import load_pretrained


@torch.no_grad()
def judge_ceiling(judge, pipe: GroupDiffusionPipeline, images: int = 256) -> tuple[float, float]:
    batch = group_world(pipe.config.image_size).batch("eval", 999, images)
    truth = [(o.shape, o.colour) for s in batch.scenes for o in s.objects]
    real = list(zip(*classify(judge, batch.images), strict=True))
    recon = list(zip(*classify(judge, pipe.decode_latents(pipe.encode_images(batch.images))), strict=True))
    return _agreement(real, truth), _agreement(recon, truth)


def _agreement(pred: list, truth: list) -> float:
    return sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True, help="GDT pipeline folder (trained with groups)")
    parser.add_argument("--single", required=True, help="the same backbone trained on single images")
    parser.add_argument("--judge", default="pipelines/weights/shapes-classifier")
    parser.add_argument("--groups", type=int, default=48)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = load_pretrained(args.judge)
    group = GroupDiffusionPipeline.from_pretrained(args.group)
    single = GroupDiffusionPipeline.from_pretrained(args.single)
    real, recon = judge_ceiling(judge, group)
    print(f"judge top-1 (shape and colour): real 32 px {real:.3f}, VAE reconstructions {recon:.3f}")
    print(f"{args.groups} groups of {args.group_size} per attribute, {args.steps} DDIM steps, guidance {args.guidance}")
    print("| model | attention at sampling | kept attribute | consistency | chance | adherence to caption | images |")
    print("|---|---|---|---|---|---|---|")
    runs = [("GDT (group-trained)", group, args.group_size), ("GDT weights, group attention off", group, 1),
            ("single-image baseline", single, 1)]
    for attribute in ATTRIBUTES:
        case = consistency_case(attribute, args.groups, args.group_size, group.config.image_size)
        chance = 1 / len(COLOUR_NAMES if attribute == "colour" else SHAPES)
        for name, pipe, g in runs:
            r = measure(pipe, judge, case, attribute, g, num_inference_steps=args.steps,
                        guidance_scale=args.guidance)
            print(f"| {name} | G={g} | {attribute} | {r['consistency']:.3f} | {chance:.3f} | {r['adherence']:.3f} "
                  f"| {r['images']} |", flush=True)


if __name__ == "__main__":
    main()
