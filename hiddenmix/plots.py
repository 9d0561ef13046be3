"""Pictures: a mixed batch as a grid of captioned tiles, and reliability diagrams.

matplotlib is imported inside each function (with the `Agg` backend), so importing this module, or `hiddenmix`,
never loads it; it is an optional dependency (`pip install hiddenmix[demo]`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .plan import MixPlan


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_mixed_grid(
    path: str | Path,
    pixel_values: Tensor,
    labels: Tensor,
    plan: MixPlan,
    *,
    class_names: Sequence[str] | None = None,
    columns: int = 8,
    title: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Path:
    """Save a PNG grid of a mixed batch, each tile captioned `own class λ / partner class 1-λ`.

    Look at mixed examples before trusting them: a wrong λ orientation, an empty box or a mask on the wrong
    sample shows at a glance.

    Args:
        path: where to write the PNG (parents are created).
        pixel_values: `[B, C, H, W]` mixed images (C = 1 or 3).
        labels: `[B]` class ids of the unmixed batch.
        plan: the plan that mixed them (`plan.lam_target` is the realised λ).
        class_names: names of the class ids; default the ids.
        columns: tiles per row.
        title: figure title.
        mean, std: per-channel normalisation to undo for display.
    """
    plt = _pyplot()
    images = _for_display(pixel_values, mean, std)
    batch = images.shape[0]
    ids = labels.detach().to("cpu").tolist()  # inspection only: not in any training path
    partner = plan.index.detach().to("cpu").tolist()
    lam = plan.lam_target.detach().to("cpu").tolist()

    def name(i: int) -> str:
        return str(class_names[i]) if class_names is not None else str(i)

    rows = math.ceil(batch / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns, 2.1 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= batch:
            continue
        _show(ax, images[k])
        if lam[k] >= 1.0:
            caption = f"{name(ids[k])} 1.00"
        else:
            caption = f"{name(ids[k])} {lam[k]:.2f}\n{name(ids[partner[k]])} {1 - lam[k]:.2f}"
        ax.set_title(caption, fontsize=8)
    return _save(fig, path, title)


def save_mixed_segmentation(
    path: str | Path,
    pixel_values: Tensor,
    label_maps: Tensor,
    plan: MixPlan,
    *,
    num_classes: int,
    ignore_index: int = 255,
    columns: int = 4,
    title: str | None = None,
) -> Path:
    """Save a PNG of mixed images, each beside its mixed label map (one colour per class, ignored pixels white), to
    see that a pasted box or FMix blob carries its labels with it.

    Args:
        path: where to write the PNG (parents are created).
        pixel_values: `[B, C, H, W]` mixed images.
        label_maps: `[B, H, W]` mixed label maps (`MixedImages.targets.hard()`).
        plan: the plan that mixed them (its realised λ captions each pair).
        num_classes: classes of the maps (for the colours).
        ignore_index: label of ignored pixels.
        columns: image-and-map pairs per row.
        title: figure title.
    """
    import numpy as np

    plt = _pyplot()
    images = _for_display(pixel_values)
    maps = label_maps.detach().to("cpu").numpy()
    lam, partner = plan.lam_target.detach().to("cpu").tolist(), plan.index.detach().to("cpu").tolist()
    colours = plt.get_cmap("tab20" if num_classes > 10 else "tab10")(np.arange(num_classes))[:, :3]
    batch = images.shape[0]
    rows = math.ceil(batch / columns)
    fig, axes = plt.subplots(
        rows, 2 * columns, figsize=(1.5 * 2 * columns, 1.75 * rows + 0.5), squeeze=False, layout="constrained"
    )
    for k in range(rows * columns):
        image_ax, map_ax = axes.flat[2 * k], axes.flat[2 * k + 1]
        image_ax.axis("off")
        map_ax.axis("off")
        if k >= batch:
            continue
        _show(image_ax, images[k])
        coloured = np.ones((*maps[k].shape, 3))
        known = maps[k] != ignore_index
        coloured[known] = colours[np.clip(maps[k][known], 0, num_classes - 1)]
        map_ax.imshow(coloured, interpolation="nearest")
        caption = f"#{k} λ {lam[k]:.2f}" + (f" (from #{partner[k]})" if lam[k] < 1 else "")
        image_ax.set_title(caption, fontsize=7)
    return _save(fig, path, title)


def _for_display(pixel_values: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """`[B, C, H, W]` on the CPU, normalisation undone, each image scaled to [0, 1]."""
    images = pixel_values.detach().to("cpu", torch.float32)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).reshape(shape) + torch.tensor(mean).reshape(shape)
    lo = images.flatten(1).amin(1).reshape(-1, 1, 1, 1)
    hi = images.flatten(1).amax(1).reshape(-1, 1, 1, 1)
    return ((images - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def _show(ax, image: Tensor) -> None:
    tile = image.permute(1, 2, 0).numpy()
    ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", interpolation="nearest")


def _save(fig, path: str | Path, title: str | None) -> Path:
    plt = _pyplot()
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reliability_diagram(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    n_bins: int = 15,
    title: str = "",
) -> Path:
    """Save a reliability diagram per run: accuracy against confidence in equal-width bins, with the number of
    examples each bin holds beneath it (a nearly empty bin is drawn faint, and its count says why it matters little).

    Args:
        runs: `{name: (probabilities [N, C], labels [N])}`.
        path: the PNG to write (parents are created).
        n_bins: number of confidence bins (as in the ECE).
        title: figure title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(
        2, len(runs), figsize=(4.2 * len(runs), 5.4), squeeze=False, height_ratios=(3, 1), sharex="col"
    )
    edges = np.linspace(0, 1, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    for column, (name, (probs, labels)) in enumerate(runs.items()):
        top, bottom = axes[0, column], axes[1, column]
        probs, labels = np.asarray(probs), np.asarray(labels)
        confidence = probs.max(-1)
        correct = probs.argmax(-1) == labels
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        acc = np.array([correct[bins == b].mean() if counts[b] else np.nan for b in range(n_bins)])
        conf = np.array([confidence[bins == b].mean() if counts[b] else np.nan for b in range(n_bins)])
        share = counts / max(len(labels), 1)
        ece = float(np.nansum(share * np.abs(acc - conf)))
        # a bin's opacity follows its share of the examples, so a bin of 3 examples does not look like one of 300
        alpha = 0.15 + 0.75 * share / max(share.max(), 1e-12)
        for b in np.flatnonzero(counts):
            top.bar(centers[b], acc[b], width=1 / n_bins, color="tab:blue", edgecolor="black", alpha=alpha[b])
            top.bar(
                centers[b],
                conf[b] - acc[b],
                bottom=acc[b],
                width=1 / n_bins,
                color="tab:red",
                alpha=0.3 * alpha[b] / alpha.max(),
            )
        top.plot([0, 1], [0, 1], "k--", linewidth=1)
        top.set(
            xlim=(0, 1),
            ylim=(0, 1),
            ylabel="accuracy",
            title=f"{name}\nacc {correct.mean():.3f}  ECE {ece:.3f}  (n = {len(labels)})",
        )
        bottom.bar(centers, counts, width=1 / n_bins, color="grey", edgecolor="black")
        bottom.set(xlabel="confidence", ylabel="examples")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["reliability_diagram", "save_mixed_grid", "save_mixed_segmentation"]
