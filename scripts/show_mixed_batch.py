"""Save a PNG grid of a mixed batch of real images (sklearn's digits), each tile captioned with its two classes and λ.

    python scripts/show_mixed_batch.py                                   # outputs/mixed_batch.png (Mixup / CutMix)
    python scripts/show_mixed_batch.py --cutmix-mask fmix --out outputs/mixed_batch_fmix.png
    python scripts/show_mixed_batch.py --segmentation --mixup-alpha 0 --out outputs/mixed_segmentation.png

Look at mixed examples before trusting them: the caption's first line is the tile's own class and the share λ of
the tile that is its own, the second line the partner's class and 1 - λ. For a CutMix or FMix tile, λ is the
share of pixels actually kept, so a box clipped at the border or an empty box shows up as λ near 1.

With `--segmentation` each digit gets a label map (its class + 1 on its ink, 0 on the background: a real per-pixel
task derived from the real images) and each mixed image is drawn beside its mixed map: under CutMix / FMix the
pasted region carries its labels with it.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from hiddenmix import MixConfig, MixupCutmix
from hiddenmix.plots import save_mixed_grid, save_mixed_segmentation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/mixed_batch.png", help="the PNG to write (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="digits are 8x8; upsampled so boxes and masks show")
    parser.add_argument("--mixup-alpha", type=float, default=1.0)
    parser.add_argument("--cutmix-alpha", type=float, default=1.0)
    parser.add_argument("--switch-prob", type=float, default=0.5)
    parser.add_argument("--mode", default="elem", choices=["batch", "pair", "elem"])
    parser.add_argument("--cutmix-mask", default="box", choices=["box", "fmix"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--segmentation", action="store_true", help="label maps of the digits' ink, beside them")
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    generator = torch.Generator().manual_seed(args.seed)
    rows = torch.randperm(len(digits.target), generator=generator)[: args.batch]
    images = torch.tensor(digits.images, dtype=torch.float32)[rows, None] / 16.0  # (B, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(args.size, args.size), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target)[rows]
    if args.segmentation:
        labels = torch.where(images[:, 0] > 0.25, labels[:, None, None] + 1, 0)  # (B, H, W): the ink's class + 1

    config = MixConfig(
        mixup_alpha=args.mixup_alpha,
        cutmix_alpha=args.cutmix_alpha,
        switch_prob=args.switch_prob,
        mode=args.mode,
        cutmix_mask=args.cutmix_mask,
        num_classes=11 if args.segmentation else 10,
        seed=args.seed,
    )
    out = MixupCutmix(config).mix(images, labels)
    paste = {"box": "CutMix", "fmix": "FMix"}[args.cutmix_mask]
    what = [f"Mixup (alpha={args.mixup_alpha})"] if config.mixup_on else []
    what += [f"{paste} (alpha={args.cutmix_alpha})"] if config.cutmix_on else []
    switch = f", switch_prob={args.switch_prob}" if len(what) == 2 else ""
    if args.segmentation:
        title = f"{' / '.join(what)}: mixed images beside their mixed label maps (colour: class; blue: background)"
        maps = out.targets.hard()
        path = save_mixed_segmentation(args.out, out.pixel_values, maps, out.plan, num_classes=11, title=title)
    else:
        title = f"{' / '.join(what)}, mode={args.mode}{switch}; caption: own class λ / partner class 1-λ"
        path = save_mixed_grid(args.out, out.pixel_values, labels, out.plan, columns=8, title=title)
    print(f"wrote {path}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
