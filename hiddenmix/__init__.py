"""hiddenmix: Mixup, CutMix and manifold mixup for Hugging Face models, through hooks.

```python
from hiddenmix import HiddenMixer, MixConfig

mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(2, 4, 6)))
```
"""

from .config import MixConfig
from .mixer import HiddenMixer, unwrap_model
from .ops import box_area_lam, box_masks, interpolate, mix_images, token_share_lam, union_attention_mask
from .plan import MixPlan, PlanSampler
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

__version__ = "0.1.0"

__all__ = [
    "HiddenMixer",
    "LayerStack",
    "MixConfig",
    "MixPlan",
    "PlanSampler",
    "SiteNotFoundError",
    "SoftTargets",
    "box_area_lam",
    "box_masks",
    "find_layer_stack",
    "interpolate",
    "mix_images",
    "mix_targets",
    "mixup_loss",
    "soft_target_bce",
    "soft_target_cross_entropy",
    "soft_target_loss",
    "soft_target_mse",
    "token_share_lam",
    "union_attention_mask",
    "unwrap_model",
]
