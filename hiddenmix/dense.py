"""Dense labels: a target per position (a token's tag, a pixel's class) from the same plan as the mix.

At each position the plan says how much of the content is the sample's own (`w`): λ under Mixup, 1 or 0 under
CutMix / FMix (outside / inside the pasted region), whatever the padding policy made it at a sequence site. The
target there is `w·y_i[t] + (1 - w)·y_π(i)[t]`, so a pasted span or box carries its labels with it and hard labels
stay hard under CutMix.

The one rule for ignored positions (`ignore_index`: padding, sub-word continuations, special tokens, unlabelled
pixels): a position counts only if every sample whose content is there (`w > 0` for the sample itself, `w < 1` for
its partner) has a label there. A label that is missing for content that is present cannot be mixed into a
target; the position is left out rather than given a target that misstates its content.

The loss never builds `[B, C, ...]` soft maps: cross-entropy is linear in the target, so it is
`w·CE(y_i) + (1 - w)·CE(y_π)` per position, label smoothing included.

References:
    Zhang et al., "SeqMix: Augmenting Active Sequence Labeling via Sequence Mixup", EMNLP 2020.
    Chen et al., "Local Additivity Based Data Augmentation for Semi-supervised NER" (LADA), EMNLP 2020.
    French et al., "Semi-supervised semantic segmentation needs strong, varied perturbations" (CutMix for
    segmentation), BMVC 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._compat import check_on_device
from .plan import MixPlan


@dataclass(frozen=True)
class DenseTargets:
    """Per-position targets of a mixed batch. Every tensor is `[B, *S]` (S: tokens `T`, or pixels `H, W`).

    Attributes:
        labels: each position's own label (ignore_index kept).
        partner_labels: the label of the partner's content at that position.
        weight: float32 weight of the sample's own content at each position.
        valid: bool, the positions that count (see the module's rule).
        num_classes: C.
        label_smoothing: ε, applied to each label before mixing.
        ignore_index: the label of ignored positions.
    """

    labels: Tensor
    partner_labels: Tensor
    weight: Tensor
    valid: Tensor
    num_classes: int
    label_smoothing: float = 0.0
    ignore_index: int = -100

    def soft(self, class_dim: int = -1) -> Tensor:
        """The targets as probabilities, classes along `class_dim` (`-1`: `[B, *S, C]`; `1`: `[B, C, *S]`); rows of
        positions that do not count are all zeros."""
        c, eps = self.num_classes, self.label_smoothing

        def rows(labels: Tensor) -> Tensor:
            return F.one_hot(labels.clamp(0, c - 1), c).to(torch.float32) * (1 - eps) + eps / c

        weight = self.weight[..., None]
        target = (weight * rows(self.labels) + (1 - weight) * rows(self.partner_labels)) * self.valid[..., None]
        return target if class_dim in (-1, target.dim() - 1) else target.movedim(-1, class_dim)

    def hard(self) -> Tensor:
        """The label of whichever sample's content dominates each position (exact under CutMix / FMix, where the
        weight is 0 or 1); `ignore_index` where a position does not count."""
        label = torch.where(self.weight >= 0.5, self.labels, self.partner_labels)
        return torch.where(self.valid, label, torch.full_like(label, self.ignore_index))


def is_dense(labels: Tensor) -> bool:
    """Integer labels with a position axis (`[B, T]` tags, `[B, H, W]` maps) are dense."""
    return torch.is_tensor(labels) and not labels.is_floating_point() and labels.dim() >= 2


def mix_dense_targets(
    labels: Tensor,
    plan: MixPlan,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> DenseTargets:
    """Per-position targets of `labels` (`[B, T]` or `[B, H, W]` class ids) under `plan`.

    Raises:
        ValueError: the labels do not fit the plan (batch, positions) or hold ids outside `[0, num_classes)` other
            than `ignore_index` (checked on the device, without a sync, off the CPU).
    """
    if not is_dense(labels):
        raise ValueError(
            f"dense labels are integer class ids with a position axis; got {labels.dtype} {tuple(labels.shape)}."
        )
    if labels.shape[0] != plan.batch_size:
        raise ValueError(f"labels have shape {tuple(labels.shape)} but the plan mixed a batch of {plan.batch_size}.")
    if labels.device != plan.device:
        labels = labels.to(plan.device)
    ignored = labels == ignore_index
    check_on_device(
        ignored | ((labels >= 0) & (labels < num_classes)),
        f"labels must be class ids in [0, {num_classes}) or ignore_index={ignore_index} (num_classes={num_classes}).",
    )
    weight = plan.position_weights(tuple(labels.shape[1:]))
    partner = labels.index_select(0, plan.index)
    partner_ignored = ignored.index_select(0, plan.index)
    valid = ~(ignored & (weight > 0)) & ~(partner_ignored & (weight < 1))
    return DenseTargets(labels, partner, weight, valid, num_classes, label_smoothing, ignore_index)


def dense_loss_sum(logits: Tensor, targets: DenseTargets, *, class_dim: int) -> Tensor:
    """Σ over the positions that count of the soft-target cross-entropy (a 0-dim float32 tensor).

    `logits` carry the classes along `class_dim`; positions that do not match the targets' (a segmentation head's
    lower resolution) are upsampled bilinearly first, as `transformers`' segmentation models do for their own loss.
    """
    if class_dim != 1:
        logits = logits.movedim(class_dim, 1)  # (B, C, *S)
    if logits.shape[1] != targets.num_classes:
        raise ValueError(
            f"the model produces {logits.shape[1]} classes per position but the targets have {targets.num_classes}; "
            "check num_labels / MixConfig.num_classes."
        )
    size = tuple(targets.labels.shape[1:])
    if tuple(logits.shape[2:]) != size:
        if logits.dim() != 4 or len(size) != 2:
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} do not match labels of shape {tuple(targets.labels.shape)}."
            )
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    log_probs = F.log_softmax(logits.float(), dim=1)
    own = -log_probs.gather(1, targets.labels.clamp(0, targets.num_classes - 1)[:, None]).squeeze(1)
    other = -log_probs.gather(1, targets.partner_labels.clamp(0, targets.num_classes - 1)[:, None]).squeeze(1)
    per_position = torch.lerp(other, own, targets.weight)
    if targets.label_smoothing > 0:
        eps = targets.label_smoothing
        per_position = (1 - eps) * per_position - eps * log_probs.mean(1)
    return (per_position * targets.valid).sum()


def dense_soft_target_loss(logits: Tensor, targets: DenseTargets, *, class_dim: int = -1) -> Tensor:
    """Mean over the positions that count of the soft-target cross-entropy (0 when none counts)."""
    return dense_loss_sum(logits, targets, class_dim=class_dim) / targets.valid.sum().clamp_min(1)


def soft_map_cross_entropy(logits: Tensor, soft: Tensor) -> Tensor:
    """Mean cross-entropy of `[B, C, h, w]` logits against `[B, C, H, W]` soft label maps (`DenseTargets.soft(1)`,
    what `MixupCutmix` returns for label maps), over the pixels whose target is not all zeros (the ignored ones).
    Logits of another size are upsampled bilinearly first."""
    if logits.dim() != 4 or soft.dim() != 4 or logits.shape[:2] != soft.shape[:2]:
        raise ValueError(f"logits {tuple(logits.shape)} and soft maps {tuple(soft.shape)} must be [B, C, *, *] alike.")
    if logits.shape[2:] != soft.shape[2:]:
        logits = F.interpolate(logits.float(), size=tuple(soft.shape[2:]), mode="bilinear", align_corners=False)
    per_pixel = -(soft.float() * F.log_softmax(logits.float(), dim=1)).sum(1)
    counted = soft.sum(1) > 0
    return (per_pixel * counted).sum() / counted.sum().clamp_min(1)


def class_dim_of(logits: Tensor, labels: Tensor) -> int:
    """Where `logits` hold the classes for dense `labels`: last (`[B, T, C]` token logits) or 1 (`[B, C, H, W]`)."""
    if logits.dim() == labels.dim() + 1 and tuple(logits.shape[:-1]) == tuple(labels.shape):
        return -1
    if logits.dim() == labels.dim() + 1 and logits.shape[0] == labels.shape[0]:
        return 1
    raise ValueError(
        f"logits of shape {tuple(logits.shape)} do not fit dense labels of shape {tuple(labels.shape)}: expected "
        "[B, T, C] for tags or [B, C, h, w] for a label map."
    )


__all__ = [
    "DenseTargets",
    "class_dim_of",
    "dense_loss_sum",
    "dense_soft_target_loss",
    "is_dense",
    "mix_dense_targets",
    "soft_map_cross_entropy",
]
