"""Images: pixel Mixup / CutMix / FMix as a batch transform or a `collate_fn`.

Every random number comes from the same `PlanSampler` as the in-model path (one `MixPlan` per batch, drawn on the
batch's device), every mix is a pure function of the plan (`ops.mix_pixels`), and the soft targets come from that
plan with the λ actually realised. λ, boxes and FMix masks are per sample (`mode="elem"`) and fully vectorised: no
loop over samples, no host-device synchronisation. The same mixing inside a model's forward (`site="input"`) and on a
ViT's patch tokens is `HiddenMixer`'s.

```python
from hiddenmix import MixConfig, MixupCutmix, soft_target_cross_entropy

mix = MixupCutmix(MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=10))
pixel_values, targets = mix(pixel_values, labels)  # targets: [B, 10] soft rows
loss = soft_target_cross_entropy(model(pixel_values=pixel_values).logits, targets)
```

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers", ICCV 2019.
    Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv:2002.12047, 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._compat import check_on_device
from .config import MixConfig
from .dense import DenseTargets
from .ops import mix_pixels
from .plan import MixPlan
from .sampler import PlanSampler
from .targets import SoftTargets, mix_targets


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


@dataclass(frozen=True)
class MixedImages:
    """A mixed batch.

    Attributes:
        pixel_values: `[B, C, H, W]` mixed images (the input tensor itself when nothing was mixed).
        targets: soft targets from the same plan (`targets.target`, `targets.valid`), or per-pixel `DenseTargets`
            for label maps (`targets.hard()` is the mixed label map under CutMix / FMix).
        plan: the plan (partners, λ, boxes or FMix masks); `plan.lam_target` is the realised λ and
            `plan.paste_mask()` says, per pixel, where each image took its partner's content.
    """

    pixel_values: Tensor
    targets: SoftTargets | DenseTargets
    plan: MixPlan


class MixupCutmix:
    """Mixup / CutMix / FMix of a batch of images and its labels, after the `DataLoader`.

    ```python
    mix = MixupCutmix(MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10))
    for pixel_values, labels in loader:
        pixel_values, targets = mix(pixel_values.cuda(), labels.cuda())  # drawn and mixed on the GPU
        loss = soft_target_cross_entropy(model(pixel_values=pixel_values).logits, targets)
    ```

    Every timm `Mixup` knob is a `MixConfig` field of the same name (`mixup_alpha`, `cutmix_alpha`,
    `cutmix_minmax`, `prob`, `switch_prob`, `mode`, `correct_lam`, `label_smoothing`, `num_classes`), and
    `cutmix_mask="fmix"` pastes FMix masks instead of boxes; unlike timm,
    odd and size-1 batches work (a sample without a partner keeps λ = 1), labels may be class ids, one-hot /
    probability rows, multi-label rows or regression values, and `ignore_index` rows are reported in `valid`.
    The caller's tensors are never written to; when nothing is mixed (`prob=0`, a size-1 batch, a `batch`-mode
    draw that says no) the returned pixels are the input tensor itself.

    Args:
        config: the `MixConfig`; keyword `overrides` replace its fields. Its `site` is set to `input`.
        num_channels: if given, pixel batches with another channel count are refused.
    """

    def __init__(
        self,
        config: MixConfig | None = None,
        *,
        num_channels: int | None = None,
        **overrides: Any,
    ) -> None:
        config = config if config is not None else MixConfig()
        if not isinstance(config, MixConfig):
            raise TypeError(f"config must be a MixConfig; got {type(config).__name__}.")
        config = config.replace(**overrides) if overrides else config
        if config.site != "input":  # a batch transform mixes pixels whatever site the config was written for
            config = config.replace(site="input")
        if num_channels is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"num_channels={num_channels!r} must be None or an integer >= 1.")
        self.config = config
        self.num_channels = num_channels
        self.sampler = PlanSampler(config)

    def sample(self, pixel_values: Tensor) -> MixPlan:
        """Check the batch and draw its plan on its device (boxes / FMix masks on the pixel grid)."""
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
            labels: `[B]` class ids, `[B, C]` rows, regression values (see `mix_targets`), or `[B, H, W]` label
                maps (semantic segmentation: CutMix / FMix paste the map with the pixels, Mixup gives per-pixel
                soft targets; `config.num_classes` is needed).
            plan: use this plan instead of drawing one (its boxes / masks must be on the pixel grid).
        """
        if plan is None:
            plan = self.sample(pixel_values)
        else:
            check_pixel_values(pixel_values, num_channels=self.num_channels)
            if plan.batch_size != pixel_values.shape[0]:
                raise ValueError(
                    f"plan mixes a batch of {plan.batch_size} but pixel_values has shape {tuple(pixel_values.shape)}."
                )
        mixed = mix_pixels(pixel_values, plan)
        cfg = self.config
        targets = mix_targets(
            labels,
            plan,
            num_classes=cfg.num_classes,
            problem_type=cfg.problem_type,
            label_smoothing=cfg.label_smoothing,
            ignore_index=cfg.ignore_index,
        )
        return MixedImages(mixed, targets, plan)

    def __call__(self, pixel_values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """`(mixed pixel_values, soft targets)`; the targets are `[B, C]` rows (regression: mixed values), or for
        `[B, H, W]` label maps `[B, C, H, W]` soft maps (`soft_map_cross_entropy` takes them) in which ignored pixels
        are all-zero rows.

        Only the targets come back, so class-id labels may not hold `ignore_index` rows here (they have no target
        to give): use `mix(...)`, whose `targets.valid` says which rows to leave out of the loss.
        """
        out = self.mix(pixel_values, labels)
        if isinstance(out.targets, DenseTargets):
            return out.pixel_values, out.targets.soft(class_dim=1)
        check_on_device(
            out.targets.valid,
            f"labels hold ignore_index={self.config.ignore_index} rows, which have no soft target; call "
            "MixupCutmix.mix(...) and leave the rows where targets.valid is False out of the loss.",
        )
        return out.pixel_values, out.targets.target

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"MixupCutmix(mixup_alpha={cfg.mixup_alpha}, cutmix_alpha={cfg.cutmix_alpha}, "
            f"cutmix_minmax={cfg.cutmix_minmax}, prob={cfg.prob}, switch_prob={cfg.switch_prob}, mode={cfg.mode!r}, "
            f"cutmix_mask={cfg.cutmix_mask!r})"
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


__all__ = ["MixedImages", "MixupCutmix", "MixupCutmixCollate", "check_pixel_values"]
