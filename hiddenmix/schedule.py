"""Schedules of the mixing strength: α and probability over training, and mixing off at the end.

`MixSchedule` is a pure function of the step and epoch (so a resumed run gets the same configs);
`MixScheduleCallback` applies it to a `HiddenMixer` at every optimizer step of a `transformers.Trainer`.
`MixupTrainer` adds one by itself when its arguments turn mixing off at the end (`mix_off_for_last`,
`mix_off_epoch`: timm's `--mixup-off-epoch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .config import MixConfig
from .mixer import HiddenMixer

_UNITS = ("epoch", "step")


def _check_points(name: str, points: Any) -> tuple[tuple[float, float], ...] | None:
    if points is None:
        return None
    ok = isinstance(points, Sequence) and not isinstance(points, (str, bytes)) and len(points) > 0
    ok = ok and all(
        isinstance(p, Sequence)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        for p in points
    )
    if not ok:
        raise ValueError(f"MixSchedule.{name}={points!r} must be None or a non-empty list of (at, value) pairs.")
    pairs = tuple((float(at), float(value)) for at, value in points)
    ats = [at for at, _ in pairs]
    if any(b <= a for a, b in zip(ats, ats[1:])) or ats[0] < 0:
        raise ValueError(f"MixSchedule.{name}={points!r}: the `at` values must be >= 0 and strictly increasing.")
    return pairs


def _interpolate(points: tuple[tuple[float, float], ...], at: float) -> float:
    """Piecewise-linear through `points`, constant before the first and after the last."""
    if at <= points[0][0]:
        return points[0][1]
    for (a0, v0), (a1, v1) in zip(points, points[1:]):
        if at <= a1:
            return v0 + (v1 - v0) * (at - a0) / (a1 - a0)
    return points[-1][1]


@dataclass
class MixSchedule:
    """How the mixing strength changes during training.

    Args:
        unit: `epoch` (the `at` values below are epochs, fractional within an epoch) or `step` (optimizer steps).
        mixup_alpha: `(at, α)` points; α is interpolated linearly between them and held outside. `None`: the
            config's `mixup_alpha` throughout.
        cutmix_alpha: the same for `cutmix_alpha`.
        prob: the same for `prob` (the probability that a sample is mixed).
        off_for_last: share of the training steps, at the end, with mixing off (e.g. `0.1`: the last 10 %).
        off_epoch: epoch from which mixing is off (timm's `--mixup-off-epoch`); `None`: never.
    """

    unit: str = field(default="epoch", metadata={"help": "epoch | step: what the `at` values of the points count."})
    mixup_alpha: tuple[tuple[float, float], ...] | None = field(
        default=None, metadata={"help": "(at, alpha) points, linear in between; None keeps the config's value."}
    )
    cutmix_alpha: tuple[tuple[float, float], ...] | None = field(
        default=None, metadata={"help": "(at, alpha) points for cutmix_alpha."}
    )
    prob: tuple[tuple[float, float], ...] | None = field(
        default=None, metadata={"help": "(at, probability) points for prob."}
    )
    off_for_last: float = field(default=0.0, metadata={"help": "Share of training steps, at the end, unmixed."})
    off_epoch: float | None = field(default=None, metadata={"help": "Epoch from which mixing is off (timm)."})

    def __post_init__(self) -> None:
        if self.unit not in _UNITS:
            raise ValueError(f"MixSchedule.unit={self.unit!r} is not allowed; choose one of {list(_UNITS)}.")
        self.mixup_alpha = _check_points("mixup_alpha", self.mixup_alpha)
        self.cutmix_alpha = _check_points("cutmix_alpha", self.cutmix_alpha)
        self.prob = _check_points("prob", self.prob)
        for name in ("mixup_alpha", "cutmix_alpha"):
            points = getattr(self, name)
            if points is not None and any(v < 0 for _, v in points):
                raise ValueError(f"MixSchedule.{name}={points!r}: α values must be >= 0.")
        if self.prob is not None and any(not 0 <= v <= 1 for _, v in self.prob):
            raise ValueError(f"MixSchedule.prob={self.prob!r}: probabilities must be in [0, 1].")
        off = self.off_for_last
        if isinstance(off, bool) or not isinstance(off, (int, float)) or not 0 <= off <= 1:
            raise ValueError(f"MixSchedule.off_for_last={off!r} must be a number in [0, 1].")
        if self.off_epoch is not None and (
            isinstance(self.off_epoch, bool) or not isinstance(self.off_epoch, (int, float)) or self.off_epoch < 0
        ):
            raise ValueError(f"MixSchedule.off_epoch={self.off_epoch!r} must be None or a number >= 0.")

    def config_at(self, base: MixConfig, *, step: int, epoch: float, max_steps: int) -> MixConfig:
        """The config in force for the optimizer step `step` (0-based) at `epoch`, out of `max_steps`."""
        at = epoch if self.unit == "epoch" else float(step)
        changes: dict[str, Any] = {}
        if self.mixup_alpha is not None:
            changes["mixup_alpha"] = _interpolate(self.mixup_alpha, at)
        if self.cutmix_alpha is not None:
            changes["cutmix_alpha"] = _interpolate(self.cutmix_alpha, at)
        if self.prob is not None:
            changes["prob"] = _interpolate(self.prob, at)
        off = self.off_epoch is not None and epoch >= self.off_epoch
        off = off or (self.off_for_last > 0 and max_steps > 0 and step >= (1.0 - self.off_for_last) * max_steps)
        if off:  # nothing mixed, and the loss stays the soft-target loss (enabled=False would be the plain model's)
            changes["prob"] = 0.0
        return base.replace(**changes) if changes else base


class MixScheduleCallback(TrainerCallback):
    """Applies a `MixSchedule` to a mixer at the start of every optimizer step.

    `MixupTrainer` binds every `MixScheduleCallback` in its `callbacks` to its own mixer, so
    `MixupTrainer(..., callbacks=[MixScheduleCallback(MixSchedule(off_for_last=0.1))])` is all it takes. The
    schedule is a function of the step and epoch only, so a resumed run gets the same configs.

    Args:
        schedule: the schedule; keyword arguments build one instead (`MixScheduleCallback(off_for_last=0.1)`).
        mixer: the mixer to drive; `None` until a `MixupTrainer` binds it.
    """

    def __init__(
        self, schedule: MixSchedule | None = None, *, mixer: HiddenMixer | None = None, **schedule_kwargs: Any
    ) -> None:
        if schedule is not None and schedule_kwargs:
            raise ValueError(
                f"MixScheduleCallback takes a MixSchedule or its fields as keywords, not both; got schedule= and "
                f"{sorted(schedule_kwargs)}."
            )
        self.schedule = schedule if schedule is not None else MixSchedule(**schedule_kwargs)
        self.mixer: HiddenMixer | None = None
        self.base: MixConfig | None = None
        if mixer is not None:
            self.bind(mixer)

    def bind(self, mixer: HiddenMixer) -> None:
        """Drive `mixer`; the schedule's changes are made to the config it has now."""
        self.mixer = mixer
        self.base = mixer.config

    def _apply(self, state: TrainerState) -> None:
        if self.mixer is None:
            raise ValueError(
                "MixScheduleCallback has no mixer: pass it to a MixupTrainer (callbacks=[...]) or give mixer=."
            )
        config = self.schedule.config_at(
            self.base, step=state.global_step, epoch=state.epoch or 0.0, max_steps=state.max_steps
        )
        if config != self.mixer.config:
            self.mixer.set_config(config)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._apply(state)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._apply(state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # Leave the mixer as it was given, so a later `train()` starts from the same base config.
        if self.mixer is not None and self.mixer.config != self.base:
            self.mixer.set_config(self.base)


__all__ = ["MixSchedule", "MixScheduleCallback"]
