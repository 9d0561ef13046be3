"""Per-sample Mixup and CutMix on a batch of 224 x 224 images: hiddenmix next to its peers, in one run.

    python benchmarks/bench_image_mixing.py                      # B = 32 and 128, CPU
    python benchmarks/bench_image_mixing.py --device cuda        # on a GPU; adds timm and torchvision if present

Rows, each timed on the same `[B, 3, 224, 224]` float32 tensor, whole call (drawing λ / boxes, mixing, targets):
- `torch.lerp reference`: one `torch.lerp(x, y, w)` of two given tensors with a per-sample weight. It reads two
  batches and writes one, the least any mix can move through memory: the bandwidth floor.
- hiddenmix `MixupCutmix` Mixup (`mode="elem"`: a λ per sample) and CutMix (`mode="elem"`: a λ and a box per
  sample), random partners.
- the same two hiddenmix mixing ops alone, their plan drawn beforehand (`mix_pixels(x, plan)`): the memory-moving
  part, which is what compares with the lerp reference like for like.
- kornia `RandomMixUpV2` (a λ per row) and `RandomCutMixV2` (a box per row).
- with `--device cuda` and timm / torchvision importable: timm `Mixup(mode="elem")` (per-sample λ and box, a
  Python loop over samples) and torchvision `v2.CutMix` (one box per batch).

Timing: methods run in turn, round after round (alternating repeats, so a slow spell of a shared machine hits all
of them alike); the table gives each method's median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiddenmix import (  # noqa: E402
    MixConfig,  # noqa: E402
    MixupCutmix,
    mix_pixels,
)

NUM_CLASSES = 1000


def peers(device: torch.device) -> tuple[dict[str, Callable], list[str]]:
    """Peer constructors `name -> make(x, labels) -> callable`, and why any were skipped."""
    makers, skipped = {}, []
    try:
        import kornia.augmentation as K

        mixup = K.RandomMixUpV2(p=1.0)
        cutmix = K.RandomCutMixV2(p=1.0, use_correct_lambda=True)
        makers["kornia RandomMixUpV2"] = ("mixup", lambda x, y: mixup(x, y))
        makers["kornia RandomCutMixV2"] = ("cutmix", lambda x, y: cutmix(x, y))
    except ImportError as err:
        skipped.append(f"kornia: not importable ({err})")
    try:
        from timm.data import Mixup

        timm_mixup = Mixup(
            mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem", label_smoothing=0.0, num_classes=NUM_CLASSES
        )
        timm_cutmix = Mixup(
            mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.0, num_classes=NUM_CLASSES
        )
        # timm mixes in place: give it a copy so every round starts from the same batch (the copy is timed too)
        makers["timm Mixup(mode=elem) mixup"] = ("mixup", lambda x, y: timm_mixup(x.clone(), y))
        makers["timm Mixup(mode=elem) cutmix"] = ("cutmix", lambda x, y: timm_cutmix(x.clone(), y))
    except Exception as err:  # timm raises more than ImportError when torchvision is broken
        skipped.append(f"timm: not importable ({type(err).__name__}: {str(err).splitlines()[0][:80]})")
    try:
        from torchvision.transforms import v2

        tv_cutmix = v2.CutMix(num_classes=NUM_CLASSES)
        makers["torchvision v2.CutMix (one box per batch)"] = ("cutmix", lambda x, y: tv_cutmix(x, y))
    except Exception as err:
        skipped.append(f"torchvision: not importable ({type(err).__name__}: {str(err).splitlines()[0][:80]})")
    return makers, skipped


def time_batch(
    batch: int,
    device: torch.device,
    repeats: int,
    peer_makers: dict,
    hm_mixup: MixupCutmix,
    hm_cutmix: MixupCutmix,
    sync: Callable[[], None],
) -> list[tuple]:
    """Rows `(B, method, median ms, x lerp reference, kornia / this)` for one batch size."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 224, 224, device=device)
    other = torch.rand_like(x)
    weight = torch.rand(batch, 1, 1, 1, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    mixup_plan, cutmix_plan = hm_mixup.sample(x), hm_cutmix.sample(x)
    methods: dict[str, tuple[str, Callable[[], object]]] = {
        "torch.lerp reference": ("reference", lambda: torch.lerp(x, other, weight)),
        "hiddenmix Mixup (elem)": ("mixup", lambda: hm_mixup(x, labels)),
        "hiddenmix CutMix (elem)": ("cutmix", lambda: hm_cutmix(x, labels)),
        # the memory-moving op alone, its plan drawn beforehand: what compares with the lerp reference like for like
        "hiddenmix Mixup op (plan drawn)": ("mixup-op", lambda: mix_pixels(x, mixup_plan)),
        "hiddenmix CutMix op (plan drawn)": ("cutmix-op", lambda: mix_pixels(x, cutmix_plan)),
    }
    for name, (kind, make) in peer_makers.items():
        methods[name] = (kind, (lambda make=make: make(x, labels)))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(repeats + 1):
        for name, (_, fn) in methods.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_ > 0:  # round 0 warms up allocators and kernels
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ref = median["torch.lerp reference"]
    kornia = {"mixup": median.get("kornia RandomMixUpV2"), "cutmix": median.get("kornia RandomCutMixV2")}
    rows = []
    for name, (kind, _) in methods.items():
        peer = kornia.get(kind)
        rows.append((batch, name, median[name], median[name] / ref, None if peer is None else peer / median[name]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds per batch size (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    peer_makers, skipped = peers(device)
    hm_mixup = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem", num_classes=NUM_CLASSES, seed=0))
    hm_cutmix = MixupCutmix(MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=NUM_CLASSES, seed=0))

    rows = []
    for batch in args.batch_sizes:
        rows += time_batch(batch, device, args.repeats, peer_makers, hm_mixup, hm_cutmix, sync)

    print(f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"median of {args.repeats} alternating rounds")  # fmt: skip
    print("command: python " + " ".join(sys.argv))
    for reason in skipped:
        print(f"skipped {reason}")
    print()
    print("| B | method | median ms | x lerp reference | kornia / this |")
    print("|---:|---|---:|---:|---:|")
    for batch, name, ms, vs_ref, speedup in rows:
        kornia_col = "" if speedup is None or name.startswith("kornia") else f"{speedup:.1f}x faster"
        print(f"| {batch} | {name} | {ms:.1f} | {vs_ref:.2f} | {kornia_col} |")


if __name__ == "__main__":
    main()
