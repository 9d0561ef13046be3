"""Measure pixel CutMix / Mixup for semantic segmentation on a real per-pixel task, paired against no mixing.

    python scripts/measure_segmentation.py --settings no-mix pixel-cutmix    # 3 seeds, prints the table
    python scripts/measure_segmentation.py --seeds 0 1 2 3 4 --output_dir outputs/segmentation

The task: sklearn's digits (1,797 real 8 x 8 scans, upsampled to 32 x 32), each pixel labelled with its digit's class
+ 1 where there is ink and 0 on the background, so a segmenter must both find the strokes and name the digit. The same
360 images (stratified, fixed) are held out for every run. The model: a small SegFormer built from a config (no
pretrained segmenter installs offline), trained by `MixupTrainer` through the model's own forward (`site="input"`),
where CutMix pastes the label map with the pixels. Every setting of a seed starts from the same weights and sees the
same images in the same order; only the mixing differs. Scored on the held-out images: pixel accuracy, mean IoU over
the 11 classes, and mean IoU over the 10 digit classes. Each run's metrics and the paired differences (mean and 95 %
t-interval over seeds) are printed, and written to `results.json` and `report.md` in `--output_dir` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import SegformerConfig, SegformerForSemanticSegmentation, set_seed  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from hiddenmix import MixupTrainer, MixupTrainingArguments  # noqa: E402

SETTINGS = {
    "no-mix": dict(enabled=False),
    "pixel-cutmix": dict(site="input", mixup_alpha=0.0, cutmix_alpha=1.0),
    "pixel-mixup": dict(site="input", mixup_alpha=0.4),
}
CLASSES = 11  # background + ten digits


def digit_maps(size: int = 32) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Every digit as a `[N, 1, size, size]` image in [0, 1], its `[N, size, size]` label map, and its digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    maps = torch.where(images[:, 0] > 0.25, torch.tensor(digits.target)[:, None, None] + 1, 0)
    return images, maps, digits.target


def split(labels: np.ndarray, held_out: int = 360) -> tuple[np.ndarray, np.ndarray]:
    """Train and evaluation indices, stratified by digit, the same for every run."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(labels)), test_size=held_out, stratify=labels, random_state=0)


def build_model(seed: int) -> SegformerForSemanticSegmentation:
    set_seed(seed)
    config = SegformerConfig(
        num_channels=1, num_encoder_blocks=2, depths=[2, 2], sr_ratios=[2, 1], hidden_sizes=[32, 64],
        num_attention_heads=[1, 2], decoder_hidden_size=64, num_labels=CLASSES,
    )  # fmt: skip
    return SegformerForSemanticSegmentation(config)


def score(model, images: torch.Tensor, maps: torch.Tensor) -> dict[str, float]:
    """Pixel accuracy and mean IoU (all classes; digit classes only) of `model` on `images`."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(pixel_values=images[i : i + 128]).logits for i in range(0, len(images), 128)])
    logits = F.interpolate(logits, size=maps.shape[-2:], mode="bilinear", align_corners=False)
    predicted = logits.argmax(1)
    confusion = torch.bincount(maps.flatten() * CLASSES + predicted.flatten(), minlength=CLASSES**2)
    confusion = confusion.reshape(CLASSES, CLASSES).double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    iou = confusion.diag() / union.clamp(min=1)
    return {
        "pixel_accuracy": float(confusion.diag().sum() / confusion.sum()),
        "miou": float(iou.mean()),
        "miou_digits": float(iou[1:].mean()),
    }


def train_one(setting: str, seed: int, data, args: argparse.Namespace, out: Path) -> dict[str, float]:
    from datasets import Dataset

    images, maps, train_idx, eval_idx = data
    train = Dataset.from_dict(
        {"pixel_values": images[train_idx].numpy(), "labels": maps[train_idx].numpy()}
    ).with_format("torch")
    training = MixupTrainingArguments(
        output_dir=str(out / setting / f"seed{seed}"), max_steps=args.max_steps, per_device_train_batch_size=32,
        learning_rate=args.learning_rate, warmup_steps=0.1, weight_decay=0.01, seed=seed, data_seed=seed,
        logging_steps=25, save_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), **SETTINGS[setting],
    )  # fmt: skip
    model = build_model(seed)
    trainer = MixupTrainer(model=model, args=training, train_dataset=train)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.mixer.remove()
    device = next(model.parameters()).device
    metrics = score(model, images[eval_idx].to(device), maps[eval_idx].to(device))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {**metrics, "train_seconds": seconds, "final_train_loss": losses[-1] if losses else float("nan")}


def paired(results: dict, setting: str, metric: str) -> tuple[int, float, float, float]:
    from scipy import stats

    diffs = np.array([results[setting][s][metric] - results["no-mix"][s][metric] for s in results[setting]])
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return len(diffs), mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return len(diffs), mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--max_steps", type=int, default=1000)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--output_dir", default=None, help="write results.json here (default: print only)")
    args = parser.parse_args(argv)
    if "no-mix" not in args.settings:
        parser.error(f"--settings {args.settings}: the paired differences need 'no-mix' among them")
    if args.max_steps < 1:
        parser.error(f"--max_steps {args.max_steps}: allowed: an integer >= 1")
    hf_logging.set_verbosity_error()
    images, maps, labels = digit_maps()
    train_idx, eval_idx = split(labels)
    out = Path(args.output_dir) if args.output_dir else Path("outputs/segmentation")
    results: dict[str, dict[int, dict]] = {s: {} for s in args.settings}
    for seed in args.seeds:
        for setting in args.settings:
            results[setting][seed] = metrics = train_one(setting, seed, (images, maps, train_idx, eval_idx), args, out)
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"seed {seed} {setting:<13} {shown}", flush=True)
    lines = [
        f"{len(train_idx)} training and {len(eval_idx)} held-out digits, {args.max_steps} steps at batch 32, "
        f"seeds {args.seeds}",
        "",
        "| setting | n | Δ pixel accuracy (points) | Δ mIoU (points) | Δ mIoU, digits (points) |",
        "|---|---|---|---|---|",
    ]
    for setting in args.settings[1:] if args.settings[0] == "no-mix" else [s for s in args.settings if s != "no-mix"]:
        cells = []
        for metric in ("pixel_accuracy", "miou", "miou_digits"):
            n, mean, low, high = paired(results, setting, metric)
            cells.append(f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]")
        lines.append(f"| {setting} | {n} | " + " | ".join(cells) + " |")
    base = results["no-mix"]
    mean_of = {m: np.mean([base[s][m] for s in base]) for m in ("pixel_accuracy", "miou", "miou_digits")}
    lines += ["", "no mixing: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in mean_of.items())]
    command = "python scripts/measure_segmentation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines += ["", f"command: {command.strip()}"]
    print("\n" + "\n".join(lines))
    if args.output_dir:
        out.mkdir(parents=True, exist_ok=True)
        saved = {"command": command.strip(), "table": lines, "results": results}
        (out / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
        (out / "report.md").write_text("# segmentation: pixel mixing against no mix\n\n" + "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
