"""Soft targets from a `MixPlan`, and the losses that take them.

`soft = λ·smooth(y) + (1 - λ)·smooth(y[π])` with the λ the plan actually realised. Label smoothing is applied to
each label before mixing (so a mixed target is a mix of two smoothed labels, as in timm). Rows whose label, or
whose partner's label, is `ignore_index` are left out of the loss rather than turned into garbage targets.

Soft targets never go through a `transformers` model's own loss: float labels silently switch a
`...ForSequenceClassification` to `BCEWithLogitsLoss` and persist `config.problem_type`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._compat import check_on_device
from .config import PROBLEM_TYPES
from .dense import DenseTargets, class_dim_of, dense_soft_target_loss, is_dense, mix_dense_targets
from .plan import MixPlan


@dataclass(frozen=True)
class SoftTargets:
    """Mixed targets and the rows that count.

    Attributes:
        target: `[B, C]` class probabilities (single-label), `[B, C]` per-class probabilities (multi-label), or
            `[B]` / `[B, K]` values (regression).
        valid: `[B]` bool; False for rows left out (ignore_index on the row or on its partner).
        problem_type: which of the three the targets are for.
    """

    target: Tensor
    valid: Tensor
    problem_type: str


def infer_problem_type(labels: Tensor) -> str:
    """Guess the problem type from labels: class ids or `[B, C]` float rows (C > 1) are single-label (`mix_targets`
    then checks that the rows are probabilities), float `[B]` / `[B, 1]` values are regression. Multi-label rows and
    multi-output regression look like single-label rows, so they must be named with `problem_type`.
    """
    if not labels.is_floating_point():
        return "single_label_classification"
    if labels.dim() == 2 and labels.shape[1] > 1:
        return "single_label_classification"
    return "regression"


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float, ignore_index: int = -100) -> Tensor:
    """`[B]` class ids -> `[B, C]` float32 rows. `ignore_index` rows get an arbitrary class: they are only safe with
    the `valid` mask of `mix_targets`, which leaves them out of the loss."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    safe = labels.clamp(0, num_classes - 1)  # ignore_index rows get some class; they are masked out anyway
    rows = torch.full((labels.shape[0], num_classes), off, device=labels.device, dtype=torch.float32)
    return rows.scatter(1, safe[:, None], on)


