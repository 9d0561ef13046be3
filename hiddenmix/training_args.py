"""`MixupTrainingArguments`: `transformers.TrainingArguments` plus every mixing option, for `MixupTrainer`.

One dataclass carries the training and the mixing options, so `HfArgumentParser` parses both from the command line,
a YAML or a JSON file, and `MixupTrainer(model=..., args=...)` needs no other mixing keyword (TRL's `SFTConfig` /
`RewardConfig` are the precedent). The mixing options have the names of `MixConfig`'s fields; the two that
`TrainingArguments` already holds are its own: `label_smoothing_factor` (smoothing before mixing) and `seed` (which
also seeds the mixing streams, offset by the process rank).

```python
from hiddenmix import MixupTrainer, MixupTrainingArguments

args = MixupTrainingArguments(output_dir="out", site="hidden", mixup_alpha=0.4, layers=[3, 4, 5])
args = MixupTrainingArguments.from_recipe("text-classifier", output_dir="out", num_train_epochs=3)
trainer = MixupTrainer(model=model, args=args, train_dataset=train)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import TrainingArguments

from .config import (
    MIX_OPTION_NAMES,
    MixConfig,
    MixOptions,
    TrainerMixOptions,
    UnlabeledOptions,
    check_mix_options,
    check_trainer_options,
    check_unlabeled_options,
)
from .recipes import get_recipe
from .schedule import MixSchedule


# The mixing bases first so that TrainingArguments' fields come first in the generated `__init__`:
# `MixupTrainingArguments("out")` sets `output_dir`, as `TrainingArguments("out")` does.
@dataclass
class MixupTrainingArguments(MixOptions, TrainerMixOptions, UnlabeledOptions, TrainingArguments):
    """`TrainingArguments` with the mixing options of `MixConfig` (`MixOptions`), the trainer's own
    (`TrainerMixOptions`: `clean_loss_weight`, `mix_off_for_last`, `mix_off_epoch`) and those of unlabelled rows
    (`UnlabeledOptions`, used with `MixupTrainer(..., unlabeled_dataset=...)`); see those classes for each."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mix_options(self, type(self).__name__)
        check_trainer_options(self, type(self).__name__)
        check_unlabeled_options(self, type(self).__name__)
        if not 0 <= self.label_smoothing_factor < 1:
            raise ValueError(
                f"{type(self).__name__}.label_smoothing_factor={self.label_smoothing_factor!r} is not allowed; "
                "allowed: a number in [0, 1)."
            )

    def mix_config(self) -> MixConfig:
        """The `MixConfig` these arguments describe (smoothing from `label_smoothing_factor`, seed from `seed`)."""
        options = {name: getattr(self, name) for name in MIX_OPTION_NAMES}
        return MixConfig(**options, label_smoothing=self.label_smoothing_factor, seed=self.seed)

    def mix_schedule(self) -> MixSchedule | None:
        """The schedule that turns mixing off at the end (`mix_off_for_last`, `mix_off_epoch`), or None."""
        if self.mix_off_for_last == 0 and self.mix_off_epoch is None:
            return None
        return MixSchedule(off_for_last=self.mix_off_for_last, off_epoch=self.mix_off_epoch)

    def agreeing_config(self, config: MixConfig) -> MixConfig:
        """`config` (a mixer's own) with these arguments' label smoothing; an error if these arguments set a mixing
        option away from its default that `config` does not share (`MixupTrainer(..., mixer=...)`)."""
        defaults = MixOptions()
        clashes = [
            f"{name}={getattr(self, name)!r} (the mixer has {getattr(config, name)!r})"
            for name in MIX_OPTION_NAMES
            if getattr(self, name) != getattr(defaults, name) and getattr(self, name) != getattr(config, name)
            and not (name in ("layers", "cutmix_minmax") and _same(getattr(self, name), getattr(config, name)))
        ]  # fmt: skip
        smoothing = self.label_smoothing_factor
        if smoothing > 0 and config.label_smoothing not in (0, smoothing):
            clashes.append(
                f"label_smoothing_factor={smoothing} (the mixer has label_smoothing={config.label_smoothing})"
            )
        if clashes:
            raise ValueError(
                "MixupTrainer was given mixer= and args that set other mixing options: "
                + "; ".join(clashes)
                + ". Set them in the mixer's MixConfig, or leave them at their defaults in args."
            )
        return config.replace(label_smoothing=smoothing) if smoothing > 0 else config

    @classmethod
    def from_recipe(cls, name: str, **kwargs: Any) -> MixupTrainingArguments:
        """Arguments with the recipe `name`'s values (`hiddenmix.RECIPES`); `kwargs` set any field, recipe's too."""
        return cls(**{**get_recipe(name).arguments, **kwargs})


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and tuple(a) == tuple(b)


__all__ = ["MixupTrainingArguments"]
