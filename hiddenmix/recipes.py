"""Named recipes: the mixing settings each use is recommended, chosen by measurement.

A recipe is what the recipe grids (`configs/experiments/*_grid.yaml`, results under `docs/experiments/`) found least
harmful or most helpful for one use, against no mixing with the same data, order and seeds. It holds the
`MixConfig` fields and the two trainer options a setting may need (RegMixup's clean loss, mixing off at the end).

```python
from hiddenmix import MixConfig, MixupTrainer, get_recipe

config = MixConfig.from_recipe("text-classifier")              # the mixing part only
trainer = MixupTrainer(model, args, recipe="text-classifier")   # the mixing and the trainer part
```

On the command line: `python scripts/train_text_classifier.py --recipe text-classifier` (the script's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .config import MixConfig


@dataclass(frozen=True)
class Recipe:
    """A named, measured mixing setting.

    Args:
        name: the recipe's name (`get_recipe(name)`).
        use: what it is for, in a few words.
        mix: the `MixConfig` fields it sets (the others keep their defaults).
        clean_loss_weight: RegMixup's weight of the clean forward's loss (`MixupTrainer(clean_loss_weight=...)`).
        mix_off_for_last: share of the training steps, at the end, without mixing (`MixScheduleCallback`).
        grid: the recipe grid (`configs/experiments/*.yaml`) that measured it against no mixing.
        setting: the grid's setting the recipe is; the grid's report (`docs/experiments/<grid>/report.md`) has its
            numbers.
    """

    name: str
    use: str
    mix: dict[str, Any]
    clean_loss_weight: float = 0.0
    mix_off_for_last: float = 0.0
    grid: str = ""
    setting: str = ""

    def __post_init__(self) -> None:
        MixConfig(**self.mix)  # a bad field or value names itself here
        for name in ("clean_loss_weight", "mix_off_for_last"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Recipe {self.name!r}: {name}={value!r} must be a finite number >= 0.")
        if self.mix_off_for_last > 1:
            raise ValueError(f"Recipe {self.name!r}: mix_off_for_last={self.mix_off_for_last!r} must be in [0, 1].")
        object.__setattr__(self, "mix", MappingProxyType(dict(self.mix)))

    def mix_config(self, **overrides: Any) -> MixConfig:
        """The recipe's `MixConfig`, with `overrides` (any `MixConfig` field) applied."""
        return MixConfig(**self.mix).replace(**overrides)

    def trainer_kwargs(self) -> dict[str, float]:
        """The `MixupTrainer` keyword arguments of the recipe's trainer part."""
        return {"clean_loss_weight": float(self.clean_loss_weight)}

    def options(self) -> dict[str, Any]:
        """The recipe as the training scripts' options: `method` (the site), the mixing fields, the trainer part."""
        options = {"method": self.mix.get("site", MixConfig.site)}
        options.update((k, list(v) if isinstance(v, tuple) else v) for k, v in self.mix.items() if k != "site")
        options.update(clean_loss_weight=self.clean_loss_weight, mix_off_for_last=self.mix_off_for_last)
        return options


RECIPES: MappingProxyType[str, Recipe] = MappingProxyType(
    {
        recipe.name: recipe
        for recipe in (
            Recipe(
                name="text-classifier",
                use="fine-tuning a pretrained text encoder for sequence classification",
                mix=dict(site="hidden", mixup_alpha=0.4),
                clean_loss_weight=1.0,
                grid="configs/experiments/text_grid.yaml",
                setting="hidden-regmixup",
            ),
            Recipe(
                name="vit",
                use="training or fine-tuning a ViT image classifier",
                mix=dict(site="input", mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.5),
                grid="configs/experiments/vit_grid.yaml",
                setting="pixel-mixup-cutmix-p0.5",
            ),
        )
    }
)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name` (one of `RECIPES`)."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"recipe={name!r} is not a hiddenmix recipe; choose one of {sorted(RECIPES)}.")
    return RECIPES[name]


__all__ = ["RECIPES", "Recipe", "get_recipe"]
