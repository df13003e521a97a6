"""GDT's zero-shot consistency claim on shapes world, as a table (the one in gdt-tiny's model card).

Given one reference image and captions that leave out one of its attributes (``pipelines.gdt.evaluate``),
how often do the generated images keep that attribute? Compared in the same run: the GDT model (group
attention, G = 4), the same weights with group attention off (G = 1), and the same backbone trained on
single images for the same steps (``mediaforge train gdt --single-image``). The judge is the shapes classifier;
its top-1 accuracy on real 32 px images and on their VAE reconstructions is printed first (the ceiling).

Then the same without a reference (image 0 generated from its full caption too; consistency = agreement with
the judge's reading of that generated image). Last, whether the group model uses its group at all: on
training-style groups whose later captions leave out the shared attribute, the noise-prediction error of those
images with group attention (G = 4) over the error with the same weights and noise run image by image (G = 1),
at a few time steps (below 1: the group helps), and how often the judge reads the shared attribute in each
image's predicted clean image x0 (does the group carry the attribute, before any sampling?).

Run: ``python benchmarks/gdt_consistency.py --group pipelines/weights/gdt-tiny --single DIR
[--judge pipelines/weights/shapes-classifier] [--groups 48] [--steps 25] [--guidance 3] [--threads 1]``, or with
``--benefit-only`` (no ``--single``) for the last table alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from pipelines.data.shapes import COLOUR_NAMES, SHAPES, split_rng
from pipelines.gdt.attention import install_group_attention
from pipelines.gdt.evaluate import ATTRIBUTES, classify, consistency_case, measure
from pipelines.gdt.groups import SHARED_WORDS, GroupSampler, group_world
from pipelines.gdt.pipeline import GroupDiffusionPipeline
from tokenizers_media.modeling import load_pretrained


@torch.no_grad()
def judge_ceiling(judge, pipe: GroupDiffusionPipeline, images: int = 256) -> tuple[float, float]:
    batch = group_world(pipe.config.image_size).batch("eval", 999, images)
    truth = [(o.shape, o.colour) for s in batch.scenes for o in s.objects]
    real = list(zip(*classify(judge, batch.images), strict=True))
    recon = list(zip(*classify(judge, pipe.decode_latents(pipe.encode_images(batch.images))), strict=True))
    return _agreement(real, truth), _agreement(recon, truth)


SHARED = {kind: SHARED_WORDS[kind][0] for kind in ("same_colour", "same_shape")}
"""The attribute each measured group kind shares, and leaves out of its later captions."""


@dataclass(frozen=True)
class Benefit:
    """One time step, caption-dropped images only; (G-way, one by one) pairs."""

    mse: tuple[float, float]
    """Noise-prediction MSE."""
    read: tuple[float, float]
    """How often the judge reads the group's shared attribute in the predicted clean image."""


@torch.no_grad()
def group_benefit(pipe: GroupDiffusionPipeline, judge, kind: str, timesteps: list[int], groups: int = 32,
                  group_size: int = 4) -> list[Benefit]:
    """What group attention adds for the images (1..G-1) of ``kind`` groups whose captions leave the shared
    attribute out: same weights, noise and time step, with G-way attention and image by image."""
    sampler = GroupSampler(group_size, pipe.config.image_size)
    rng = split_rng("eval", 5)
    scenes, captions = [], []
    for _ in range(groups):
        group = sampler.group_scenes(kind, rng)
        scenes += group
        captions += sampler.group_captions(group, kind, drop=True)
    truth = [getattr(s.objects[0], SHARED[kind]) for k, s in enumerate(scenes) if k % group_size]
    latents = pipe.encode_images(sampler.world.render(scenes).images)
    text = pipe.encode_prompts(captions)
    dropped = torch.arange(len(latents)) % group_size > 0
    results = []
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(t))
        steps = torch.full((len(latents),), t)
        noisy = pipe.scheduler.add_noise(latents, noise, steps)
        alpha = pipe.scheduler.alphas_cumprod[t]
        mse, read = [], []
        for g in (group_size, 1):
            install_group_attention(pipe.transformer, g)
            eps = pipe.predict_noise(noisy, steps, text)
            mse.append((eps - noise)[dropped].pow(2).mean().item())
            clean = (noisy[dropped] - (1 - alpha).sqrt() * eps[dropped]) / alpha.sqrt()
            shapes, colours = classify(judge, pipe.decode_latents(clean))
            read.append(_agreement(colours if SHARED[kind] == "colour" else shapes, truth))
        results.append(Benefit((mse[0], mse[1]), (read[0], read[1])))
    install_group_attention(pipe.transformer, pipe.config.group_size)
    return results