def mix_targets(
    labels: Tensor,
    plan: MixPlan,
    *,
    num_classes: int | None = None,
    problem_type: str | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> SoftTargets | DenseTargets:
    """Soft targets of a batch mixed by `plan` (per-position `DenseTargets` for dense labels).

    Args:
        labels: class ids `[B]` (int), one-hot or probability rows `[B, C]`, multi-label 0/1 rows `[B, C]`,
            regression values `[B]` / `[B, K]`, or dense class ids `[B, T]` / `[B, H, W]` (int).
        plan: the plan of the forward the targets are for.
        num_classes: C; required for class ids, checked against rows.
        problem_type: `single_label_classification`, `multi_label_classification` or `regression`;
            None infers it (`infer_problem_type`).
        label_smoothing: ε applied to each label before mixing (classification only).
        ignore_index: class id of rows to leave out.
    """
    if not torch.is_tensor(labels):
        raise TypeError(f"labels must be a tensor; got {type(labels).__name__}.")
    batch = plan.batch_size
    if labels.dim() == 0 or labels.shape[0] != batch:
        raise ValueError(f"labels have shape {tuple(labels.shape)} but the plan mixed a batch of {batch}.")
    if labels.device != plan.device:
        labels = labels.to(plan.device)
    if is_dense(labels) and problem_type in (None, "single_label_classification"):
        if num_classes is None:
            raise ValueError("num_classes is needed to turn dense class ids into targets; pass num_classes=.")
        return mix_dense_targets(
            labels, plan, num_classes=num_classes, label_smoothing=label_smoothing, ignore_index=ignore_index
        )
    inferred = problem_type is None
    if problem_type is None:
        problem_type = infer_problem_type(labels)
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type={problem_type!r} is not allowed; choose one of {list(PROBLEM_TYPES)}.")
    index, lam = plan.index, plan.lam_target

    if problem_type == "regression":
        if not labels.is_floating_point():
            raise ValueError(f"regression labels must be floating point; got dtype {labels.dtype}.")
        values = labels.to(torch.float32)
        weight = lam.reshape(-1, *([1] * (values.dim() - 1)))
        target = torch.lerp(values.index_select(0, index), values, weight)
        return SoftTargets(target, torch.ones(batch, dtype=torch.bool, device=labels.device), problem_type)

    if problem_type == "single_label_classification" and not labels.is_floating_point():
        if labels.dim() != 1:
            raise ValueError(
                f"class-id labels must have shape [B] (or [B, T] / [B, H, W] dense); got {tuple(labels.shape)}."
            )
        if num_classes is None:
            raise ValueError("num_classes is needed to turn class ids into soft targets; pass num_classes=.")
        ignored = labels == ignore_index
        check_on_device(
            ignored | ((labels >= 0) & (labels < num_classes)),
            f"labels must be class ids in [0, {num_classes}) or ignore_index={ignore_index} "
            f"(num_classes={num_classes}); a larger id means num_classes is too small.",
        )
        rows = smooth_one_hot(labels, num_classes, label_smoothing, ignore_index)
        partner_counts = lam < 1  # an ignored partner only matters if some of it was mixed in
        valid = ~ignored & ~(ignored[index] & partner_counts)
    else:
        if labels.dim() != 2:
            raise ValueError(f"{problem_type} labels given as rows must have shape [B, C]; got {tuple(labels.shape)}.")
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(f"labels have {labels.shape[1]} classes per row but num_classes={num_classes}.")
        rows = labels.to(torch.float32)
        if inferred and problem_type == "single_label_classification":
            # an undeclared [B, C] float form is read as class probabilities; multi-hot rows look the same. The
            # tolerance allows for the rounding of rows stored in low precision (bf16 softmax rows)
            tolerance = max(1e-3, 2 * rows.shape[1] * torch.finfo(labels.dtype).eps)
            check_on_device(
                ((rows >= 0) & (rows <= 1)).all() & ((rows.sum(-1) - 1).abs() < tolerance).all(),
                f"labels are float rows of shape {tuple(labels.shape)} and no problem type is declared, so they are "
                "read as class probabilities (single-label), but some rows do not sum to 1 (multi-hot rows?). For "
                "multi-label rows declare problem_type='multi_label_classification' (MixConfig.problem_type, or "
                "the model config's before the mixer is attached); for single-label rows pass class ids or "
                "probability rows.",
            )
        if label_smoothing > 0:
            classes = rows.shape[1] if problem_type == "single_label_classification" else 2
            rows = rows * (1.0 - label_smoothing) + label_smoothing / classes
        valid = torch.ones(batch, dtype=torch.bool, device=labels.device)
    target = torch.lerp(rows.index_select(0, index), rows, lam[:, None].to(rows.dtype))
    return SoftTargets(target, valid, problem_type)


def counted_labels(labels: Tensor, ignore_index: int = -100) -> Tensor:
    """The labelled items of `labels` as `transformers.Trainer` counts them for `num_items_in_batch`: every element
    that is not `ignore_index` (class ids, tagged positions, or each value of a label row)."""
    return (labels != ignore_index).sum()


def target_options(
    config: Any, problem_type: str | None, logits: Tensor | None, labels: Tensor, num_labels: int | None
) -> dict:
    """The keyword arguments of `mix_targets` / `mixup_loss` for a mixer's `config`: the class count is
    `config.num_classes`, else the logits' class dimension, else (no logits) the model's `num_labels`."""
    num_classes = config.num_classes
    if num_classes is None and problem_type != "regression":
        if logits is None:
            num_classes = num_labels
        else:
            dense = is_dense(labels) and problem_type in (None, "single_label_classification")
            num_classes = logits.shape[class_dim_of(logits, labels) if dense else -1]
    return dict(
        num_classes=num_classes,
        problem_type=problem_type,
        label_smoothing=config.label_smoothing,
        ignore_index=config.ignore_index,
    )


def _masked_mean(per_row: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return per_row.mean()
    weight = valid.to(per_row.dtype)
    return (per_row * weight).sum() / weight.sum().clamp_min(1.0)


def soft_target_cross_entropy(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over rows of `-Σ_c target_c · log_softmax(logits)_c`.

    Args:
        logits: `[B, C]`.
        target: `[B, C]` probabilities (rows of a mixed or smoothed target).
        valid: optional `[B]` bool; rows with False are left out of the mean (the loss is 0 if none count).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} must have the same shape.")
    per_row = -(target.to(torch.float32) * F.log_softmax(logits.to(torch.float32), dim=-1)).sum(-1)
    return _masked_mean(per_row, valid)


def soft_target_bce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Multi-label binary cross-entropy on mixed per-class probabilities, mean over classes and valid rows."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} must have the same shape.")
    per_row = F.binary_cross_entropy_with_logits(
        logits.to(torch.float32), target.to(torch.float32), reduction="none"
    ).mean(-1)
    return _masked_mean(per_row, valid)


def soft_target_mse(predictions: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean squared error against mixed regression targets (a `[B, 1]` prediction matches `[B]` targets)."""
    if predictions.dim() == target.dim() + 1 and predictions.shape[-1] == 1:
        predictions = predictions.squeeze(-1)
    if predictions.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(target.shape)} must have the same shape."
        )
    per_row = (predictions.to(torch.float32) - target.to(torch.float32)).pow(2)
    per_row = per_row.reshape(per_row.shape[0], -1).mean(-1)
    return _masked_mean(per_row, valid)


def soft_target_loss(logits: Tensor, targets: SoftTargets) -> Tensor:
    """The loss that fits `targets.problem_type`: soft cross-entropy, multi-label BCE or MSE."""
    if targets.problem_type == "single_label_classification":
        return soft_target_cross_entropy(logits, targets.target, targets.valid)
    if targets.problem_type == "multi_label_classification":
        return soft_target_bce(logits, targets.target, targets.valid)
    return soft_target_mse(logits, targets.target, targets.valid)


def mixup_loss(
    logits: Tensor,
    labels: Tensor,
    plan: MixPlan,
    *,
    num_classes: int | None = None,
    problem_type: str | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """`mix_targets` then `soft_target_loss`; `num_classes` defaults to the logits' class dimension.

    Dense labels (`[B, T]` token tags, `[B, H, W]` label maps; see `hiddenmix.dense`) get per-position targets and the
    mean of the per-position soft-target cross-entropy over the positions that count.
    """
    if is_dense(labels) and problem_type in (None, "single_label_classification"):
        class_dim = class_dim_of(logits, labels)
        targets = mix_dense_targets(
            labels, plan, num_classes=num_classes or logits.shape[class_dim], label_smoothing=label_smoothing,
            ignore_index=ignore_index,
        )  # fmt: skip
        return dense_soft_target_loss(logits, targets, class_dim=class_dim)
    rows = torch.is_tensor(labels) and labels.is_floating_point() and labels.dim() == 2
    if problem_type != "regression" and rows and logits.dim() == 2:
        check_width(logits, labels.shape[-1])
    ids = torch.is_tensor(labels) and not labels.is_floating_point()
    if num_classes is None and problem_type != "regression" and logits.dim() == 2 and ids:
        num_classes = logits.shape[-1]
    targets = mix_targets(
        labels,
        plan,
        num_classes=num_classes,
        problem_type=problem_type,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    if targets.problem_type != "regression":
        check_width(logits, targets.target.shape[-1])
    return soft_target_loss(logits, targets)


def check_width(logits: Tensor, classes: int) -> None:
    """The one check that a model's logits have as many classes as its targets."""
    if logits.shape[-1] != classes:
        raise ValueError(
            f"the model produces {logits.shape[-1]} logits per row but the targets have {classes} classes; check "
            "num_labels / MixConfig.num_classes."
        )
