"""Runs of the training scripts: a no-mix baseline and a mixed run trained the same way, scored the same way
(accuracy, macro-F1, NLL, ECE; after temperature scaling; on shifted evaluation sets), printed as they end and
written to `results.json` with a reliability diagram."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cli import InputError, write_json


@dataclasses.dataclass
class RunArguments:
    """What every training script shares: which runs, on which rows, how they are scored, what is written."""

    recipe: str = dataclasses.field(
        default="none",
        metadata={
            "help": "A named recipe (hiddenmix.RECIPES) that sets mixing options; --config and the command line "
            "override its values. 'none' for none."
        },
    )
    baseline: bool = dataclasses.field(
        default=True, metadata={"help": "Train a no-mix baseline the same way as the mixed run, and compare."}
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False, metadata={"help": "Allow an output folder that already holds files."}
    )
    validation_split: str | None = dataclasses.field(
        default=None, metadata={"help": "Evaluation split; unset: 'validation', else 'test', else held out."}
    )
    validation_size: float = dataclasses.field(
        default=0.2, metadata={"help": "Share held out when there is no evaluation split."}
    )
    split_seed: int = dataclasses.field(
        default=0,
        metadata={
            "help": "Seed of the training subsets, the flipped labels and the calibration rows (the evaluation rows "
            "are the same for every seed)."
        },
    )
    train_samples_per_class: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep this many training rows of each class (seeded); all when unset."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep this many training rows (seeded, random); all when unset."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep this many evaluation rows (the same for every seed); all when unset."}
    )
    label_noise: float = dataclasses.field(
        default=0.0, metadata={"help": "Share of training labels flipped to another class (evaluation stays clean)."}
    )
    calibration_size: float = dataclasses.field(
        default=0.0,
        metadata={
            "help": "Rows held out of the training split to fit a temperature on (a share if < 1, a count if >= 1); "
            "adds nll_ts / ece_ts."
        },
    )
    eval_shifts: list[str] | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Also evaluate on shifted copies of the evaluation set: typos:RATE (text), noise:SIGMA or "
            "occlude:AREA (images)."
        },
    )
    ece_bins: int = dataclasses.field(default=15, metadata={"help": "Confidence bins of the ECE and the diagram."})
    plot: bool = dataclasses.field(default=True, metadata={"help": "Write reliability.png."})
    save_model: bool = dataclasses.field(
        default=False, metadata={"help": "Save the final model(s) under output_dir/<run>."}
    )

    def __post_init__(self) -> None:
        from hiddenmix import RECIPES

        if self.recipe != "none" and self.recipe not in RECIPES:
            raise ValueError(f"recipe={self.recipe!r} is not allowed; choose 'none' or one of {sorted(RECIPES)}.")
        if isinstance(self.ece_bins, bool) or not isinstance(self.ece_bins, int) or self.ece_bins < 1:
            raise ValueError(f"ece_bins={self.ece_bins!r} is not allowed; allowed: an integer >= 1.")
        if self.calibration_size < 0 or (
            self.calibration_size >= 1 and self.calibration_size != int(self.calibration_size)
        ):
            raise ValueError(
                f"calibration_size={self.calibration_size!r} is not allowed; allowed: a share in [0, 1) or "
                "a whole number of rows."
            )
        if not 0 <= self.label_noise < 1:
            raise ValueError(f"label_noise={self.label_noise!r} is not allowed; allowed: a share in [0, 1).")
        for name in ("train_samples_per_class", "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: unset or an integer >= 1.")


def parse_training(
    script_type: type, argv: list[str], *, defaults: dict, description: str | None, prog: str
) -> tuple[Any, RunArguments, Any]:
    """`(script, run, MixupTrainingArguments)` of a training script's `argv` (see `common.cli.parse_args`), on the
    CPU where torch sees no GPU (gloo when launched as several processes)."""
    import torch

    from hiddenmix import MixupTrainingArguments

    from .cli import parse_args

    script, run, args = parse_args(
        (script_type, RunArguments, MixupTrainingArguments),
        argv,
        defaults=defaults,
        description=description,
        prog=prog,
    )
    if not torch.cuda.is_available() and not args.use_cpu:
        args = replace_args(args, use_cpu=True)
    return script, run, args


def replace_args(args: Any, **changes: Any) -> Any:
    """A copy of (`Mixup`)`TrainingArguments` with `changes`, rebuilt from its init fields and checked again."""
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return args.__class__(**{**kwargs, **changes})


def planned_runs(args: Any, run: RunArguments) -> dict[str, Any]:
    """`{run name: MixupTrainingArguments}`: the no-mix baseline (with `run.baseline`, or when mixing is off) and the
    mixed run (when `args.enabled`), each with its own folder under `output_dir`. The baseline's mixer sits where the
    mixed run's does (only `enabled` and the trainer's mixing options differ), so both attach to the same places."""
    from hiddenmix.config import TRAINER_MIX_OPTIONS

    runs = {}
    if run.baseline or not args.enabled:
        runs["no-mix"] = replace_args(
            args, enabled=False, **TRAINER_MIX_OPTIONS, output_dir=os.path.join(args.output_dir, "no-mix")
        )
    if args.enabled:
        name = f"{args.site}-mix"
        runs[name] = replace_args(args, output_dir=os.path.join(args.output_dir, name))
    return runs


def score_logits(
    logits: np.ndarray, labels: np.ndarray, temperature: float | None = None, *, n_bins: int = 15
) -> dict:
    """Accuracy, macro-F1, NLL and ECE of single-label logits (divided by `temperature` when given)."""
    from transformers import EvalPrediction

    from hiddenmix.metrics import classification_metrics

    scaled = logits if temperature is None else logits / temperature
    return classification_metrics(n_bins=n_bins)(EvalPrediction(predictions=scaled, label_ids=labels))


# the metrics a run's line and table show, where the run has them
SHOWN = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("f1", "entity F1"), ("nll", "NLL"), ("ece", "ECE"))


def train_and_score(
    name: str,
    *,
    model: Any,
    args: Any,
    data: dict,
    run: RunArguments,
    position: str = "",
    score: Callable[..., dict] | None = None,
    **trainer_kwargs: Any,
) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """Train `model` with `args` and score it on `data["validation"]` (and on each of `data["shifts"]`).

    With `data["calibration"]`, a temperature is fitted on those held-out rows and every evaluation is scored again
    with it (`temperature`, `nll_ts`, `ece_ts`). Prints a line when the run starts and its result when it ends.

    Args:
        score: `score(logits, labels, temperature=None) -> metrics`; default: single-label classification
            (accuracy, macro-F1, NLL, ECE).

    Returns:
        The metrics (shifted sets under `shift/<spec>/...`, training seconds, the training loss curve) and, for
        single-label classification, `(probabilities, labels)` of the evaluation set (None otherwise).
    """
    import torch

    from hiddenmix import MixupTrainer
    from hiddenmix.metrics import classification_metrics, fit_temperature

    score = score or functools.partial(score_logits, n_bins=run.ece_bins)
    trainer_kwargs.setdefault("compute_metrics", classification_metrics(n_bins=run.ece_bins))
    what = "no mixing" if not args.enabled else f"mixing at site={args.site!r}"
    print(f"[{position}] {name}: training with {what} ...", flush=True)
    trainer = MixupTrainer(
        model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"], **trainer_kwargs
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    temperature = None
    if data.get("calibration") is not None:  # fitted on held-out training rows, applied to the evaluation logits
        held_out = trainer.predict(data["calibration"])
        temperature = fit_temperature(held_out.predictions, held_out.label_ids)
    metrics: dict[str, Any] = {}
    curves = None
    for split, part in [
        ("", data["validation"]),
        *[(f"shift/{s}/", p) for s, p in (data.get("shifts") or {}).items()],
    ]:
        prediction = trainer.predict(part)
        logits, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
        scores = score(logits, labels)
        if temperature is not None:
            scaled = score(logits, labels, temperature)
            scores.update(nll_ts=scaled["nll"], ece_ts=scaled["ece"])
        metrics.update({f"{split}{k}": v for k, v in scores.items()})
        if not split and logits.ndim == 2:
            probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()
            curves = (probs, labels)
    if temperature is not None:
        metrics["temperature"] = temperature
    metrics["train_seconds"] = seconds
    metrics["train_loss_curve"] = [
        {"step": e["step"], "loss": e["loss"], **{k: v for k, v in e.items() if k.startswith("mix/loss")}}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    if run.save_model and trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)
    trainer.mixer.remove()
    shown = "  ".join(f"{label} {metrics[key]:.4f}" for key, label in SHOWN if key in metrics)
    shifts = "".join(f"  {s}: acc {metrics[f'shift/{s}/accuracy']:.4f}" for s in data.get("shifts") or {})
    print(f"[{position}] {name}: {shown}{shifts}  ({seconds:.0f} s)", flush=True)
    return metrics, curves


def write_results(out: Path, summary: dict, curves: dict, run: RunArguments, *, title: str) -> None:
    """Write `results.json` (and, for classification, `reliability.png`) in `out`, and print the table of the runs."""
    from hiddenmix.plots import reliability_diagram

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", summary)
    plotted = run.plot and all(c is not None for c in curves.values())
    if plotted:
        reliability_diagram(curves, out / "reliability.png", n_bins=run.ece_bins, title=title)
    columns = [(key, label) for key, label in SHOWN if all(key in m for m in summary["results"].values())]
    print(f"\n{'run':<18} " + " ".join(f"{label:>9}" for _, label in columns) + f" {'train s':>8}")
    for name, m in summary["results"].items():
        print(f"{name:<18} " + " ".join(f"{m[key]:>9.4f}" for key, _ in columns) + f" {m['train_seconds']:>8.1f}")
    print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'reliability.png'}" if plotted else ""))
    if run.recipe != "none":
        from hiddenmix import get_recipe

        recipe = get_recipe(run.recipe)
        if recipe.measured:  # what this one run cannot say: the effect over seeds, with its interval
            print(f"\nThe {recipe.name!r} recipe ({recipe.use}), measured: {recipe.measured}")


def run_summary(
    script: str,
    given: list[str],
    *,
    model: str,
    dataset: str,
    labels: list[str],
    data: dict,
    run: RunArguments,
    runs: dict,
    results: dict,
    **extra: Any,
) -> dict:
    """What `results.json` holds: the setting of the runs, the versions, each run's metrics, the command."""
    from hiddenmix.config import TRAINER_MIX_OPTIONS

    mixed = runs[list(runs)[-1]]
    return {
        "model": model,
        "dataset": dataset,
        "labels": labels,
        "train_rows": len(data["train"]),
        "eval_rows": len(data["validation"]),
        **extra,
        "run": dataclasses.asdict(run),
        "mix_config": dataclasses.asdict(mixed.mix_config()),
        "trainer_mixing": {k: getattr(mixed, k) for k in TRAINER_MIX_OPTIONS},
        "training": {
            k: getattr(mixed, k)
            for k in (
                "num_train_epochs",
                "max_steps",
                "learning_rate",
                "per_device_train_batch_size",
                "world_size",
                "seed",
            )
        },
        "versions": versions(),
        "results": results,
        "command": " ".join(["python", script, *given]),
    }


