"""`MixPlan`: everything one forward mixes, drawn before any mixing and only read by the hooks and the targets.

Every mix travels in the plan: partners, λ, CutMix boxes and FMix masks, token-span weights. A path that mixed
something the plan does not describe could not build correct (or dense, per-position) targets. `PlanSampler`
(`sampler.py`) draws plans; tests and hand-made schedules build them with `MixPlan.from_lam` / `MixPlan.identity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .ops import apply_pad_policy, box_masks, token_share_lam, weight_map


@dataclass(frozen=True)
class MixPlan:
    """Everything one forward mixes. All tensors live on the batch's device.

    Attributes:
        index: `[B]` long, partner of each sample (itself when it is not mixed).
        lam: `[B]` float32, sampled weight of each sample's own content (1 for unmixed samples). For CutMix rows
            it is the λ the box was drawn from.
        lam_target: `[B]` float32, realised share of each sample's own content, used for the soft targets
            (clipped box area with `correct_lam`, real-token share with `correct_lam_tokens`).
        site: `input`, `embeddings` or `hidden`.
        mixed: host-side flag; False when nothing is mixed (batch size 1, a `batch`-mode draw said no, or mixing
            is off). Hooks skip all work then.
        layer: the layer whose output is mixed (`hidden` site).
        grid: `(H, W)` the boxes refer to (pixels, patches, or `(1, T)` for a token span).
        boxes: `[B, 4]` long `(top, bottom, left, right)`, bottom/right exclusive, or None without CutMix (or with
            FMix). Rows that do not paste have an empty box.
        masks: `[B, H, W]` bool FMix masks on `grid`, True where the partner's content is pasted; None otherwise.
            Rows that do not paste have an empty mask.
        use_cutmix: `[B]` bool, which rows paste (CutMix / FMix); None means every row does when `boxes` or `masks`
            is set.
        weights: `[B, T]` per-token weight of each sample's own state, padding policy applied (sequence sites).
        token_mask: `[B, T]` real-token mask the plan was drawn with (sequence sites), or None.
    """

    index: Tensor
    lam: Tensor
    lam_target: Tensor
    site: str
    mixed: bool
    layer: int | None = None
    grid: tuple[int, int] | None = None
    boxes: Tensor | None = None
    masks: Tensor | None = field(default=None, repr=False)
    use_cutmix: Tensor | None = None
    weights: Tensor | None = field(default=None, repr=False)
    token_mask: Tensor | None = field(default=None, repr=False)

    @property
    def batch_size(self) -> int:
        return self.index.shape[0]

    @property
    def device(self) -> torch.device:
        return self.index.device

    def paste_mask(self) -> Tensor | None:
        """`[B, H, W]` bool on `grid`: True where a row takes its partner's content (its box or FMix mask); None
        when the plan pastes nothing."""
        if self.masks is not None:
            return self.masks
        if self.boxes is None:
            return None
        return box_masks(self.boxes, *self.grid)

    def own_weight(self, grid: tuple[int, int] | None = None) -> Tensor:
        """`[B, H, W]` float32 weight of each sample's own content at each position of `grid` (default the plan's):
        λ on Mixup rows, 0 inside the pasted region and 1 outside on CutMix / FMix rows, 1 on unmixed rows."""
        grid = grid if grid is not None else (self.grid or (1, 1))
        paste = self.paste_mask()
        if paste is not None and tuple(paste.shape[1:]) != tuple(grid):
            raise ValueError(f"the plan pastes on a {tuple(paste.shape[1:])} grid, not on {tuple(grid)}.")
        return weight_map(self.lam, grid, paste, self.use_cutmix)

    def position_weights(self, shape: tuple[int, ...]) -> Tensor:
        """`[B, *shape]` float32 weight of each sample's own content at each position of a dense label (a `[T]`
        token axis, or an `(H, W)` pixel grid), for per-position targets."""
        shape = tuple(shape)
        if self.weights is not None and tuple(self.weights.shape[1:]) == shape:
            return self.weights.to(torch.float32)
        pastes = self.boxes is not None or self.masks is not None
        if len(shape) == 2 and self.grid is not None and tuple(self.grid) == shape:
            return self.own_weight(shape)
        if self.weights is None and not pastes:  # Mixup (or nothing): λ at every position
            return self.lam.to(torch.float32).reshape(-1, *([1] * len(shape))).expand(-1, *shape)
        where = tuple(self.weights.shape[1:]) if self.weights is not None else self.grid
        raise ValueError(
            f"dense labels with positions {shape} do not match the positions this plan mixed ({where}): per-position "
            "targets need labels on the mixed grid (the tokens of a sequence site, the pixels of site='input')."
        )

    @classmethod
    def identity(
        cls,
        batch_size: int,
        device: torch.device | str = "cpu",
        *,
        site: str = "hidden",
        layer: int | None = None,
        token_mask: Tensor | None = None,
    ) -> MixPlan:
        """A plan that mixes nothing (λ = 1, every sample its own partner)."""
        ones = torch.ones(batch_size, device=device)
        return cls(
            index=torch.arange(batch_size, device=device),
            lam=ones,
            lam_target=ones,
            site=site,
            mixed=False,
            layer=layer,
            token_mask=token_mask,
        )

    @classmethod
    def from_lam(
        cls,
        index: Tensor,
        lam: Tensor | float,
        *,
        site: str = "hidden",
        layer: int | None = None,
        token_mask: Tensor | None = None,
        pad_policy: str = "mix",
        correct_lam_tokens: bool = False,
    ) -> MixPlan:
        """A Mixup plan with a given partner `index` and λ, e.g. for tests or a hand-made schedule."""
        index = torch.as_tensor(index, dtype=torch.long)
        lam = torch.as_tensor(lam, dtype=torch.float32, device=index.device).expand(index.shape[0]).clone()
        index = torch.where(lam < 1, index, torch.arange(index.shape[0], device=index.device))  # see sample()
        weights = lam_target = None
        if token_mask is not None:
            weights = apply_pad_policy(lam[:, None].expand(token_mask.shape).clone(), token_mask, index, pad_policy)
            if correct_lam_tokens:
                lam_target = token_share_lam(weights, token_mask, index, lam)
        return cls(
            index=index,
            lam=lam,
            lam_target=lam if lam_target is None else lam_target,
            site=site,
            mixed=True,
            layer=layer,
            weights=weights,
            token_mask=token_mask,
        )
