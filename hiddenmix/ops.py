"""Pure tensor functions that apply a mix. No randomness, no hooks, no host-device synchronisation.

Every function takes the partner permutation `index` ([B] long) and the weight of each sample's own content
(λ, or a per-position weight map), and returns new tensors: the caller's tensors are never written to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .plan import MixPlan

# embedding_bag fuses "gather the partner row, weight both rows, add" into one pass; kernels exist for these dtypes
_FUSED_DTYPES = (torch.float32, torch.float64)


def _broadcast_to(weight: Tensor, x: Tensor) -> Tensor:
    """`weight` [B, *S] viewed so it broadcasts against `x` [B, *S, *rest], cast to `x`'s dtype."""
    extra = x.dim() - weight.dim()
    return weight.to(x.dtype).reshape(*weight.shape, *([1] * extra))


def interpolate(x: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """`weight·x + (1 - weight)·x[index]`, per sample or per position.

    Args:
        x: `[B, ...]` floating tensor.
        index: `[B]` partner of each sample.
        weight: `[B]` (per sample) or `[B, *S]` for leading dims `S` of `x[0]` (per position).
    """
    if not x.is_floating_point():
        raise TypeError(
            f"cannot interpolate a tensor of dtype {x.dtype}: integer inputs such as token ids are never mixed; "
            "mix at site='embeddings' or site='hidden' instead."
        )
    return torch.lerp(x[index], x, _broadcast_to(weight, x))


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """`[B, H, W]` bool, True inside each sample's box `(top, bottom, left, right)` (bottom/right exclusive)."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2])  # (B, H)
    in_cols = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def box_area_lam(boxes: Tensor, height: int, width: int) -> Tensor:
    """λ = 1 - pasted area / total area, exactly, for integer boxes."""
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    return 1.0 - area.to(torch.float32) / float(height * width)


def weight_map(
    lam: Tensor, grid: tuple[int, int], paste: Tensor | None = None, use_cutmix: Tensor | None = None
) -> Tensor:
    """Per-position weight of each sample's own content on a `grid` `(H, W)`: `[B, H, W]` float32.

    Args:
        lam: `[B]` Mixup λ of each row.
        grid: `(H, W)`.
        paste: `[B, H, W]` bool, True where a row takes its partner's content (a CutMix box, an FMix mask).
        use_cutmix: `[B]` bool, rows that paste; the others get λ everywhere. None: every row pastes (when `paste`
            is given).
    """
    height, width = grid
    lam_map = lam.to(torch.float32)[:, None, None].expand(-1, height, width)
    if paste is None:
        return lam_map
    outside = (~paste).to(torch.float32)
    if use_cutmix is None:
        return outside
    return torch.where(use_cutmix[:, None, None], outside, lam_map)


def apply_pad_policy(weight: Tensor, token_mask: Tensor, index: Tensor, policy: str) -> Tensor:
    """Adjust a `[B, T]` weight map where a position is real in only one of the two partners.

    `mix` and `zero` keep the weights (`zero` zeroes pad states in `mix_sequence` instead); `keep` gives the real
    state the whole position: weight 1 where only the sample is real, 0 where only its partner is.
    """
    if policy != "keep":
        return weight
    own = token_mask.bool()
    other = own[index]
    keep_own = own & ~other
    take_other = other & ~own
    return torch.where(keep_own, torch.ones_like(weight), torch.where(take_other, torch.zeros_like(weight), weight))


def mix_sequence(hidden: Tensor, index: Tensor, weight: Tensor, token_mask: Tensor | None, policy: str) -> Tensor:
    """Mix hidden states `[B, T, D]` with a `[B, T]` weight map (already adjusted by `apply_pad_policy`)."""
    if policy == "zero" and token_mask is not None:
        own_real = token_mask.bool()
        other_real = own_real[index]
        one_real = own_real ^ other_real  # only here does a pad state meet real content
        own = torch.where(_broadcast_to(one_real & ~own_real, hidden).bool(), 0.0, hidden)
        other = torch.where(_broadcast_to(one_real & ~other_real, hidden).bool(), 0.0, hidden[index])
        return torch.lerp(other, own, _broadcast_to(weight, hidden))
    return interpolate(hidden, index, weight)


def token_share_lam(weight: Tensor, token_mask: Tensor, index: Tensor, fallback: Tensor) -> Tensor:
    """λ corrected to the share of real-token content that comes from each sample itself.

    With `w` the per-position weight of the sample's own state, `m` its real-token mask and `m'` its partner's:
    `λ = Σ w·m / Σ (w·m + (1 - w)·m')`. Pad states carry no content, so they count for neither side.
    Rows without a real token in either partner fall back to `fallback`.
    """
    own = token_mask.to(weight.dtype)
    other = own[index]
    num = (weight * own).sum(-1)
    den = num + ((1.0 - weight) * other).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-12), fallback.to(weight.dtype))


def union_attention_mask(mask: Tensor | None, index: Tensor, *, outer: bool = False) -> Tensor | None:
    """The attention mask of a mixed batch: each sample sees what it or its partner saw.

    Works for every form `transformers` passes to layers, as long as larger means "more visible": 2D `[B, T]`
    0/1 masks, 4D bool (sdpa, True = attend), 4D additive float (eager, 0 = attend, large negative = masked) and
    4D int. The union is then the element-wise maximum of the mask and the mask permuted by `index`.

    Args:
        mask: the mask, or `None` (nothing padded: the union is `None` too).
        index: `[B]` partner of each sample.
        outer: the mask is a query x key outer product `m_q·m_k` (DeBERTa). An element-wise OR of outer products
            is not the outer product of the OR, so the key mask is recovered (`max` over queries), united, and
            the outer product rebuilt.
    """
    if mask is None:
        return None
    if mask.dim() == 0 or mask.shape[0] == 1:
        return mask  # broadcast over the batch: identical for every sample, permuting changes nothing
    if mask.shape[0] != index.shape[0]:
        raise ValueError(f"attention mask has batch size {mask.shape[0]} but the plan has {index.shape[0]}.")
    if outer:
        if mask.dim() != 4:
            raise ValueError(
                f"an outer-product attention mask must be 4D [B, 1, T, T]; got shape {tuple(mask.shape)}."
            )
        keys = mask.amax(dim=-2, keepdim=True)  # (B, 1, 1, T)
        keys = torch.maximum(keys, keys[index])
        return keys * keys.transpose(-1, -2) if mask.dtype != torch.bool else keys & keys.transpose(-1, -2)
    return torch.maximum(mask, mask[index])


def mix_pixels(pixel_values: Tensor, plan: MixPlan) -> Tensor:
    """Apply `plan` to `[B, C, H, W]` images; returns `pixel_values` itself when the plan mixes nothing.

    One pass, chosen by what the plan holds (all decided on the host from the plan's structure, never its values):
    pure Mixup is a single fused gather-and-weigh (`embedding_bag`: reads both rows once, writes once, as cheap as
    a `lerp` of two given tensors); pure CutMix / FMix is one gather of the partners and a `where` with a broadcast
    bool mask written into that gathered buffer; a Mixup/CutMix switch per sample is one `lerp` with a
    `[B, 1, H, W]` weight map.

    Args:
        pixel_values: `[B, C, H, W]` (any leading layout `[B, ..., H, W]` works).
        plan: the plan; its boxes or FMix masks are on the pixel grid `(H, W)`.
    """
    if not plan.mixed:
        return pixel_values
    x = pixel_values
    batch = x.shape[0]
    height, width = x.shape[-2:]
    lead = x.dim() - 3
    paste = plan.paste_mask()
    if paste is None:  # pure Mixup
        if not x.is_floating_point():
            raise TypeError(f"Mixup needs floating-point pixel_values; got dtype {x.dtype}. Convert with x.float().")
        if x.dtype in _FUSED_DTYPES and not x.requires_grad:
            bags = torch.stack([torch.arange(batch, device=x.device), plan.index], dim=1)  # (B, 2)
            lam = plan.lam.to(x.dtype)
            weights = torch.stack([lam, 1.0 - lam], dim=1)  # (B, 2)
            flat = x.reshape(batch, -1)  # a view for contiguous batches
            return F.embedding_bag(bags, flat, per_sample_weights=weights, mode="sum").view(x.shape)
        return torch.lerp(x[plan.index], x, plan.lam.to(x.dtype).reshape(batch, *([1] * (x.dim() - 1))))

    if tuple(paste.shape) != (batch, height, width):
        raise ValueError(
            f"the plan pastes on a {tuple(paste.shape[1:])} grid but the images are {(height, width)}; draw the plan "
            "with grid=(H, W) of these images."
        )
    # (B, C, H, W): the one copy; the result is written into it. Advanced indexing, not index_select: on CPU
    # index_select opens one parallel region per row of a large batch, each a thread wake-up on a busy machine.
    partner = x[plan.index]
    if plan.use_cutmix is None:  # pure CutMix / FMix: exact pastes, any dtype
        inside = paste.reshape(batch, *([1] * lead), height, width)
        if x.requires_grad:
            return torch.where(inside, partner, x)
        return torch.where(inside, partner, x, out=partner)
    if not x.is_floating_point():
        raise TypeError(f"Mixup needs floating-point pixel_values; got dtype {x.dtype}. Convert with x.float().")
    # weight of the sample's own pixel: 0 / 1 on CutMix rows (lerp is exact at both ends), λ on Mixup rows
    weight = weight_map(plan.lam, (height, width), paste, plan.use_cutmix).to(x.dtype)
    weight = weight.reshape(batch, *([1] * lead), height, width)
    if x.requires_grad:
        return torch.lerp(partner, x, weight)
    return torch.lerp(partner, x, weight, out=partner)
