"""Named recipes: measured settings of `MixupTrainingArguments`, one per regime where a setting was measured.

A recipe is a set of values of `MixupTrainingArguments` fields (the mixing options and the trainer's mixing options),
chosen by the recipe grids (`configs/experiments/*.yaml`, every run under `docs/experiments/`) against no mixing
with the same data, initial weights, order and seeds. Its `measured` text says what it did, with intervals.

```python
from hiddenmix import MixupTrainingArguments, get_recipe

args = MixupTrainingArguments.from_recipe("text-classifier", output_dir="out")   # the whole recipe
config = get_recipe("text-classifier").mix_config(seed=0)                        # its mixing part only
```

On the command line: `python scripts/train_text_classifier.py --recipe text-classifier`; options given after it (in a
`--config` file or on the command line) override the recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any

from .config import MIX_OPTION_NAMES, TRAINER_MIX_OPTIONS, MixConfig, check_trainer_options


@dataclass(frozen=True)
class Recipe:
    """A named, measured setting.

    Args:
        name: the recipe's name (`get_recipe(name)`).
        use: the regime it is for, in a few words.
        arguments: the `MixupTrainingArguments` values it sets: mixing options (`MixConfig` fields) and the trainer's
            mixing options (`clean_loss_weight`, `mix_off_for_last`, `mix_off_epoch`). The others keep their defaults.
        measured: what it did against no mixing, with intervals, where it was measured.
        grid: the recipe grid (`configs/experiments/*.yaml`) that measured it.
        setting: the grid's setting the recipe is; `docs/experiments/<grid>/report.md` has its numbers.
    """

    name: str
    use: str
    arguments: dict[str, Any]
    measured: str = ""
    grid: str = ""
    setting: str = ""

    def __post_init__(self) -> None:
        allowed = set(MIX_OPTION_NAMES) | set(TRAINER_MIX_OPTIONS)
        unknown = sorted(set(self.arguments) - allowed)
        if unknown:
            raise ValueError(f"Recipe {self.name!r} sets {unknown}; a recipe sets only {sorted(allowed)}.")
        self.mix_config()  # a bad mixing value names itself here
        trainer = SimpleNamespace(**{**TRAINER_MIX_OPTIONS, **self.trainer_options()})
        check_trainer_options(trainer, f"Recipe {self.name!r}")
        object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    def mix_config(self, **overrides: Any) -> MixConfig:
        """The recipe's `MixConfig`, with `overrides` (any `MixConfig` field) applied."""
        return MixConfig(**{k: v for k, v in self.arguments.items() if k in MIX_OPTION_NAMES}).replace(**overrides)

    def trainer_options(self) -> dict[str, Any]:
        """The recipe's values of the trainer's mixing options (`clean_loss_weight`, ...)."""
        return {k: v for k, v in self.arguments.items() if k in TRAINER_MIX_OPTIONS}


RECIPES: MappingProxyType[str, Recipe] = MappingProxyType(
    {
        recipe.name: recipe
        for recipe in (
            Recipe(
                name="text-classifier",
                use="fine-tuning a pretrained text encoder for sequence classification",
                arguments=dict(site="hidden", mixup_alpha=0.4, clean_loss_weight=1.0),
                grid="configs/experiments/text_grid.yaml",
                setting="hidden-regmixup",
            ),
            Recipe(
                name="vit",
                use="training or fine-tuning a ViT image classifier",
                arguments=dict(site="input", mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.5),
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
