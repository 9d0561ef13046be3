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
from typing import Any, NamedTuple

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
    eval_test_share: float = dataclasses.field(
        default=0.0,
        metadata={
            "help": "Share of the evaluation rows set apart as test rows: drawn once with a fixed seed, stratified by "
            "label, the same for every training seed; each evaluation is also scored on the development and the "
            "test rows apart (dev/..., test/...). 0: no split."
        },
    )
    eval_dedup: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Remove the evaluation rows whose text (lowercased, whitespace collapsed) occurs in the training "
            "split; results.json says how many (text data only)."
        },
    )
    save_predictions: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "Write predictions.npz beside results.json: each evaluation row's id, label, part (dev / test) "
            "and each run's class probabilities."
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
        if isinstance(self.eval_test_share, bool) or not 0 <= self.eval_test_share < 1:
            raise ValueError(
                f"eval_test_share={self.eval_test_share!r} is not allowed; allowed: a share in [0, 1) (0: no test "
                "rows)."
            )
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
    from hiddenmix.config import TRAINER_MIX_OPTIONS, UNLABELED_OPTIONS

    runs = {}
    if run.baseline or not args.enabled:  # plain fine-tuning: no mixing, no clean loss, no unlabelled rows
        runs["no-mix"] = replace_args(
            args, enabled=False, **TRAINER_MIX_OPTIONS, **UNLABELED_OPTIONS,
            output_dir=os.path.join(args.output_dir, "no-mix"),
        )  # fmt: skip
    if args.enabled:
        name = f"{args.site}-mix"
        runs[name] = replace_args(args, output_dir=os.path.join(args.output_dir, name))
    return runs


def first_model(build: Callable[[], Any], runs: dict, seed: int) -> Any:
    """The first run's model (what `build` returns), built now (after seeding, as every run's is), with the mixer of
    every run attached to it and removed again: a model that cannot load, or a mixing setting that cannot apply to it
    (`--layers 9` of a 6-layer model, CutMix after Swin's stages), is refused before any run starts or any folder is
    written. The other runs build theirs when they start, so the model is loaded once per run."""
    import torch

    from hiddenmix import HiddenMixer

    torch.manual_seed(seed)
    built = build()
    model = built[-1] if isinstance(built, tuple) else built  # `(tokenizer, model)` from the text scripts' builds
    for run_args in runs.values():
        HiddenMixer(model, run_args.mix_config()).remove()
    return built


def score_logits(
    logits: np.ndarray, labels: np.ndarray, temperature: float | None = None, *, n_bins: int = 15
) -> dict:
    """Accuracy, macro-F1, NLL and ECE of single-label logits (divided by `temperature` when given)."""
    from transformers import EvalPrediction

    from hiddenmix.metrics import classification_metrics

    scaled = logits if temperature is None else logits / temperature
    return classification_metrics(n_bins=n_bins)(EvalPrediction(predictions=scaled, label_ids=labels))


class EvalPredictions(NamedTuple):
    """One run's predictions on the evaluation rows, ordered by row id."""

    probs: np.ndarray  # [N, C] class probabilities
    labels: np.ndarray  # [N] class ids
    rows: np.ndarray  # [N] each row's id: its index in the evaluation split as loaded
    parts: np.ndarray  # [N] "dev" or "test" (with eval_test_share), else "all"


# the columns the evaluation rows carry for the confirmation protocol (read before scoring, never given to a model)
EVAL_COLUMNS = ("eval_row", "eval_part")


def _eval_column(part: Any, name: str) -> np.ndarray | None:
    """The column `name` of a dataset of evaluation rows (past any `with_transform`), or None where it has none."""
    if name not in getattr(part, "column_names", ()):
        return None
    return np.asarray(list(part.with_format(None)[name]))


# the metrics a run's line and table show, where the run has them
SHOWN = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("f1", "entity F1"), ("nll", "NLL"), ("ece", "ECE"))


