"""hiddenmix: Mixup, CutMix and manifold mixup for Hugging Face models, through hooks.

```python
from hiddenmix import HiddenMixer, MixConfig

mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(2, 4, 6)))
```
"""

from .config import MixConfig
from .mixer import HiddenMixer, unwrap_model
from .ops import box_area_lam, box_masks, interpolate, token_share_lam, union_attention_mask
from .plan import MixPlan, PlanSampler
from .recipes import RECIPES, Recipe, get_recipe
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
from .vision import MixupCutmix, MixupCutmixCollate, fmix_masks, mix_pixels, save_mixed_grid

__version__ = "0.1.0"

# The Trainer integration imports transformers.Trainer (and through it accelerate): loaded on first use.
_LAZY = {"MixupTrainer": "trainer", "MixSchedule": "trainer", "MixScheduleCallback": "trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hiddenmix' has no attribute {name!r}")


__all__ = [
    "HiddenMixer",
    "MixSchedule",
    "MixScheduleCallback",
    "MixupCutmix",
    "MixupCutmixCollate",
    "MixupTrainer",
    "LayerStack",
    "MixConfig",
    "MixPlan",
    "PlanSampler",
    "RECIPES",
    "Recipe",
    "SiteNotFoundError",
    "SoftTargets",
    "box_area_lam",
    "box_masks",
    "find_layer_stack",
    "get_recipe",
    "interpolate",
    "fmix_masks",
    "mix_pixels",
    "mix_targets",
    "mixup_loss",
    "save_mixed_grid",
    "soft_target_bce",
    "soft_target_cross_entropy",
    "soft_target_loss",
    "soft_target_mse",
    "token_share_lam",
    "union_attention_mask",
    "unwrap_model",
]
