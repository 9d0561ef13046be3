"""`MixupTrainer`: Mixup / manifold mixup training with `transformers.Trainer`, by changing one class name.

```python
from hiddenmix import MixupTrainer, MixupTrainingArguments

args = MixupTrainingArguments(output_dir="out", site="hidden", mixup_alpha=0.4)
trainer = MixupTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev)
trainer.train()
```

Training forwards are mixed inside the model by a `HiddenMixer`; the labels are taken out of the inputs before the
forward (a `...ForSequenceClassification` given float labels would silently switch its own loss to BCE and persist
`config.problem_type`), and the loss is the soft-target loss of that forward's plan. Evaluation and prediction are
those of a plain `Trainer`: the model is in eval mode there, so the hooks do nothing and the model computes its own
loss.

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019.
    Pinto et al., "Using Mixup as a Regularizer Can Surprisingly Improve Accuracy and Out-of-Distribution
    Robustness" (RegMixup), NeurIPS 2022.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import logging

from .calls import unwrap_model
from .dense import is_dense
from .forwards import output_logits
from .mixer import HiddenMixer
from .plan import MixPlan
from .recipes import CLEAN_LOSS_COST, default_recipe, get_recipe
from .schedule import MixScheduleCallback
from .training_args import MixupTrainingArguments
from .unlabeled import UnlabeledRows, rampup, semi_supervised_loss

logger = logging.get_logger(__name__)

MIXER_STATE_NAME = "hiddenmix_mixer_state_{rank}.pt"
_UNITS = ("epoch", "step")


# ---------------------------------------------------------------------------------------------------- trainer
class MixupTrainer(Trainer):
    """A `transformers.Trainer` whose training forwards are mixed by a `HiddenMixer`.

    The loss of a training step is the soft-target loss of the forward's plan: cross-entropy with label smoothing
    applied before mixing (single-label), BCE (`problem_type="multi_label_classification"`), or MSE (regression);
    rows whose label is `ignore_index` are left out. Token tags (`[B, T]`, token classification) and label maps
    (`[B, H, W]`, semantic segmentation) get per-position targets from the same plan (`hiddenmix.dense`), normalised
    by the labelled positions of the whole accumulated batch. Everything else (evaluation, prediction, checkpoints,
    logging, `accelerate launch`) is the parent's.

    Args:
        model: a `transformers` model (PEFT-wrapped models work too). `model_init` is not supported: the mixer's
            hooks are attached to this model.
        args: the `MixupTrainingArguments`: how to train and how to mix. Plain `TrainingArguments` (or None) are
            turned into `MixupTrainingArguments` with the measured recipe for the model's kind
            (`default_recipe(model)`), and the recipe is logged.
        mixer: a `HiddenMixer` already attached to `model`, for a mixer built by hand. Its config is the one used;
            mixing options set in `args` away from their defaults must then agree with it.
        unlabeled_dataset: tokenized unlabelled rows (a label column is ignored): each step adds
            `unlabeled_batch_size` of them, with their views and guessed labels, to the labelled batch, and the plan
            mixes across both (`hiddenmix.unlabeled`, the `UnlabeledOptions` of `args`).
        **kwargs: everything else `transformers.Trainer` takes (`train_dataset`, `callbacks`, ...).

    Logged with the training loss, through `Trainer.log` (so TensorBoard, W&B, ... get them), over the steps since
    the last log and all processes: `mix/lam_mean` (mean λ of the mixed samples), `mix/batches_mixed` and
    `mix/samples_mixed` (shares), `mix/layer_<k>` (share of the mixed batches mixed after layer k) and, with a clean
    loss, `mix/loss_mixed` and `mix/loss_clean`, the two parts of `loss` (`loss = loss_mixed + clean_loss_weight *
    loss_clean`). The mixed loss is measured against soft targets, so it stays well above a plain run's loss.

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
        mixer: HiddenMixer | None = None,
        unlabeled_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        # Every check runs before the model is touched.
        if model is None:
            raise ValueError(
                "MixupTrainer needs model=: the mixer's hooks are attached to that model "
                "(model_init is not supported)."
            )
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("MixupTrainer computes the soft-target loss itself; compute_loss_func must be None.")
        if args is not None and not isinstance(args, TrainingArguments):
            raise TypeError(f"args must be MixupTrainingArguments (or TrainingArguments); got {type(args).__name__}.")
        if not isinstance(args, MixupTrainingArguments):
            given = {} if args is None else {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
            known = {f.name for f in dataclasses.fields(MixupTrainingArguments)}
            if set(given) - known:
                raise ValueError(
                    f"MixupTrainer takes MixupTrainingArguments or plain TrainingArguments; {type(args).__name__} "
                    f"adds fields it does not know: {sorted(set(given) - known)}."
                )
            given.setdefault("output_dir", "tmp_trainer")
            if mixer is not None:  # the mixer's own config is the mixing: the arguments keep their defaults
                args = MixupTrainingArguments(**given)
            else:
                recipe = default_recipe(model)
                args = MixupTrainingArguments.from_recipe(recipe, **given)
                logger.warning(
                    f"MixupTrainer: args are plain TrainingArguments, so it mixes with the {recipe!r} recipe "
                    f"({get_recipe(recipe).use}; one forward per step). Pass MixupTrainingArguments to choose."
                )
        config = args.mix_config()
        if mixer is not None:
            if not isinstance(mixer, HiddenMixer):
                raise TypeError(f"mixer must be a hiddenmix.HiddenMixer; got {type(mixer).__name__}.")
            if not mixer.attached or mixer.entry is not unwrap_model(model):
                raise ValueError("mixer= must be a HiddenMixer attached to the model given as model=.")
            config = args.agreeing_config(mixer.config)

        super().__init__(model, args, *trainer_args, **kwargs)
        if self.args.n_gpu > 1:
            raise ValueError(
                f"MixupTrainer does not run under torch.nn.DataParallel (n_gpu={self.args.n_gpu}): its replicas "
                "would share one mixer. Launch one process per GPU: `accelerate launch --multi_gpu ...` or `torchrun`."
            )
        if mixer is None:
            mixer = HiddenMixer(self.model, config)
        elif config != mixer.config:
            mixer.set_config(config)
        self.mixer = mixer
        self._mixes = mixer.config.active
        self.unlabeled = UnlabeledRows.for_trainer(self, unlabeled_dataset)
        # The plan the last training loss was computed with (after RegMixup's clean forward `mixer.plan` is None).
        self.last_plan: MixPlan | None = None
        schedule = self.args.mix_schedule()
        if schedule is not None:
            self.add_callback(MixScheduleCallback(schedule))
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, MixScheduleCallback) and callback.mixer is None:
                callback.bind(mixer)
        self._reset_mix_stats()

    # ------------------------------------------------------------------ loss
    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, Tensor | None]:
        """The next `num_batches` micro-batches and the number of rows that count in them.

        The count is of rows (a label that is not `ignore_index`, or a label row; for dense labels, the labelled
        positions), summed over the accumulated micro-batches and, with `average_tokens_across_devices`, over the
        processes; `compute_loss` divides the summed row losses by it. A step's gradient is then that of the mean
        over every counted row of the step, however it is split into micro-batches and processes, when the mix leaves
        every counted row a target (see `_row_loss_sum` for the rows that lose theirs). (The parent's count would be
        of label *elements*, which for multi-label rows is rows x classes.) The count is copied to the device without
        blocking.
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
        """Rows (class ids not `ignore_index`, or label rows), or for dense labels positions, that count."""
        dense = is_dense(labels) and self.mixer.problem_type() in (None, "single_label_classification")
        if dense or (labels.dim() == 1 and not labels.is_floating_point()):
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
        if self.unlabeled is not None:  # MixText's step: labelled and unlabelled rows in one forward and one plan
            inputs, guessed = self.unlabeled.join(model, inputs)
        outputs = model(**inputs)
        plan = self.mixer.plan
        if plan is None:  # mixing off (config or schedule): the plain soft-target loss, label smoothing included
            plan = MixPlan.identity(_logits(outputs).shape[0], labels.device, site=self.mixer.config.site)
        if num_items_in_batch is None:
            count = self._counted_rows(labels).clamp_min(1)
        else:
            count = torch.as_tensor(num_items_in_batch, device=labels.device).clamp_min(1)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                # The count is global; DDP averages the gradients over processes, so undo that average.
                count = count / self.accelerator.num_processes
        if self.unlabeled is not None:
            loss = self._semi_supervised_loss(_logits(outputs), labels, guessed, plan, count)
            self.last_plan = plan
            self._record_plan(plan)
            return (loss, outputs) if return_outputs else loss
        loss = self._row_loss_sum(_logits(outputs), labels, plan) / count
        mixed_loss = loss
        if self.args.clean_loss_weight > 0:
            with self.mixer.paused():
                clean_outputs = model(**inputs)
            identity = MixPlan.identity(labels.shape[0], labels.device, site=self.mixer.config.site)
            clean_loss = self._row_loss_sum(_logits(clean_outputs), labels, identity) / count
            loss = loss + self.args.clean_loss_weight * clean_loss
            self._record_losses(mixed_loss, clean_loss)
        self.last_plan = plan
        self._record_plan(plan)
        return (loss, outputs) if return_outputs else loss

    def _semi_supervised_loss(self, logits: Tensor, labels: Tensor, guessed: Tensor, plan: MixPlan, count) -> Tensor:
        """The labelled rows' loss as `_row_loss_sum` weighs it, plus the weighted mean over this step's unlabelled
        rows (every micro-batch holds as many; DDP's average over processes makes it the mean over all)."""
        own, other = semi_supervised_loss(logits, labels, guessed, plan, config=self.mixer.config)
        weight = self.args.unlabeled_loss_weight * rampup(
            self.state.global_step, self.state.max_steps, self.args.unlabeled_rampup
        )
        own = own * self._counted_rows(labels) / count
        other = other / getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        self._record_losses(own, other)
        return own + weight * other

    def _row_loss_sum(self, logits: Tensor, labels: Tensor, plan: MixPlan) -> Tensor:
        """This micro-batch's share of the step's loss, before the division by the step's count: `mixer.loss` (the
        one loss path: the mean of the soft-target loss over the rows, or positions, that have a target after the
        mix) times the rows (positions) this micro-batch counts. A row or position whose partner's label is missing
        has no target; it is left out of the mean rather than counted as a zero, so the mixed loss keeps its scale.
        Over micro-batches and processes, the means are weighted by what each counts."""
        return self.mixer.loss(logits, labels, plan=plan) * self._counted_rows(labels)  # no sync to count rows

    # ------------------------------------------------------------------ logging
    def _reset_mix_stats(self) -> None:
        self._mix_lam_sum: Tensor | int = 0  # device tensor once a step ran: Σ λ over mixed samples
        self._mix_samples_mixed: Tensor | int = 0  # device tensor: number of mixed samples
        self._mix_samples = 0  # host counters: known without reading the device
        self._mix_batches = 0
        self._mix_batches_mixed = 0
        self._mix_layers = dict.fromkeys(self.mixer.layers, 0)
        self._mix_loss_parts: Tensor | int = 0  # device tensor: Σ (mixed loss, clean loss) over micro-batches

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

    def _record_losses(self, mixed: Tensor, clean: Tensor) -> None:
        self._mix_loss_parts = self._mix_loss_parts + torch.stack([mixed.detach(), clean.detach()]).double()

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
                *torch.as_tensor(self._mix_loss_parts, dtype=torch.float64, device=device).expand(2),
                *[torch.tensor(float(n), dtype=torch.float64, device=device) for n in self._mix_layers.values()],
            ]
        )
        if self.accelerator.num_processes > 1:
            values = self.accelerator.reduce(values, reduction="sum")
        # the one read of the device, at logging time
        lam_sum, samples_mixed, samples, batches, batches_mixed, loss_mixed, loss_clean, *layers = values.tolist()
        layer_ids = list(self._mix_layers)
        self._reset_mix_stats()
        stats = {}
        if batches and self._mixes:  # a run that never mixes logs no mixing statistics
            stats = {
                "mix/lam_mean": lam_sum / samples_mixed if samples_mixed else 1.0,
                "mix/batches_mixed": batches_mixed / batches,
                "mix/samples_mixed": samples_mixed / samples,
            }
            for layer, count in zip(layer_ids, layers):
                stats[f"mix/layer_{layer}"] = count / batches_mixed if batches_mixed else 0.0
        parts = ("mix/loss_labeled", "mix/loss_unlabeled") if self.unlabeled is not None else None
        if self.args.clean_loss_weight > 0:
            parts = ("mix/loss_mixed", "mix/loss_clean")
        if batches and parts:
            # per optimizer step and averaged over processes, as the parent's `loss` is
            steps = batches / self.accelerator.num_processes / self.args.gradient_accumulation_steps
            scale = 1.0 / (self.accelerator.num_processes * max(steps, 1e-12))
            stats.update({parts[0]: loss_mixed * scale, parts[1]: loss_clean * scale})
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
        state = self.mixer.state_dict()
        if self.unlabeled is not None:  # where this process's unlabelled stream and its views' stream stand
            state["unlabeled"] = self.unlabeled.state_dict()
        torch.save(state, os.path.join(folder, MIXER_STATE_NAME.format(rank=self._rank())))

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
        state = torch.load(path, weights_only=True)
        self.mixer.load_state_dict(state)
        if self.unlabeled is not None and "unlabeled" in state:
            self.unlabeled.load_state_dict(state["unlabeled"])
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
        if self.args.clean_loss_weight > 0:
            logger.warning(
                f"MixupTrainer: clean_loss_weight={self.args.clean_loss_weight} runs a second (clean) forward and "
                f"backward every step: {CLEAN_LOSS_COST}. Set clean_loss_weight=0 for one forward per step."
            )
        if not self.mixer.config.active:
            logger.warning(
                f"MixupTrainer: nothing is mixed in this run ({_why_no_mix(self.mixer.config)}); it trains as a plain "
                "Trainer with the soft-target loss."
            )
        return super().train(resume_from_checkpoint, *args, **kwargs)


def _why_no_mix(config: Any) -> str:
    if not config.enabled:
        return "enabled=False"
    if config.prob == 0:
        return "prob=0"
    return "mixup_alpha=0 and cutmix_alpha=0"


def _logits(outputs: Any) -> Tensor:
    logits = output_logits(outputs)
    if logits is None:
        raise ValueError(f"the model returned no logits; its outputs are {type(outputs).__name__}.")
    return logits