def score_splits(
    data: dict, predict: Callable[[Any], tuple[np.ndarray, np.ndarray]], score: Callable[..., dict],
    temperature: float | None,
) -> tuple[dict[str, Any], EvalPredictions | None]:  # fmt: skip
    """The metrics of `predict(part) -> (logits, labels)` on `data["validation"]` and each of `data["shifts"]`
    (`shift/<spec>/...`), on all the rows and on the development and test parts apart (`dev/...`, `test/...`), with
    `nll_ts` / `ece_ts` after `temperature`, and the class probabilities of the evaluation rows, ordered by row id
    (None for logits that are not `[N, C]`)."""

    def scored(logits: np.ndarray, labels: np.ndarray) -> dict:
        scores = score(logits, labels)
        if temperature is not None:
            scaled = score(logits, labels, temperature)
            scores.update(nll_ts=scaled["nll"], ece_ts=scaled["ece"])
        return scores

    metrics: dict[str, Any] = {}
    curves = None
    for split, part in [
        ("", data["validation"]),
        *[(f"shift/{s}/", p) for s, p in (data.get("shifts") or {}).items()],
    ]:
        rows, parts = (_eval_column(part, name) for name in EVAL_COLUMNS)
        logits, labels = predict(part)
        metrics.update({f"{split}{k}": v for k, v in scored(logits, labels).items()})
        if parts is not None:
            for name in ("dev", "test"):
                keep = parts == name
                metrics.update({f"{name}/{split}{k}": v for k, v in scored(logits[keep], labels[keep]).items()})
        if not split and logits.ndim == 2:
            shifted = np.asarray(logits, dtype=np.float64)
            probs = np.exp(shifted - shifted.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            rows = np.arange(len(labels)) if rows is None else rows
            parts = np.full(len(labels), "all") if parts is None else parts
            order = np.argsort(rows, kind="stable")
            curves = EvalPredictions(probs[order], labels[order], rows[order], parts[order])
    if temperature is not None:
        metrics["temperature"] = temperature
    return metrics, curves


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
) -> tuple[dict, EvalPredictions | None]:
    """Train `model` with `args` and score it on `data["validation"]` (and on each of `data["shifts"]`).

    With `data["calibration"]`, a temperature is fitted on those held-out rows and every evaluation is scored again
    with it (`temperature`, `nll_ts`, `ece_ts`). Prints a line when the run starts and its result when it ends.

    Args:
        score: `score(logits, labels, temperature=None) -> metrics`; default: single-label classification
            (accuracy, macro-F1, NLL, ECE).

    Evaluation rows with an `eval_part` column (`run.eval_test_share`) are also scored on their development and
    their test rows apart: `dev/<metric>` and `test/<metric>` (`dev/shift/<spec>/...` for a shifted set), beside
    the metrics of all of them.

    Returns:
        The metrics (shifted sets under `shift/<spec>/...`, training seconds, the training loss curve) and, for
        single-label classification, the `EvalPredictions` of the evaluation set (None otherwise).
    """
    from hiddenmix import MixupTrainer
    from hiddenmix.metrics import classification_metrics, fit_temperature

    score = score or functools.partial(score_logits, n_bins=run.ece_bins)
    trainer_kwargs.setdefault("compute_metrics", classification_metrics(n_bins=run.ece_bins))
    config = args.mix_config()
    what = f"mixing at site={args.site!r}" if config.active else "no mixing"
    if args.enabled and not config.active:
        what += " (mixup_alpha and cutmix_alpha are 0, or prob is 0)"
    if trainer_kwargs.get("unlabeled_dataset") is not None:
        what += f", with {len(trainer_kwargs['unlabeled_dataset'])} unlabelled rows"
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

    def predicted(part: Any) -> tuple[np.ndarray, np.ndarray]:
        held = [c for c in EVAL_COLUMNS if c in getattr(part, "column_names", ())]
        prediction = trainer.predict(part.remove_columns(held) if held else part)
        return np.asarray(prediction.predictions), np.asarray(prediction.label_ids)

    metrics, curves = score_splits(data, predicted, score, temperature)
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


def save_predictions(path: str | os.PathLike, curves: dict[str, EvalPredictions]) -> None:
    """Write the runs' predictions on the same evaluation rows to a compressed `.npz`, whole or not at all.

    It holds `rows` (each row's id: its index in the evaluation split as loaded), `labels`, `parts` (`dev` / `test`,
    or `all` without a test share), `runs` (the run names) and `probs` (`[runs, rows, classes]`, float32).

    Raises:
        ValueError: the runs were scored on different rows.
    """
    first = next(iter(curves.values()))
    for name, c in curves.items():
        if not (np.array_equal(c.rows, first.rows) and np.array_equal(c.labels, first.labels)):
            raise ValueError(f"save_predictions: run {name!r} was scored on other evaluation rows than the first run.")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        np.savez_compressed(
            file,
            rows=first.rows.astype(np.int64),
            labels=first.labels.astype(np.int64),
            parts=first.parts.astype(str),
            runs=np.array(list(curves), dtype=str),
            probs=np.stack([c.probs for c in curves.values()]).astype(np.float32),
        )
    tmp.replace(path)


def write_results(out: Path, summary: dict, curves: dict, run: RunArguments, *, title: str) -> None:
    """Write `results.json` (and, for classification, `reliability.png` and, with `run.save_predictions`,
    `predictions.npz`, written first) in `out`, and print the table of the runs."""
    from hiddenmix.plots import reliability_diagram

    out.mkdir(parents=True, exist_ok=True)
    classified = bool(curves) and all(c is not None for c in curves.values())
    if classified and run.save_predictions:  # before results.json: a finished run always has its predictions
        save_predictions(out / "predictions.npz", curves)
    write_json(out / "results.json", summary)
    plotted = run.plot and classified
    if plotted:
        shown = {name: (c.probs, c.labels) for name, c in curves.items()}
        reliability_diagram(shown, out / "reliability.png", n_bins=run.ece_bins, title=title)
    columns = [(key, label) for key, label in SHOWN if all(key in m for m in summary["results"].values())]
    print(f"\n{'run':<18} " + " ".join(f"{label:>9}" for _, label in columns) + f" {'train s':>8}")
    for name, m in summary["results"].items():
        print(f"{name:<18} " + " ".join(f"{m[key]:>9.4f}" for key, _ in columns) + f" {m['train_seconds']:>8.1f}")
    written = [out / "predictions.npz"] if classified and run.save_predictions else []
    written += [out / "reliability.png"] if plotted else []
    print(f"\nwrote {out / 'results.json'}" + "".join(f" and {path}" for path in written))
    if run.recipe != "none":
        from hiddenmix import get_recipe

        recipe = get_recipe(run.recipe)
        if recipe.measured:  # what this one run cannot say: the effect over seeds, with its interval
            where = f"docs/experiments/{Path(recipe.grid).stem.replace('_', '-')}/report.md"
            print(
                f"\nThe {recipe.name!r} recipe over seeds, with intervals: docs/results.md ({where}, {recipe.setting})"
            )


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


