"""Images: pixel Mixup / CutMix / FMix as a batch transform or a `collate_fn`, patch-token CutMix for ViTs, and a
look at a mixed batch.

Every random number comes from the same `PlanSampler` as the text path (one `MixPlan` per batch, drawn on the
batch's device), every mix is a pure function of the plan, and the soft targets come from that plan with the λ
actually realised. λ, boxes and masks are per sample (`mode="elem"`) and fully vectorised: no loop over samples,
no host-device synchronisation.

```python
from hiddenmix import MixConfig
from hiddenmix.vision import MixupCutmix

mix = MixupCutmix(MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=10))
pixel_values, targets = mix(pixel_values, labels)  # targets: [B, 10] soft rows
loss = soft_target_cross_entropy(model(pixel_values=pixel_values).logits, targets)
```

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers", ICCV 2019.
    Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv:2002.12047, 2020.
    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021 (the patch grid patch-token CutMix works on).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import MixConfig
from .ops import box_masks, weight_map
from .plan import MixPlan, PlanSampler
from .targets import SoftTargets, _check_on_device, mix_targets

MASKS = ("box", "fmix")
# embedding_bag fuses "gather the partner row, weight both rows, add" into one pass; kernels exist for these dtypes
_FUSED_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------- checks and grids
def check_pixel_values(pixel_values: Any, *, num_channels: int | None = None, name: str = "pixel_values") -> None:
    """Raise a `ValueError` / `TypeError` naming the problem unless `pixel_values` is a `[B, C, H, W]` tensor.

    Args:
        pixel_values: the batch of images.
        num_channels: C the model takes (`config.num_channels`); None skips that check.
        name: the argument's name, for the message.
    """
    if not torch.is_tensor(pixel_values):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W]; got {type(pixel_values).__name__}.")
    if pixel_values.dim() != 4:
        raise ValueError(
            f"{name} must have rank 4 [B, C, H, W]; got rank {pixel_values.dim()} with shape "
            f"{tuple(pixel_values.shape)}. A single image [C, H, W] needs a batch dimension (x[None])."
        )
    if pixel_values.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(pixel_values.shape)}); B must be >= 1.")
    if num_channels is not None and pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"{name} has {pixel_values.shape[1]} channels (shape {tuple(pixel_values.shape)}) but the model takes "
            f"num_channels={num_channels}; allowed: [B, {num_channels}, H, W]."
        )


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what}={value!r} must be an integer or a pair of integers.")


def patch_grid(model_config: Any, image_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """`(H // patch, W // patch)`: the patch grid a ViT-family model cuts an image of `image_shape` into.

    Args:
        model_config: the model's config; must have `patch_size` (ViT, DeiT, BEiT, Swin, ...).
        image_shape: `(H, W)` of the pixel values; default `config.image_size`.
    """
    patch = getattr(model_config, "patch_size", None)
    if patch is None:
        raise ValueError(
            f"{type(model_config).__name__} has no patch_size, so patch-token CutMix has no patch grid to draw "
            "boxes on; use CutMix at site='input' (pixels) or Mixup (cutmix_alpha=0) at this site."
        )
    ph, pw = _pair(patch, "config.patch_size")
    if image_shape is None:
        image_shape = _pair(getattr(model_config, "image_size", None), "config.image_size")
    height, width = image_shape
    if height < ph or width < pw:
        raise ValueError(f"images of size {(height, width)} are smaller than one patch {(ph, pw)}.")
    return height // ph, width // pw


def check_patch_cutmix(model_config: Any, site: str) -> None:
    """Raise before the model is touched when patch-token CutMix cannot work at `site` on this model.

    A box on the patch grid needs the mixed sequence to be that grid: true entering the first layer of every
    ViT-family model, and after every layer of a plain ViT / DeiT / BEiT, but not after a stage of a hierarchical
    model (Swin merges 2x2 patches between stages).
    """
    patch_grid(model_config)
    if site == "hidden" and getattr(model_config, "depths", None) is not None:
        raise ValueError(
            f"CutMix at site='hidden' on {type(model_config).__name__} (a hierarchical model with depths="
            f"{list(model_config.depths)}): its stages merge patches, so a box on the patch grid does not map to "
            "their output. Use Mixup (cutmix_alpha=0, cutmix_minmax=None) at site='hidden', or CutMix at "
            "site='embeddings' or site='input'."
        )


def patch_token_weights(plan: MixPlan, num_tokens: int) -> Tensor:
    """`[B, T]` weight of each sample's own token for patch-token CutMix / Mixup on a ViT sequence.

    The sequence is `P` prefix tokens (class, distillation) followed by the `gh·gw` patch tokens in row-major
    order (ViT, DeiT, BEiT; Swin has no prefix). Patch tokens inside a sample's box come from its partner (weight
    0), the others stay (weight 1); Mixup rows weigh every token by λ. Prefix tokens are mixed with the realised
    λ (`plan.lam_target`), so everything a prefix token stands for is weighted like the soft target. Entering the
    first layer the prefix tokens are the same learned vectors for every sample, so there this is exact identity.

    Args:
        plan: a plan whose `grid` is the patch grid `(gh, gw)`.
        num_tokens: T, the length of the sequence being mixed.
    """
    gh, gw = plan.grid
    prefix = num_tokens - gh * gw
    if prefix < 0:
        raise ValueError(
            f"patch-token CutMix drew boxes on a {gh}x{gw} patch grid ({gh * gw} tokens) but the sequence being "
            f"mixed has {num_tokens} tokens: this layer merges patches (e.g. Swin between stages). Use Mixup "
            "(cutmix_alpha=0) at site='hidden' for such models, or CutMix at site='embeddings' / 'input'."
        )
    patches = weight_map(plan.lam, (gh, gw), plan.boxes, plan.use_cutmix).flatten(1)  # (B, gh*gw)
    head = plan.lam_target.to(patches.dtype)[:, None].expand(-1, prefix)  # (B, P)
    return torch.cat([head, patches], dim=1)


# ---------------------------------------------------------------------------------------------- pure mixing ops
def mix_pixels(pixel_values: Tensor, plan: MixPlan, *, masks: Tensor | None = None) -> Tensor:
    """Apply `plan` to `[B, C, H, W]` images; returns `pixel_values` itself when the plan mixes nothing.

    One pass, chosen by what the plan holds (all decided on the host from the plan's structure, never its values):
    pure Mixup is a single fused gather-and-weigh (`embedding_bag`: reads both rows once, writes once, as cheap as
    a `lerp` of two given tensors); pure CutMix is one gather of the partners and a `where` with a broadcast bool
    mask written into that gathered buffer; a Mixup/CutMix switch per sample is one `lerp` with a `[B, 1, H, W]`
    weight map.

    Args:
        pixel_values: `[B, C, H, W]` (any leading layout `[B, ..., H, W]` works).
        plan: the plan; its `boxes` are on the pixel grid `(H, W)`.
        masks: `[B, H, W]` bool, True where the partner's pixel is taken (e.g. FMix); replaces the plan's boxes.
    """
    if not plan.mixed:
        return pixel_values
    x = pixel_values
    batch = x.shape[0]
    height, width = x.shape[-2:]
    lead = x.dim() - 3
    if plan.boxes is None and masks is None:  # pure Mixup
        if not x.is_floating_point():
            raise TypeError(f"Mixup needs floating-point pixel_values; got dtype {x.dtype}. Convert with x.float().")
        if x.dtype in _FUSED_DTYPES and not x.requires_grad:
            bags = torch.stack([torch.arange(batch, device=x.device), plan.index], dim=1)  # (B, 2)
            lam = plan.lam.to(x.dtype)
            weights = torch.stack([lam, 1.0 - lam], dim=1)  # (B, 2)
            flat = x.reshape(batch, -1)  # a view for contiguous batches
            return F.embedding_bag(bags, flat, per_sample_weights=weights, mode="sum").view(x.shape)
        return torch.lerp(x[plan.index], x, plan.lam.to(x.dtype).reshape(batch, *([1] * (x.dim() - 1))))

    if masks is None:
        masks = box_masks(plan.boxes, height, width)  # (B, H, W)
    elif tuple(masks.shape) != (batch, height, width):
        raise ValueError(f"masks must have shape {(batch, height, width)}; got {tuple(masks.shape)}.")
    # (B, C, H, W): the one copy; the result is written into it. Advanced indexing, not index_select: on CPU
    # index_select opens one parallel region per row of a large batch, each a thread wake-up on a busy machine.
    partner = x[plan.index]
    if plan.use_cutmix is None:  # pure CutMix: exact pastes, any dtype
        inside = masks.reshape(batch, *([1] * lead), height, width)
        if x.requires_grad:
            return torch.where(inside, partner, x)
        return torch.where(inside, partner, x, out=partner)
    if not x.is_floating_point():
        raise TypeError(f"Mixup needs floating-point pixel_values; got dtype {x.dtype}. Convert with x.float().")
    # weight of the sample's own pixel: 0 / 1 on CutMix rows (lerp is exact at both ends), λ on Mixup rows
    weight = torch.where(plan.use_cutmix[:, None, None], (~masks).to(x.dtype), plan.lam.to(x.dtype)[:, None, None])
    weight = weight.reshape(batch, *([1] * lead), height, width)
    if x.requires_grad:
        return torch.lerp(partner, x, weight)
    return torch.lerp(partner, x, weight, out=partner)


def fmix_masks(
    lam: Tensor, grid: tuple[int, int], *, decay_power: float = 3.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """FMix masks: per sample, the `round((1 - λ)·H·W)` pixels of highest value in a random low-frequency image.

    The image is complex Gaussian noise whose spectrum falls as `1 / f^decay_power`, brought back to pixels with an
    inverse FFT; thresholding it at a per-sample rank gives one or a few smooth blobs whose area is exactly the
    wanted share. Ranks come from a batched `argsort`, so the whole batch is one pass.

    Args:
        lam: `[B]` weight of each sample's own content; the mask takes `1 - λ` of the pixels from the partner.
        grid: `(H, W)`.
        decay_power: δ of the spectrum's decay; larger makes smoother, rounder blobs (the paper uses 3).
        generator: random stream on `lam`'s device.

    Returns:
        `masks` `[B, H, W]` bool (True: the partner's pixel) and the realised λ `[B]` (1 - share of True).
    """
    height, width = grid
    batch, device = lam.shape[0], lam.device
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)  # (H, W//2 + 1)
    scale = 1.0 / torch.maximum(freq, torch.full_like(freq, 1.0 / max(height, width))).pow(decay_power)
    noise = torch.randn(2, batch, *freq.shape, device=device, generator=generator)
    spectrum = torch.complex(noise[0], noise[1]) * scale
    field = torch.fft.irfft2(spectrum, s=(height, width)).flatten(1)  # (B, H*W)
    count = torch.round((1.0 - lam.to(torch.float32)) * (height * width)).long()  # pixels from the partner
    rank = torch.argsort(torch.argsort(field, dim=1, descending=True), dim=1)  # 0 = highest value
    masks = (rank < count[:, None]).reshape(batch, height, width)
    realised = 1.0 - count.to(torch.float32) / float(height * width)
    return masks, realised


# ---------------------------------------------------------------------------------------------- batch transform
@dataclass(frozen=True)
class MixedImages:
    """A mixed batch.

    Attributes:
        pixel_values: `[B, C, H, W]` mixed images (the input tensor itself when nothing was mixed).
        targets: soft targets from the same plan (`targets.target`, `targets.valid`).
        plan: the plan (partners, λ, boxes); `plan.lam_target` is the realised λ.
        masks: `[B, H, W]` bool FMix masks (True: partner's pixel), or None for boxes.
    """

    pixel_values: Tensor
    targets: SoftTargets
    plan: MixPlan
    masks: Tensor | None = None


class MixupCutmix:
    """Mixup / CutMix / FMix of a batch of images and its labels, after the `DataLoader`.

    ```python
    mix = MixupCutmix(MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10))
    for pixel_values, labels in loader:
        pixel_values, targets = mix(pixel_values.cuda(), labels.cuda())  # drawn and mixed on the GPU
        loss = soft_target_cross_entropy(model(pixel_values=pixel_values).logits, targets)
    ```

    Every timm `Mixup` knob is a `MixConfig` field of the same name (`mixup_alpha`, `cutmix_alpha`,
    `cutmix_minmax`, `prob`, `switch_prob`, `mode`, `correct_lam`, `label_smoothing`, `num_classes`); unlike timm,
    odd and size-1 batches work (a sample without a partner keeps λ = 1), labels may be class ids, one-hot /
    probability rows, multi-label rows or regression values, and `ignore_index` rows are reported in `valid`.
    The caller's tensors are never written to; when nothing is mixed (`prob=0`, a size-1 batch, a `batch`-mode
    draw that says no) the returned pixels are the input tensor itself.

    Args:
        config: the `MixConfig`; keyword `overrides` replace its fields. Its `site` is set to `input`.
        mask: `box` (CutMix rectangles) or `fmix` (FMix Fourier-threshold masks) for the rows that paste.
        fmix_decay_power: δ of FMix's spectrum decay.
        num_channels: if given, pixel batches with another channel count are refused.
    """

    def __init__(
        self,
        config: MixConfig | None = None,
        *,
        mask: str = "box",
        fmix_decay_power: float = 3.0,
        num_channels: int | None = None,
        **overrides: Any,
    ) -> None:
        config = config if config is not None else MixConfig()
        if not isinstance(config, MixConfig):
            raise TypeError(f"config must be a MixConfig; got {type(config).__name__}.")
        config = config.replace(**overrides) if overrides else config
        if config.site != "input":  # a batch transform mixes pixels whatever site the config was written for
            config = config.replace(site="input")
        if mask not in MASKS:
            raise ValueError(f"mask={mask!r} is not allowed; choose one of {list(MASKS)}.")
        if not (
            isinstance(fmix_decay_power, (int, float)) and math.isfinite(fmix_decay_power) and fmix_decay_power > 0
        ):
            raise ValueError(f"fmix_decay_power={fmix_decay_power!r} must be a finite number > 0.")
        if num_channels is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"num_channels={num_channels!r} must be None or an integer >= 1.")
        self.config = config
        self.mask = mask
        self.fmix_decay_power = float(fmix_decay_power)
        self.num_channels = num_channels
        self.sampler = PlanSampler(config)

    def sample(self, pixel_values: Tensor) -> MixPlan:
        """Check the batch and draw its plan on its device (boxes on the pixel grid)."""
        check_pixel_values(pixel_values, num_channels=self.num_channels)
        if self.config.mixup_on and not pixel_values.is_floating_point():
            raise TypeError(
                f"pixel_values has dtype {pixel_values.dtype}; Mixup (mixup_alpha={self.config.mixup_alpha}) "
                "interpolates pixels and needs a floating dtype. Convert with x.float() or use CutMix only."
            )
        grid = tuple(pixel_values.shape[-2:])
        return self.sampler.sample(pixel_values.shape[0], pixel_values.device, grid=grid)

    def mix(self, pixel_values: Tensor, labels: Tensor, *, plan: MixPlan | None = None) -> MixedImages:
        """Mix a batch and its labels.

        Args:
            pixel_values: `[B, C, H, W]`.
            labels: `[B]` class ids, `[B, C]` rows, or regression values (see `mix_targets`).
            plan: use this plan instead of drawing one (its boxes must be on the pixel grid).
        """
        if plan is None:
            plan = self.sample(pixel_values)
        else:
            check_pixel_values(pixel_values, num_channels=self.num_channels)
            if plan.batch_size != pixel_values.shape[0]:
                raise ValueError(
                    f"plan mixes a batch of {plan.batch_size} but pixel_values has shape {tuple(pixel_values.shape)}."
                )
        masks = None
        if plan.mixed and self.mask == "fmix" and plan.boxes is not None:
            plan, masks = self._fmix(plan, tuple(pixel_values.shape[-2:]))
        mixed = mix_pixels(pixel_values, plan, masks=masks)
        cfg = self.config
        targets = mix_targets(
            labels,
            plan,
            num_classes=cfg.num_classes,
            problem_type=cfg.problem_type,
            label_smoothing=cfg.label_smoothing,
            ignore_index=cfg.ignore_index,
        )
        return MixedImages(mixed, targets, plan, masks)

    def __call__(self, pixel_values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """`(mixed pixel_values, soft targets)`; the targets are `[B, C]` rows (regression: mixed values).

        Only the targets come back, so labels may not hold `ignore_index` rows here (they have no target to give):
        use `mix(...)`, whose `targets.valid` says which rows to leave out of the loss.
        """
        out = self.mix(pixel_values, labels)
        _check_on_device(
            out.targets.valid,
            f"labels hold ignore_index={self.config.ignore_index} rows, which have no soft target; call "
            "MixupCutmix.mix(...) and leave the rows where targets.valid is False out of the loss.",
        )
        return out.pixel_values, out.targets.target

    def _fmix(self, plan: MixPlan, grid: tuple[int, int]) -> tuple[MixPlan, Tensor]:
        # Rows that paste take an FMix mask of the λ their box was drawn from; Mixup rows and unmixed rows
        # (λ = 1 -> an empty mask) are untouched. The realised λ is exact: the mask holds round((1-λ)·H·W) pixels.
        pasting = plan.use_cutmix if plan.use_cutmix is not None else torch.ones_like(plan.lam, dtype=torch.bool)
        lam = torch.where(pasting, plan.lam, torch.ones_like(plan.lam))
        gen = self.sampler._generator(plan.device)
        masks, realised = fmix_masks(lam, grid, decay_power=self.fmix_decay_power, generator=gen)
        lam_target = torch.where(pasting, realised, plan.lam_target)
        return dataclasses.replace(plan, lam_target=lam_target), masks

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"MixupCutmix(mixup_alpha={cfg.mixup_alpha}, cutmix_alpha={cfg.cutmix_alpha}, "
            f"cutmix_minmax={cfg.cutmix_minmax}, prob={cfg.prob}, switch_prob={cfg.switch_prob}, mode={cfg.mode!r}, "
            f"mask={self.mask!r})"
        )


class MixupCutmixCollate:
    """A `collate_fn` that collates, then mixes the batch (timm's collate-time mixing, on the CPU workers).

    ```python
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4,
                        collate_fn=MixupCutmixCollate(MixupCutmix(config)))
    ```

    The collated batch may be a mapping (`{"pixel_values": ..., "labels": ...}`, as `transformers` datasets give)
    or a sequence `(pixel_values, labels, ...)`; the same structure comes back with mixed pixels and soft targets.
    Each `DataLoader` worker reseeds its sampler from the worker's seed (combined with `config.seed` when that is
    set), so workers never draw the same mixes. Mixing on the GPU after the loader (`MixupCutmix`) is faster.

    Args:
        transform: the `MixupCutmix` (or a `MixConfig` to build one).
        collate_fn: the collate function to wrap; default `torch.utils.data.default_collate`.
        pixel_key: key of the images in a mapping batch.
        label_key: key of the labels in a mapping batch.
    """

    def __init__(
        self,
        transform: MixupCutmix | MixConfig,
        *,
        collate_fn: Callable[[list], Any] | None = None,
        pixel_key: str = "pixel_values",
        label_key: str = "labels",
    ) -> None:
        if isinstance(transform, MixConfig):
            transform = MixupCutmix(transform)
        if not isinstance(transform, MixupCutmix):
            raise TypeError(f"transform must be a MixupCutmix or a MixConfig; got {type(transform).__name__}.")
        self.transform = transform
        self.collate_fn = collate_fn if collate_fn is not None else torch.utils.data.default_collate
        self.pixel_key = pixel_key
        self.label_key = label_key
        self._worker: int | None = None

    def _reseed_for_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is None or self._worker == info.id:
            return
        cfg = self.transform.config
        # info.seed differs per worker and per epoch (and follows torch's global seed in the main process)
        seed = info.seed if cfg.seed is None else (cfg.seed * 1_000_003 + info.seed)
        self.transform.sampler = PlanSampler(cfg.replace(seed=seed % 2**63), rank=self.transform.sampler.rank)
        self._worker = info.id

    def __call__(self, samples: list) -> Any:
        self._reseed_for_worker()
        batch = self.collate_fn(samples)
        if isinstance(batch, Mapping):
            missing = [k for k in (self.pixel_key, self.label_key) if k not in batch]
            if missing:
                raise KeyError(f"the collated batch has no {missing}; its keys are {list(batch)}.")
            pixels, labels = self.transform(batch[self.pixel_key], batch[self.label_key])
            return type(batch)({**batch, self.pixel_key: pixels, self.label_key: labels})
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            pixels, labels = self.transform(batch[0], batch[1])
            return type(batch)([pixels, labels, *batch[2:]])
        raise TypeError(
            f"the collated batch is a {type(batch).__name__}; MixupCutmixCollate needs a mapping with "
            f"{self.pixel_key!r} and {self.label_key!r} or a sequence (pixel_values, labels, ...)."
        )


# ---------------------------------------------------------------------------------------------- inspection
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = pixel_values.detach().to("cpu", torch.float32)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).reshape(shape) + torch.tensor(mean).reshape(shape)
    batch = images.shape[0]
    lo = images.flatten(1).amin(1).reshape(-1, 1, 1, 1)
    hi = images.flatten(1).amax(1).reshape(-1, 1, 1, 1)
    images = ((images - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)  # each tile to [0, 1] for display
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
        tile = images[k].permute(1, 2, 0).numpy()
        ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", interpolation="nearest")
        if lam[k] >= 1.0:
            caption = f"{name(ids[k])} 1.00"
        else:
            caption = f"{name(ids[k])} {lam[k]:.2f}\n{name(ids[partner[k]])} {1 - lam[k]:.2f}"
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "MASKS",
    "MixedImages",
    "MixupCutmix",
    "MixupCutmixCollate",
    "check_patch_cutmix",
    "check_pixel_values",
    "fmix_masks",
    "mix_pixels",
    "patch_grid",
    "patch_token_weights",
    "save_mixed_grid",
]