def _agreement(pred: list, truth: list) -> float:
    return sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True, help="GDT pipeline folder (trained with groups)")
    parser.add_argument("--single", help="the same backbone trained on single images (needed unless --benefit-only)")
    parser.add_argument("--judge", default="pipelines/weights/shapes-classifier")
    parser.add_argument("--groups", type=int, default=48)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--benefit-only", action="store_true", help="only the last table (seconds, not minutes)")
    args = parser.parse_args()
    if args.single is None and not args.benefit_only:
        parser.error("--single is required unless --benefit-only")
    torch.set_num_threads(args.threads)
    judge = load_pretrained(args.judge)
    group = GroupDiffusionPipeline.from_pretrained(args.group)
    if not args.benefit_only:
        consistency_tables(group, GroupDiffusionPipeline.from_pretrained(args.single), judge, args)
    benefit_table(group, judge, args.group_size)


def consistency_tables(group: GroupDiffusionPipeline, single: GroupDiffusionPipeline, judge,
                       args: argparse.Namespace) -> None:
    real, recon = judge_ceiling(judge, group)
    print(f"judge top-1 (shape and colour): real 32 px {real:.3f}, VAE reconstructions {recon:.3f}")
    print(f"{args.groups} groups of {args.group_size} per attribute, {args.steps} DDIM steps, guidance {args.guidance}")
    runs = [("GDT (group-trained)", group, args.group_size), ("GDT weights, group attention off", group, 1),
            ("single-image baseline", single, 1)]
    cases = {a: consistency_case(a, args.groups, args.group_size, group.config.image_size) for a in ATTRIBUTES}
    titles = {True: "With a reference image (index 0)",
              False: "No reference: image 0 generated from its caption too; consistency = agreement with it"}
    for with_reference, title in titles.items():
        print(f"\n{title}")
        print("| model | attention at sampling | kept attribute | consistency | chance | adherence to caption "
              "| images |\n|---|---|---|---|---|---|---|")
        for attribute, case in cases.items():
            chance = 1 / len(COLOUR_NAMES if attribute == "colour" else SHAPES)
            for name, pipe, g in runs:
                r = measure(pipe, judge, case, attribute, g, with_reference=with_reference,
                            num_inference_steps=args.steps, guidance_scale=args.guidance)
                print(f"| {name} | G={g} | {attribute} | {r['consistency']:.3f} | {chance:.3f} "
                      f"| {r['adherence']:.3f} | {r['images']} |", flush=True)


def benefit_table(group: GroupDiffusionPipeline, judge, group_size: int) -> None:
    print("\nGroup model, caption-dropped images of 32 training-style groups (eval split): noise-prediction MSE, "
          "and how often the judge reads the shared attribute in the predicted clean image (x0)")
    print(f"| group kind | t | MSE G={group_size} | MSE G=1 | ratio | shared attribute read, G={group_size} "
          "| G=1 |\n|---|---|---|---|---|---|---|")
    timesteps = [200, 400, 600, 800]
    for kind in SHARED:
        rows = group_benefit(group, judge, kind, timesteps, group_size=group_size)
        for t, row in zip(timesteps, rows, strict=True):
            (grouped, alone), (read_g, read_1) = row.mse, row.read
            print(f"| {kind} | {t} | {grouped:.4f} | {alone:.4f} | {grouped / alone:.3f} | {read_g:.3f} "
                  f"| {read_1:.3f} |", flush=True)


if __name__ == "__main__":
    main()
