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

from torch import nn

from .calls import unwrap_model
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


# What each recipe did against no mixing: paired differences, mean [95 % t-interval] over seeds (accuracy and ECE in
# points); the reports are docs/experiments/<grid>/report.md.
FEW_LABELS = (
    "Twitter sentiment, 16 labelled tweets per class, 300 steps, 5 seeds: accuracy +2.78 [+1.80, +3.76], "
    "NLL -0.645 [-0.741, -0.549], ECE -13.80 [-14.92, -12.68]; at 150 steps (the demo): accuracy +1.96 "
    "[+0.42, +3.50], NLL -0.228 [-0.255, -0.200]. BBC News, 16 articles per class (an easy task: the no-mix model "
    "is under-confident), 5 seeds: accuracy +0.49 [-0.88, +1.87], NLL +0.037 [+0.020, +0.054] and ECE +4.40 "
    "[+2.30, +6.49] (worse); after temperature scaling NLL -0.016 [-0.033, +0.002]. With more labels (3 seeds "
    "each) the accuracy gain is gone: Twitter, 64 per class -0.27 [-1.76, +1.23] (NLL -0.515 [-0.622, -0.407], "
    "ECE -9.22 [-12.85, -5.60]), 256 per class -0.50 [-2.74, +1.74] (ECE -9.93 [-12.21, -7.65]), 2,000 tweets "
    "-0.77 [-2.02, +0.48] (ECE the same), every tweet (a fifth of one pass) -1.37 [-3.23, +0.50] (NLL +0.039 "
    "[+0.015, +0.062], worse); BBC News, 64 per class -0.15 [-1.00, +0.70] (ECE +4.71 [+2.19, +7.23], "
    "worse), every article -0.15 [-2.11, +1.81] (ECE +4.75 [+3.93, +5.57], worse)."
)
TEXT_CLASSIFIER = (
    "Twitter sentiment, 16 labelled tweets per class, 300 steps, 5 seeds: accuracy +1.88 [+0.80, +2.96], "
    "NLL -0.533 [-0.582, -0.484]; 2,000 tweets, 2 epochs, 3 seeds: accuracy -0.13 [-1.47, +1.21], NLL +0.005 "
    "[-0.003, +0.013]; BBC News, 1,602 articles, 2 epochs, 3 seeds: accuracy +0.22 [-0.33, +0.78], NLL +0.015 "
    "[+0.003, +0.027]. Two forwards per step (the clean loss)."
)
VIT = (
    "A small ViT from random weights on sklearn's digits, 400 steps, paired over seeds: with 16 labelled images per "
    "class (5 seeds) accuracy +6.50 [+2.88, +10.12], NLL -0.487 [-0.650, -0.323], ECE -4.06 [-7.21, -0.90], and on "
    "images with Gaussian noise (std 0.3) +13.61 [+9.37, +17.85]; with 64 per class (3 seeds) accuracy +1.39 "
    "[+0.70, +2.08], NLL +0.013 [-0.058, +0.084], ECE +7.90 [+6.68, +9.13] (worse); with every training image "
    "(129 per class) accuracy -0.28 [-4.80, +4.25], ECE +9.89 [+7.31, +12.47] (worse). With 64 per class and "
    "flipped labels, 1,200 steps (the no-mix model memorises them): 20 % flipped, accuracy +8.06 [+2.58, +13.53] "
    "(3 seeds); 40 % flipped, accuracy +9.17 [+4.65, +13.68], NLL -1.445 [-1.647, -1.243], ECE -26.39 "
    "[-28.63, -24.14] (5 seeds). DeiT's setting on every sample gains as much accuracy with clean labels and "
    "calibrates worse."
)

RECIPES: MappingProxyType[str, Recipe] = MappingProxyType(
    {
        recipe.name: recipe
        for recipe in (
            Recipe(
                name="few-labels",
                use="fine-tuning a pretrained text encoder on a few labelled examples per class (gains at 16 only)",
                arguments=dict(site="hidden", mixup_alpha=0.4),
                measured=FEW_LABELS,
                grid="configs/experiments/regimes.yaml",
                setting="hidden-a0.4",
            ),
            Recipe(
                name="text-classifier",
                use="fine-tuning a pretrained text encoder for sequence classification, regime unknown",
                arguments=dict(site="hidden", mixup_alpha=0.4, clean_loss_weight=1.0),
                measured=TEXT_CLASSIFIER,
                grid="configs/experiments/text_grid.yaml",
                setting="hidden-regmixup",
            ),
            Recipe(
                name="vit",
                use="training a ViT image classifier, above all with few labelled images per class or noisy labels",
                arguments=dict(site="input", mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.5),
                measured=VIT,
                grid="configs/experiments/vit_regimes.yaml",
                setting="pixel-mixup-cutmix-p0.5",
            ),
        )
    }
)


def default_recipe(model: nn.Module) -> str:
    """The recipe a `MixupTrainer` uses when given no mixing: `"vit"` for image models (main input `pixel_values`),
    `"few-labels"` for every other model. Both cost one forward per step.

    A measured choice for a run whose regime the trainer cannot know: on a pretrained text encoder the few-labels
    setting (manifold mixup, `MixConfig()`'s defaults) gained accuracy with 16 labelled examples per class and lost
    none beyond its interval with more (docs/results.md), at no measurable step-time cost. The text-classifier recipe
    adds RegMixup's clean forward, 2.1-2.25x the step time, which bought nothing measurable with 1,800 tweets."""
    main_input = getattr(unwrap_model(model), "main_input_name", "input_ids")
    return "vit" if main_input == "pixel_values" else "few-labels"


# measured by benchmarks/bench_text_overhead.py (pretrained MiniLM, batch 16 x 128 tokens, 2 CPU cores)
CLEAN_LOSS_COST = "2.1-2.25x the step time of one forward at 16 x 128 tokens (benchmarks/bench_text_overhead.py)"


def get_recipe(name: str) -> Recipe:
    """The recipe called `name` (one of `RECIPES`)."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"recipe={name!r} is not a hiddenmix recipe; choose one of {sorted(RECIPES)}.")
    return RECIPES[name]


__all__ = ["CLEAN_LOSS_COST", "RECIPES", "Recipe", "default_recipe", "get_recipe"]
