"""hiddenmix: Mixup, CutMix and manifold mixup for Hugging Face models, through hooks.

```python
from hiddenmix import HiddenMixer, MixConfig

mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(1, 3, 5)))   # layers of a 6-layer model
```

`import hiddenmix` loads torch and nothing heavier: the `transformers.Trainer` integration (`MixupTrainer`,
`MixupTrainingArguments`, schedules) loads on first use, and the plots import matplotlib only when drawn.
"""

from importlib import metadata as _metadata

from .calls import unwrap_model
from .config import MixConfig, MixOptions
from .dense import DenseTargets, dense_soft_target_loss, mix_dense_targets, soft_map_cross_entropy
from .guard import MixingNotAppliedError
from .images import MixedImages, MixupCutmix, MixupCutmixCollate
from .mixer import HiddenMixer
from .ops import box_area_lam, box_masks, interpolate, mix_pixels, token_share_lam, union_attention_mask
from .plan import MixPlan
from .recipes import RECIPES, Recipe, get_recipe
from .sampler import PlanSampler, fmix_masks
from .sites import LayerStack, SiteNotFoundError, find_layer_stack
from .targets import (
    SoftTargets,
    mix_targets,
    mixup_loss,
    soft_target_bce,
    soft_target_cross_entropy,
    soft_target_loss,
    soft_target_mse,
)

try:
    __version__ = _metadata.version("hiddenmix")  # one version number: the package's metadata (pyproject.toml)
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# These import transformers.Trainer / TrainingArguments (and through them accelerate and yaml): loaded on first use.
_LAZY = {
    "MixupTrainer": "trainer",
    "MixupTrainingArguments": "training_args",
    "MixSchedule": "schedule",
    "MixScheduleCallback": "schedule",
    # matplotlib is imported when a figure is drawn
    "reliability_diagram": "plots",
    "save_mixed_grid": "plots",
    "save_mixed_segmentation": "plots",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hiddenmix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DenseTargets",
    "HiddenMixer",
    "LayerStack",
    "MixConfig",
    "MixOptions",
    "MixPlan",
    "MixSchedule",
    "MixScheduleCallback",
    "MixedImages",
    "MixingNotAppliedError",
    "MixupCutmix",
    "MixupCutmixCollate",
    "MixupTrainer",
    "MixupTrainingArguments",
    "PlanSampler",
    "RECIPES",
    "Recipe",
    "SiteNotFoundError",
    "SoftTargets",
    "box_area_lam",
    "box_masks",
    "dense_soft_target_loss",
    "find_layer_stack",
    "fmix_masks",
    "get_recipe",
    "interpolate",
    "mix_dense_targets",
    "mix_pixels",
    "mix_targets",
    "mixup_loss",
    "reliability_diagram",
    "save_mixed_grid",
    "save_mixed_segmentation",
    "soft_map_cross_entropy",
    "soft_target_bce",
    "soft_target_cross_entropy",
    "soft_target_loss",
    "soft_target_mse",
    "token_share_lam",
    "union_attention_mask",
    "unwrap_model",
]