def versions() -> dict[str, str]:
    """The versions a run's figures hold for."""
    import torch
    import transformers

    import hiddenmix

    return {"torch": torch.__version__, "transformers": transformers.__version__, "hiddenmix": hiddenmix.__version__}


def load_for_run(dataset: str, *, kind: str, columns: dict, run: RunArguments, num_classes: int | None) -> tuple:
    """`({"train", "validation", "calibration"}, label_names)` of `dataset` for this run: loaded and checked
    (`common.data.load_labelled_dataset`; the evaluation rows held out of a dataset without a validation split are
    the same for every seed), then cut, held out and flipped as `run` says (`common.data.prepare_splits`).

    Raises:
        InputError: `num_classes` given and not the number of training labels, or what the two functions raise.
    """
    from .data import load_labelled_dataset, prepare_splits

    data, label_names = load_labelled_dataset(
        dataset,
        kind=kind,
        columns=columns,
        validation_split=run.validation_split,
        validation_size=run.validation_size,
        seed=0,
    )
    if num_classes is not None and num_classes != len(label_names):
        raise InputError(
            f"num_classes={num_classes} but the training split has {len(label_names)} labels "
            f"{label_names}; leave num_classes unset or give that number."
        )
    splits = prepare_splits(
        data,
        seed=run.split_seed,
        num_labels=len(label_names),
        calibration_size=run.calibration_size,
        train_samples_per_class=run.train_samples_per_class,
        max_train_samples=run.max_train_samples,
        max_eval_samples=run.max_eval_samples,
        label_noise=run.label_noise,
        classes=kind != "tokens",
    )
    return splits, label_names


def finish_distributed() -> None:
    """End a multi-process run without the gloo abort at interpreter exit.

    With torch's CPU (gloo) backend a process sometimes aborts *after* training, during interpreter shutdown
    (`terminate called without an active exception`), when C++ destructors race gloo's threads. Everything is done
    and written by then, so each process syncs, tears the process group down, flushes and leaves with
    `os._exit(0)`, skipping the shutdown where the abort happens. Failures before this point still raise.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
