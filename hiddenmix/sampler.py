"""`PlanSampler`: draws `MixPlan`s from a `MixConfig`, on the batch's device.

Sampling is separate from applying: the sampler draws every random number of a forward up front, on the batch's
device, and the hooks only read the plan. Gradient checkpointing therefore recomputes exactly the same mix, and
tests can hand the mixer a fixed plan.

Every mix travels in the plan: partners, λ, CutMix boxes and FMix masks, token-span weights. A path that mixed
something the plan does not describe could not build correct (or dense, per-position) targets.

Random streams: tensor-valued draws (λ, partners, boxes, FMix noise, coin flips) come from a `torch.Generator` on
the batch's device; structural choices that Python must know (which layer, and in `batch` mode whether and how
the batch is mixed) come from a host-side `random.Random`. Neither ever reads a device value back to the host.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import torch
from torch import Tensor

from ._compat import standard_gamma
from .config import MixConfig
from .ops import apply_pad_policy, box_area_lam, box_masks, token_share_lam, weight_map
from .plan import MixPlan

_RANK_STRIDE = 1_000_003  # distinct streams per process rank; a prime keeps (seed, rank) pairs from colliding


def _process_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", 0))


def _beta(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """`n` draws of Beta(α, α) on `device` as a ratio of gammas (torch's Beta takes no generator)."""
    gammas = standard_gamma(torch.full((2, n), float(alpha), device=device), generator)
    total = gammas.sum(0)
    # For small α both gammas can underflow to 0; such a draw is a coin flip between 0 and 1 in the limit,
    # and 0.5 is its mean.
    return torch.where(total > 0, gammas[0] / total.clamp_min(1e-30), torch.full_like(total, 0.5))


class PlanSampler:
    """Draws `MixPlan`s for a `MixConfig`.

    Args:
        config: the config to sample from. The sampler reads it at every draw, so a schedule may replace it.
        rank: process rank used to offset the seed; default: the `torch.distributed` rank, else `$RANK`, else 0.
    """

    def __init__(self, config: MixConfig, *, rank: int | None = None) -> None:
        self.config = config
        self.rank = rank
        self._host: random.Random | None = None
        self._device_generators: dict[torch.device, torch.Generator] = {}
        self._seed: int | None = None

    # ------------------------------------------------------------------ random streams
    def _base_seed(self) -> int:
        if self._seed is None:
            base = self.config.seed if self.config.seed is not None else torch.initial_seed()
            rank = self.rank if self.rank is not None else _process_rank()
            self._seed = (base + _RANK_STRIDE * rank) % (2**63)
        return self._seed

    def _host_rng(self) -> random.Random:
        if self._host is None:
            self._host = random.Random(self._base_seed())
        return self._host

    def _generator(self, device: torch.device) -> torch.Generator:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        gen = self._device_generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._base_seed())
            self._device_generators[device] = gen
        return gen

    def state_dict(self) -> dict:
        """The random streams' state, for checkpoint / resume."""
        return {
            "seed": self._seed,
            "host": None if self._host is None else self._host.getstate(),
            "devices": {str(d): g.get_state() for d, g in self._device_generators.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self._seed = state["seed"]
        self._host = None
        if state["host"] is not None:
            self._host = random.Random()
            self._host.setstate(state["host"])
        self._device_generators = {}
        for name, rng_state in state["devices"].items():
            gen = self._generator(torch.device(name))
            gen.set_state(rng_state)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        batch_size: int,
        device: torch.device | str,
        *,
        layers: Sequence[int] | None = None,
        token_mask: Tensor | None = None,
        grid: tuple[int, int] | None = None,
        sequence_length: int | None = None,
    ) -> MixPlan:
        """Draw one plan.

        Args:
            batch_size: B.
            device: where the batch lives; every tensor of the plan is drawn there.
            layers: candidate layers for the `hidden` site (resolved, non-negative); one is drawn.
            token_mask: `[B, T]` real-token mask (sequence sites), for the padding policy, λ correction and
                similar-length partners.
            grid: `(H, W)` of the CutMix boxes; required when CutMix is on. `(1, T)` makes boxes token spans.
            sequence_length: T; when given the plan carries per-token `weights` `[B, T]`.
        """
        cfg = self.config
        device = torch.device(device)
        if token_mask is not None and token_mask.shape[0] != batch_size:
            raise ValueError(f"token_mask has batch size {token_mask.shape[0]} but batch_size={batch_size}.")
        host = self._host_rng()
        layer = None
        if cfg.site == "hidden":
            if not layers:
                raise ValueError("site='hidden' needs at least one candidate layer.")
            layer = layers[host.randrange(len(layers))]
        identity = MixPlan.identity(batch_size, device, site=cfg.site, layer=layer, token_mask=token_mask)
        if not cfg.active or batch_size < 2:
            return identity
        if cfg.cutmix_on and grid is None:
            raise ValueError("CutMix needs the grid (H, W) its boxes are drawn on; pass grid=.")

        gen = self._generator(device)
        # Which method each unit (batch / pair / sample) uses; decided on the host in batch mode.
        both = cfg.mixup_on and cfg.cutmix_on
        if cfg.mode == "batch":
            if cfg.prob < 1.0 and host.random() >= cfg.prob:
                return identity
            only_cutmix = cfg.cutmix_on and (not both or host.random() < cfg.switch_prob)
            only_mixup = not only_cutmix
        else:
            only_cutmix = cfg.cutmix_on and not cfg.mixup_on
            only_mixup = cfg.mixup_on and not cfg.cutmix_on

        index, unit_of_sample, units = self._partners(batch_size, device, gen, token_mask)

        lam_mix = _beta(cfg.mixup_alpha, units, gen, device) if not only_cutmix else None
        lam_cut = None
        if not only_mixup and cfg.cutmix_minmax is None:
            lam_cut = _beta(cfg.cutmix_alpha, units, gen, device)
        if cfg.fold_lam:
            lam_mix = None if lam_mix is None else torch.maximum(lam_mix, 1 - lam_mix)
            lam_cut = None if lam_cut is None else torch.maximum(lam_cut, 1 - lam_cut)

        use_cut = None
        if not only_mixup and not only_cutmix:
            use_cut = torch.rand(units, device=device, generator=gen) < cfg.switch_prob
        mixed_unit = None
        if cfg.mode != "batch" and cfg.prob < 1.0:
            mixed_unit = torch.rand(units, device=device, generator=gen) < cfg.prob

        # What the pasting rows take from their partner: a box, or an FMix mask (exactly the drawn area).
        boxes = masks = None
        if not only_mixup:
            pasting = mixed_unit if use_cut is None else (use_cut if mixed_unit is None else use_cut & mixed_unit)
            if cfg.cutmix_mask == "fmix":
                # the area: drawn from cutmix_alpha, or that of a box drawn from cutmix_minmax
                drawn = (
                    lam_cut
                    if lam_cut is not None
                    else box_area_lam(self._boxes(None, units, grid, gen, device), *grid)
                )
                drawn = drawn if pasting is None else torch.where(pasting, drawn, torch.ones_like(drawn))
                masks, box_lam = fmix_masks(drawn, grid, decay_power=cfg.fmix_decay_power, generator=gen)
            else:
                boxes = self._boxes(lam_cut, units, grid, gen, device)
                if pasting is not None:
                    boxes = torch.where(pasting[:, None], boxes, torch.zeros_like(boxes))
                box_lam = box_area_lam(boxes, *grid)

        # Sampled λ per unit: the Mixup draw, or the box's draw (its area when drawn from cutmix_minmax).
        if only_mixup:
            lam = lam_mix
        else:
            cut_lam = box_lam if (lam_cut is None or cfg.correct_lam) else lam_cut
            lam_box_drawn = box_lam if lam_cut is None else lam_cut
            lam = lam_box_drawn if only_cutmix else torch.where(use_cut, lam_box_drawn, lam_mix)
            realised = cut_lam if only_cutmix else torch.where(use_cut, cut_lam, lam_mix)
        lam_target = lam if only_mixup else realised
        if mixed_unit is not None:
            one = torch.ones_like(lam)
            lam, lam_target = torch.where(mixed_unit, lam, one), torch.where(mixed_unit, lam_target, one)

        if unit_of_sample is not None:
            # Units -> samples. A trailing dummy unit (λ = 1, nothing pasted) serves samples left without a partner.
            lam = _per_sample(lam, unit_of_sample, 1.0)
            lam_target = _per_sample(lam_target, unit_of_sample, 1.0)
            if boxes is not None:
                boxes = _per_sample(boxes, unit_of_sample, 0)
            if masks is not None:
                masks = _per_sample(masks, unit_of_sample, False)
            if use_cut is not None:
                use_cut = _per_sample(use_cut, unit_of_sample, False)
        weights = None
        if sequence_length is not None:
            if grid is not None and grid != (1, sequence_length):
                raise ValueError(f"a sequence site needs grid=(1, {sequence_length}); got {grid}.")
            paste = masks if boxes is None else box_masks(boxes, 1, sequence_length)
            weights = weight_map(lam, (1, sequence_length), paste, use_cut)[:, 0, :]  # (B, T)
            takes_some = (weights < 1).any(-1)
        else:
            takes_some = lam_target < 1
        # A sample that takes nothing from its partner (λ = 1, an empty box, no partner) is its own partner, so
        # the union mask and the padding policy leave it exactly as the plain forward would.
        arange = torch.arange(batch_size, device=device)
        mixes = takes_some & (index != arange)
        index = torch.where(mixes, index, arange)
        if weights is not None:
            weights = torch.where(mixes[:, None], weights, torch.ones_like(weights))
        lam, lam_target = torch.where(mixes, lam, 1.0), torch.where(mixes, lam_target, 1.0)
        if weights is not None and token_mask is not None:
            weights = apply_pad_policy(weights, token_mask, index, cfg.pad_policy)
            if cfg.correct_lam_tokens:
                lam_target = token_share_lam(weights, token_mask, index, lam_target)
        return MixPlan(
            index=index,
            lam=lam,
            lam_target=lam_target,
            site=cfg.site,
            mixed=True,
            layer=layer,
            grid=grid,
            boxes=boxes,
            masks=masks,
            use_cutmix=use_cut,
            weights=weights,
            token_mask=token_mask,
        )

    def _partners(
        self, batch_size: int, device: torch.device, gen: torch.Generator, token_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None, int]:
        """Partner index, the unit (λ/box draw) each sample uses (None: its own), and the number of units."""
        cfg = self.config
        paired = cfg.mode == "pair" or (cfg.partner == "similar_length" and token_mask is not None)
        if cfg.partner == "similar_length" and token_mask is not None:
            lengths = token_mask.to(torch.float32).sum(-1)
            # random tie-break among equal lengths without reordering different lengths
            order = torch.argsort(lengths + 0.5 * torch.rand(batch_size, device=device, generator=gen))
        else:
            order = torch.randperm(batch_size, device=device, generator=gen)
        arange = torch.arange(batch_size, device=device)
        if paired:
            n = batch_size // 2 * 2
            first, second = order[0:n:2], order[1:n:2]
            index = arange.scatter(0, first, second).scatter(0, second, first)
        else:
            # a random cyclic derangement: every sample gets a partner other than itself
            index = torch.empty_like(order).scatter_(0, order, order.roll(-1))
        if cfg.mode == "batch":
            return index, torch.zeros(batch_size, dtype=torch.long, device=device), 1
        if cfg.mode == "pair":
            units = batch_size // 2
            pair_id = torch.arange(units, device=device)
            unit_of_sample = torch.full((batch_size,), units, dtype=torch.long, device=device)
            unit_of_sample = unit_of_sample.scatter(0, first, pair_id).scatter(0, second, pair_id)
            return index, unit_of_sample, units
        return index, None, batch_size

    def _boxes(
        self, lam: Tensor | None, units: int, grid: tuple[int, int], gen: torch.Generator, device: torch.device
    ) -> Tensor:
        """`[units, 4]` long boxes `(top, bottom, left, right)` on `grid`, clipped to it."""
        cfg = self.config
        height, width = grid

        def uniform(n: int) -> Tensor:
            return torch.rand(n, device=device, generator=gen)

        if cfg.cutmix_minmax is not None:
            lo, hi = cfg.cutmix_minmax
            cut_w = (width * (lo + (hi - lo) * uniform(units))).long()
            cut_h = torch.ones_like(cut_w) if height == 1 else (height * (lo + (hi - lo) * uniform(units))).long()
            # the box lies wholly inside: top in [0, H - h], left in [0, W - w]
            top = (uniform(units) * (height - cut_h + 1)).long()
            left = (uniform(units) * (width - cut_w + 1)).long()
            return torch.stack([top, top + cut_h, left, left + cut_w], dim=1)
        if height == 1:  # a token span: λ is a share of the length, not of an area
            cut_h = torch.ones(units, dtype=torch.long, device=device)
            cut_w = (width * (1.0 - lam)).long()
        else:
            ratio = torch.sqrt(1.0 - lam)
            cut_h, cut_w = (height * ratio).long(), (width * ratio).long()
        # centre uniform over the grid, box clipped at the border (its realised area gives λ with correct_lam)
        cy = (uniform(units) * height).long()
        cx = (uniform(units) * width).long()
        top = (cy - cut_h // 2).clamp(0, height)
        left = (cx - cut_w // 2).clamp(0, width)
        bottom = (cy - cut_h // 2 + cut_h).clamp(0, height)
        right = (cx - cut_w // 2 + cut_w).clamp(0, width)
        if height == 1:
            top, bottom = torch.zeros_like(top), torch.ones_like(bottom)
        return torch.stack([top, bottom, left, right], dim=1)


def fmix_masks(
    lam: Tensor, grid: tuple[int, int], *, decay_power: float = 3.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """FMix masks: per sample, the `round((1 - λ)·H·W)` positions of highest value in a random low-frequency image.

    The image is complex Gaussian noise whose spectrum falls as `1 / f^decay_power`, brought back to positions with
    an inverse FFT; thresholding it at a per-sample rank gives one or a few smooth blobs whose area is exactly the
    wanted share. Ranks come from a batched `argsort`, so the whole batch is one pass. On a `(1, T)` grid the blobs
    are runs of tokens.

    Args:
        lam: `[B]` weight of each sample's own content; the mask takes `1 - λ` of the positions from the partner.
        grid: `(H, W)`.
        decay_power: δ of the spectrum's decay; larger makes smoother, rounder blobs (the paper uses 3).
        generator: random stream on `lam`'s device.

    Returns:
        `masks` `[B, H, W]` bool (True: the partner's content) and the realised λ `[B]` (1 - share of True).
    """
    height, width = grid
    batch, device = lam.shape[0], lam.device
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)  # (H, W//2 + 1)
    scale = 1.0 / torch.maximum(freq, torch.full_like(freq, 1.0 / max(height, width))).pow(decay_power)
    noise = torch.randn(2, batch, *freq.shape, device=device, generator=generator)
    spectrum = torch.complex(noise[0], noise[1]) * scale
    field_ = torch.fft.irfft2(spectrum, s=(height, width)).flatten(1)  # (B, H*W)
    count = torch.round((1.0 - lam.to(torch.float32)) * (height * width)).long()  # positions from the partner
    rank = torch.argsort(torch.argsort(field_, dim=1, descending=True), dim=1)  # 0 = highest value
    masks = (rank < count[:, None]).reshape(batch, height, width)
    realised = 1.0 - count.to(torch.float32) / float(height * width)
    return masks, realised


def _per_sample(per_unit: Tensor, unit_of_sample: Tensor, fill: float | bool | int) -> Tensor:
    dummy = torch.full_like(per_unit[:1], fill)
    return torch.cat([per_unit, dummy])[unit_of_sample]
