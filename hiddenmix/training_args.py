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

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from .config import MIX_OPTION_NAMES, MixConfig, MixOptions, check_mix_options, check_trainer_options
from .recipes import get_recipe
from .schedule import MixSchedule


# MixOptions first in the bases so that TrainingArguments' fields come first in the generated `__init__`:
# `MixupTrainingArguments("out")` sets `output_dir`, as `TrainingArguments("out")` does.
@dataclass
class MixupTrainingArguments(MixOptions, TrainingArguments):
    """`TrainingArguments` with the mixing options of `MixConfig` (see `MixOptions` for each) and these:

    Args:
        clean_loss_weight: RegMixup: weight of the loss of a clean (unmixed) forward of the same batch, added to the
            mixed loss; 0 turns it off. It costs a second forward and backward per step.
        mix_off_for_last: share of the training steps, at the end, with mixing off.
        mix_off_epoch: epoch from which mixing is off (timm's `--mixup-off-epoch`); None: never.
    """

    clean_loss_weight: float = field(
        default=0.0,
        metadata={"help": "RegMixup: weight of a clean forward's loss added to the mixed loss (a second forward)."},
    )
    mix_off_for_last: float = field(default=0.0, metadata={"help": "Share of training steps, at the end, unmixed."})
    mix_off_epoch: float | None = field(default=None, metadata={"help": "Epoch from which mixing is off (timm)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mix_options(self, type(self).__name__)
        check_trainer_options(self, type(self).__name__)
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

    @classmethod
    def from_recipe(cls, name: str, **kwargs: Any) -> MixupTrainingArguments:
        """Arguments with the recipe `name`'s values (`hiddenmix.RECIPES`); `kwargs` set any field, recipe's too."""
        return cls(**{**get_recipe(name).arguments, **kwargs})


__all__ = ["MixupTrainingArguments"]