def load_for_run(
    dataset: str, *, kind: str, columns: dict, run: RunArguments, num_classes: int | None, unlabeled: int | None = 0
) -> tuple:
    """`({"train", "validation", "calibration", "eval_protocol"}, label_names)` of `dataset` for this run: loaded
    and checked (`common.data.load_labelled_dataset`; the evaluation rows held out of a dataset without a validation
    split are the same for every seed), then cut, held out and flipped as `run` says (`common.data.prepare_splits`).

    The evaluation rows of a text or image dataset carry `eval_row`, their index in the evaluation split as loaded.
    With `run.eval_test_share` they also carry `eval_part` (`dev` or `test`), drawn on every evaluation row as loaded
    with a fixed seed (`common.data.eval_test_rows`), so that a test row stays one whatever `max_eval_samples`,
    `eval_dedup` or seed a run has; with `run.eval_dedup`, the rows whose text occurs in the training split are
    removed (`common.data.drop_train_overlap`) before `max_eval_samples` are kept. `eval_protocol` (for
    `results.json`) records both.

    With `unlabeled` (a number of rows, or None for all), the splits also hold `unlabeled`: that many rows of the
    training split that are neither training nor calibration rows of this run, drawn with the split seed, their
    labels dropped (`common.data.unlabeled_rows`); the rows whose text occurs among the evaluation rows are removed.

    Raises:
        InputError: `num_classes` given and not the number of training labels, a test share that leaves a part
            without rows, `eval_dedup` on data without text, or what the functions above raise.
    """
    from .data import EVAL_PART_SEED, drop_train_overlap, eval_test_rows, load_labelled_dataset, prepare_splits

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
    validation = data["validation"]
    loaded = len(validation)
    if kind != "tokens":
        validation = validation.add_column("eval_row", list(range(loaded)))
    if run.eval_test_share > 0:
        test = eval_test_rows(validation["labels"], run.eval_test_share, stratify=kind != "tokens")
        validation = validation.add_column("eval_part", np.where(test, "test", "dev").tolist())
    removed = None
    if run.eval_dedup:
        validation, removed = drop_train_overlap(data["train"], validation)
    pool = data["train"]
    if unlabeled != 0:  # which rows this run trains on, to draw the unlabelled ones from the rest
        data["train"] = pool.add_column("pool_row", list(range(len(pool))))
    splits = prepare_splits(
        {"train": data["train"], "validation": validation},
        seed=run.split_seed,
        num_labels=len(label_names),
        calibration_size=run.calibration_size,
        train_samples_per_class=run.train_samples_per_class,
        max_train_samples=run.max_train_samples,
        max_eval_samples=run.max_eval_samples,
        label_noise=run.label_noise,
        classes=kind != "tokens",
    )
    protocol: dict[str, Any] = {"eval_rows_loaded": loaded, "eval_dedup": run.eval_dedup}
    if removed is not None:
        protocol["train_overlap_removed"] = removed
    if run.eval_test_share > 0:
        parts = np.asarray(splits["validation"]["eval_part"])
        counts = {name: int((parts == name).sum()) for name in ("dev", "test")}
        empty = [name for name, n in counts.items() if n == 0]
        if empty:
            raise InputError(
                f"eval_test_share={run.eval_test_share} leaves no {empty[0]} row among the {len(parts)} evaluation "
                "rows; allowed: a share that leaves both the development and the test part a row (or more "
                "evaluation rows)."
            )
        protocol.update(
            eval_test_share=run.eval_test_share,
            eval_part_seed=EVAL_PART_SEED,
            dev_rows=counts["dev"],
            test_rows=counts["test"],
        )
    if unlabeled != 0:
        from .data import drop_overlap, unlabeled_rows

        used = [row for key in ("train", "calibration") if splits[key] is not None for row in splits[key]["pool_row"]]
        for key in ("train", "calibration"):
            if splits[key] is not None:
                splits[key] = splits[key].remove_columns("pool_row")
        rows = unlabeled_rows(pool, used, unlabeled, run.split_seed, columns=("text", "text_pair"))
        splits["unlabeled"], removed = drop_overlap(rows, splits["validation"])
        protocol.update(unlabeled_rows=len(splits["unlabeled"]), unlabeled_eval_overlap_removed=removed)
    splits["eval_protocol"] = protocol
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
