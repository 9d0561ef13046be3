"""`MixupTrainer`: Mixup / manifold mixup training with `transformers.Trainer`, by changing one class name.

```python
from hiddenmix import MixConfig
from hiddenmix.trainer import MixupTrainer

trainer = MixupTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                       mix_config=MixConfig(site="hidden", layers=(2, 4, 6)))
trainer.train()
```

Without `mix_config` (or `mixer`, or `recipe=`) the measured recipe for the model's kind is used (`hiddenmix.RECIPES`).

Training forwards are mixed inside the model by a `HiddenMixer`; the labels are taken out of the inputs before the
forward (a `...ForSequenceClassification` given float labels would silently switch its own loss to BCE and persist
`config.problem_type`), and the loss is the soft-target loss of that forward's plan. Evaluation and prediction are
those of a plain `Trainer`: the model is in eval mode there, so the hooks do nothing and the model computes its own
loss.

Schedules of α and probability (including "mixing off for the end of training", timm's `--mixup-off-epoch`) are a
`TrainerCallback`, `MixScheduleCallback`. RegMixup adds the loss of a clean forward (`clean_loss_weight`).

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019.
    Pinto et al., "Using Mixup as a Regularizer Can Surprisingly Improve Accuracy and Out-of-Distribution
    Robustness" (RegMixup), NeurIPS 2022.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import logging

from .config import MixConfig
from .mixer import HiddenMixer, unwrap_model
from .plan import MixPlan
from .recipes import get_recipe
from .targets import soft_target_loss

logger = logging.get_logger(__name__)

MIXER_STATE_NAME = "hiddenmix_mixer_state_{rank}.pt"
_UNITS = ("epoch", "step")


# ---------------------------------------------------------------------------------------------------- schedules
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
        if off:
            changes["enabled"] = False
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


# ---------------------------------------------------------------------------------------------------- trainer
def default_recipe(model: nn.Module) -> str:
    """The recipe a `MixupTrainer` uses when given no mixing: `"vit"` for image models (main input `pixel_values`),
    `"text-classifier"` for every other model."""
    main_input = getattr(unwrap_model(model), "main_input_name", "input_ids")
    return "vit" if main_input == "pixel_values" else "text-classifier"


class MixupTrainer(Trainer):
    """A `transformers.Trainer` whose training forwards are mixed by a `HiddenMixer`.

    The loss of a training step is the soft-target loss of the forward's plan: cross-entropy with label smoothing
    applied before mixing (single-label), BCE (`problem_type="multi_label_classification"`), or MSE (regression);
    rows whose label is `ignore_index` are left out. Everything else (evaluation, prediction, checkpoints, logging,
    `accelerate launch`) is the parent's.

    Args:
        model: a `transformers` model (PEFT-wrapped models work too). `model_init` is not supported: the mixer's
            hooks are attached to this model.
        args: the `TrainingArguments`. `label_smoothing_factor` is taken as the mix config's `label_smoothing` when
            that is 0; different non-zero values of the two are an error.
        mix_config: how to mix. Give at most one of `mix_config`, `mixer`, `recipe`; with none of them the measured
            recipe for the model's kind is used (`default_recipe(model)`: `"vit"` for a model whose main input is
            `pixel_values`, `"text-classifier"` otherwise).
        mixer: a `HiddenMixer` already attached to `model`.
        recipe: the name of a recipe (`hiddenmix.RECIPES`, e.g. `"text-classifier"`): its `MixConfig`, its
            `clean_loss_weight` (unless given here) and, if it turns mixing off for the last steps, a
            `MixScheduleCallback`.
        clean_loss_weight: RegMixup: weight of the loss of a clean (unmixed) forward added to the mixed loss;
            0 turns it off. The clean forward costs one extra forward per step. `None`: the recipe's, else 0.
        **kwargs: everything else `transformers.Trainer` takes (`train_dataset`, `callbacks`, ...).

    Logged with the training loss, through `Trainer.log` (so TensorBoard, W&B, ... get them), over the steps since
    the last log and all processes: `mix/lam_mean` (mean λ of the mixed samples), `mix/batches_mixed` and
    `mix/samples_mixed` (shares), and `mix/layer_<k>` (share of the mixed batches mixed after layer k).

    Attributes:
        mixer: the `HiddenMixer` attached to the model.
        last_plan: the `MixPlan` of the last training loss (an identity plan for an unmixed step).
    """

    # The loss is normalized by the number of counted rows of the whole accumulated batch (see `get_batch_samples`),
    # so `training_step` must not divide it again by the number of accumulation steps.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        *trainer_args: Any,
        mix_config: MixConfig | None = None,
        mixer: HiddenMixer | None = None,
        recipe: str | None = None,
        clean_loss_weight: float | None = None,
        **kwargs: Any,
    ) -> None:
        # Every check runs before the model is touched.
        if model is None:
            raise ValueError(
                "MixupTrainer needs model=: the mixer's hooks are attached to that model "
                "(model_init is not supported)."
            )
        choices = (("mix_config", mix_config), ("mixer", mixer), ("recipe", recipe))
        given = [name for name, value in choices if value is not None]
        if len(given) > 1:
            raise ValueError(f"MixupTrainer takes one of mix_config=, mixer=, recipe=; got {' and '.join(given)}.")
        if not given:
            recipe = default_recipe(model)
            logger.info(f"MixupTrainer: no mix_config, mixer or recipe given; using the {recipe!r} recipe.")
        if recipe is not None:
            chosen = get_recipe(recipe)
            mix_config = chosen.mix_config()
            if clean_loss_weight is None:
                clean_loss_weight = chosen.clean_loss_weight
            if chosen.mix_off_for_last > 0:
                kwargs["callbacks"] = [*(kwargs.get("callbacks") or []),
                                       MixScheduleCallback(off_for_last=chosen.mix_off_for_last)]  # fmt: skip
        if clean_loss_weight is None:
            clean_loss_weight = 0.0
        if mix_config is not None and not isinstance(mix_config, MixConfig):
            raise TypeError(f"mix_config must be a hiddenmix.MixConfig; got {type(mix_config).__name__}.")
        if mixer is not None:
            if not isinstance(mixer, HiddenMixer):
                raise TypeError(f"mixer must be a hiddenmix.HiddenMixer; got {type(mixer).__name__}.")
            if not mixer.attached or mixer.entry is not unwrap_model(model):
                raise ValueError("mixer= must be a HiddenMixer attached to the model given as model=.")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("MixupTrainer computes the soft-target loss itself; compute_loss_func must be None.")
        if (
            isinstance(clean_loss_weight, bool)
            or not isinstance(clean_loss_weight, (int, float))
            or not math.isfinite(clean_loss_weight)
            or clean_loss_weight < 0
        ):
            raise ValueError(f"clean_loss_weight={clean_loss_weight!r} must be a finite number >= 0 (0 turns it off).")
        config = mixer.config if mixer is not None else mix_config
        smoothing = getattr(args, "label_smoothing_factor", 0.0) or 0.0
        if smoothing > 0:
            if config.label_smoothing == 0:
                config = config.replace(label_smoothing=smoothing)
            elif config.label_smoothing != smoothing:
                raise ValueError(
                    f"TrainingArguments.label_smoothing_factor={smoothing} and MixConfig.label_smoothing="
                    f"{config.label_smoothing} differ; set one of them (MixupTrainer smooths before mixing)."
                )

        super().__init__(model, args, *trainer_args, **kwargs)
        if self.args.n_gpu > 1:
            raise ValueError(
                f"MixupTrainer does not run under torch.nn.DataParallel (n_gpu={self.args.n_gpu}): its replicas "
                "would share one mixer. Launch one process per GPU: `accelerate launch --multi_gpu ...` or `torchrun`."
            )
        if mixer is None:
            mixer = HiddenMixer(self.model, config)
        elif config is not mixer.config:
            mixer.set_config(config)
        self.mixer = mixer
        # The plan the last training loss was computed with (after RegMixup's clean forward `mixer.plan` is None).
        self.last_plan: MixPlan | None = None
        self.clean_loss_weight = float(clean_loss_weight)
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, MixScheduleCallback) and callback.mixer is None:
                callback.bind(mixer)
        self._reset_mix_stats()

    # ------------------------------------------------------------------ loss
    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, Tensor | None]:
        """The next `num_batches` micro-batches and the number of rows that count in them.

        The count is of rows (a label that is not `ignore_index`, or a label row), summed over the accumulated
        micro-batches and, with `average_tokens_across_devices`, over the processes; `compute_loss` divides the
        summed row losses by it. A step's gradient is then that of the mean over every counted row of the step,
        however it is split into micro-batches and processes. (The parent's count would be of label *elements*,
        which for multi-label rows is rows x classes.) The count is copied to the device without blocking.
        """
        batch_samples = []
        for _ in range(num_batches):
            try:
                batch_samples.append(next(epoch_iterator))
            except StopIteration:
                break
        count = None
        if batch_samples and all(torch.is_tensor(batch.get("labels")) for batch in batch_samples):
            # the labels are still on the host here: the counts go over without waiting for the device queue
            count = sum(self._counted_rows(batch["labels"]).to(device, non_blocking=True) for batch in batch_samples)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                count = self.accelerator.gather(count.reshape(1)).sum()
        return batch_samples, count

    def _counted_rows(self, labels: Tensor) -> Tensor:
        if labels.dim() == 1 and not labels.is_floating_point():
            return (labels != self.mixer.config.ignore_index).sum()
        # a fill on the device, not a copy from the host (which would wait for the device queue)
        return torch.full((), labels.shape[0], dtype=torch.long, device=labels.device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """The soft-target loss of a mixed training forward; the parent's loss in evaluation.

        Args:
            model: the model to run (possibly wrapped by DDP / FSDP / `torch.compile`).
            inputs: the batch; must hold `labels` in training.
            return_outputs: also return the model outputs (of the mixed forward).
            num_items_in_batch: the number of counted rows of the accumulated batch (`get_batch_samples`); the
                summed row losses are divided by it. `None`: the mean over this batch's counted rows.

        Returns:
            `(loss, outputs) if return_outputs else loss`.
        """
        if not model.training:
            # Evaluation / prediction: the model is in eval mode, the hooks pass through, and the model computes
            # its own plain loss, exactly as under a plain Trainer.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if "labels" not in inputs or inputs["labels"] is None:
            raise ValueError(
                "MixupTrainer needs `labels` in every training batch to build soft targets; "
                f"got keys {sorted(inputs)}."
            )
        inputs = dict(inputs)
        labels = inputs.pop("labels")  # the model's own loss must never see them (HF's float-label BCE trap)
        outputs = model(**inputs)
        plan = self.mixer.plan
        if plan is None:  # mixing off (config or schedule): the plain soft-target loss, label smoothing included
            plan = MixPlan.identity(labels.shape[0], labels.device, site=self.mixer.config.site)
        loss = self._row_loss_sum(_logits(outputs), labels, plan)
        if self.clean_loss_weight > 0:
            with self.mixer.paused():
                clean_outputs = model(**inputs)
            identity = MixPlan.identity(labels.shape[0], labels.device, site=self.mixer.config.site)
            loss = loss + self.clean_loss_weight * self._row_loss_sum(_logits(clean_outputs), labels, identity)
        if num_items_in_batch is None:
            loss = loss / self._counted_rows(labels).clamp_min(1)
        else:
            loss = loss / torch.as_tensor(num_items_in_batch, device=loss.device).clamp_min(1)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                # The count is global; DDP averages the gradients over processes, so undo that average.
                loss = loss * self.accelerator.num_processes
        self.last_plan = plan
        self._record_plan(plan)
        return (loss, outputs) if return_outputs else loss

    def _row_loss_sum(self, logits: Tensor, labels: Tensor, plan: MixPlan) -> Tensor:
        """Sum over the rows that count of the soft-target loss of each row."""
        targets = self.mixer.targets(labels, plan)
        if targets.problem_type != "regression" and logits.shape[-1] != targets.target.shape[-1]:
            raise ValueError(
                f"the model produces {logits.shape[-1]} logits per row but the targets have "
                f"{targets.target.shape[-1]} classes; check num_labels / MixConfig.num_classes."
            )
        # The library's losses are means over the valid rows; times their number this is the sum, without a sync.
        return soft_target_loss(logits, targets) * targets.valid.sum()

    # ------------------------------------------------------------------ logging
    def _reset_mix_stats(self) -> None:
        self._mix_lam_sum: Tensor | int = 0  # device tensor once a step ran: Σ λ over mixed samples
        self._mix_samples_mixed: Tensor | int = 0  # device tensor: number of mixed samples
        self._mix_samples = 0  # host counters: known without reading the device
        self._mix_batches = 0
        self._mix_batches_mixed = 0
        self._mix_layers = dict.fromkeys(self.mixer.layers, 0)

    def _record_plan(self, plan: MixPlan) -> None:
        # Only device-side adds and host-side counters here: the values are read once, at logging time.
        self._mix_batches += 1
        self._mix_samples += plan.batch_size
        if not plan.mixed:
            return
        self._mix_batches_mixed += 1
        if plan.layer is not None and plan.layer in self._mix_layers:
            self._mix_layers[plan.layer] += 1
        mixed = plan.lam_target < 1
        self._mix_lam_sum = self._mix_lam_sum + (plan.lam_target * mixed).sum()
        self._mix_samples_mixed = self._mix_samples_mixed + mixed.sum()

    def mix_stats(self) -> dict[str, float]:
        """The mixing statistics since the last call, over all processes, then reset.

        Every process must call it at the same point (it reduces across processes), as `log` does.
        """
        device = self.args.device
        values = torch.stack(
            [
                torch.as_tensor(self._mix_lam_sum, dtype=torch.float64, device=device),
                torch.as_tensor(self._mix_samples_mixed, dtype=torch.float64, device=device),
                torch.tensor(float(self._mix_samples), dtype=torch.float64, device=device),
                torch.tensor(float(self._mix_batches), dtype=torch.float64, device=device),
                torch.tensor(float(self._mix_batches_mixed), dtype=torch.float64, device=device),
                *[torch.tensor(float(n), dtype=torch.float64, device=device) for n in self._mix_layers.values()],
            ]
        )
        if self.accelerator.num_processes > 1:
            values = self.accelerator.reduce(values, reduction="sum")
        lam_sum, samples_mixed, samples, batches, batches_mixed, *layers = values.tolist()  # the one sync
        layer_ids = list(self._mix_layers)
        self._reset_mix_stats()
        if batches == 0:
            return {}
        stats = {
            "mix/lam_mean": lam_sum / samples_mixed if samples_mixed else 1.0,
            "mix/batches_mixed": batches_mixed / batches,
            "mix/samples_mixed": samples_mixed / samples,
        }
        for layer, count in zip(layer_ids, layers):
            stats[f"mix/layer_{layer}"] = count / batches_mixed if batches_mixed else 0.0
        return stats

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mixing statistics to the training logs (those with `loss`), then logs as the parent does."""
        if "loss" in logs:  # training-step logs; every process reaches this point at the same step
            logs = {**logs, **self.mix_stats()}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        # Each process has its own mixing stream (seeded by rank): each saves it, next to its RNG state. The model
        # weights hold nothing of hiddenmix (hooks are not state), so the checkpoint loads in plain transformers.
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        torch.save(self.mixer.state_dict(), os.path.join(folder, MIXER_STATE_NAME.format(rank=self._rank())))

    def _rank(self) -> int:
        return self.args.process_index if self.args.world_size > 1 else 0

    def load_mixer_state(self, checkpoint: str) -> bool:
        """Restore this process's mixing random stream from a checkpoint folder; False (and a warning) if absent."""
        path = os.path.join(checkpoint, MIXER_STATE_NAME.format(rank=self._rank()))
        if not os.path.isfile(path):
            logger.warning(
                f"{path} not found: the mixing random stream starts afresh, so the plans will differ from an "
                "uninterrupted run (was the checkpoint written by a plain Trainer, or with another number of "
                "processes?)."
            )
            return False
        self.mixer.load_state_dict(torch.load(path, weights_only=True))
        return True

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """`Trainer.train`; when resuming, the mixing random stream continues from the checkpoint too."""
        checkpoint = resume_from_checkpoint
        if isinstance(checkpoint, bool) and checkpoint:
            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} holds no checkpoint.")
        if isinstance(checkpoint, (str, os.PathLike)):
            self.load_mixer_state(os.fspath(checkpoint))
            resume_from_checkpoint = os.fspath(checkpoint)
        self._reset_mix_stats()
        return super().train(resume_from_checkpoint, *args, **kwargs)


def _logits(outputs: Any) -> Tensor:
    if hasattr(outputs, "logits") and outputs.logits is not None:
        return outputs.logits
    if isinstance(outputs, dict):
        if "logits" in outputs:
            return outputs["logits"]
        raise ValueError(f"the model returned no logits; its outputs hold {sorted(outputs)}.")
    return outputs[0]
