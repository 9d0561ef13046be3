"""What the training scripts share: `--config file.yaml` under the command line, a guarded output folder, the
reliability diagram, and a clean end to multi-process runs."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# MixConfig options whose names TrainingArguments already takes get a `mix_` prefix on the command line
_RENAMED = {"seed": "mix_seed"}


def _mix_arguments_class() -> type:
    """A dataclass with every field of `MixConfig` (renamed where `TrainingArguments` has the name), so one
    `HfArgumentParser` takes both; `to_mix_config` turns it back into a validated `MixConfig`."""
    from .config import MixConfig

    hints = typing.get_type_hints(MixConfig)
    fields = [
        (_RENAMED.get(f.name, f.name), hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata))
        for f in dataclasses.fields(MixConfig)
    ]
    return dataclasses.make_dataclass("MixArguments", fields)


MixArguments = _mix_arguments_class()


def to_mix_config(arguments: Any):
    """The `MixConfig` of parsed `MixArguments` (validated: a bad value names the field)."""
    from .config import MixConfig

    inverse = {v: k for k, v in _RENAMED.items()}
    return MixConfig(
        **{inverse.get(f.name, f.name): getattr(arguments, f.name) for f in dataclasses.fields(arguments)}
    )


def parse_args(
    dataclass_types: Sequence[type], args: Sequence[str] | None = None, *, defaults: dict[str, Any] | None = None
) -> tuple:
    """`HfArgumentParser` over `dataclass_types`, with `--config FILE.yaml` whose values the command line overrides.

    Precedence, lowest first: the dataclasses' own defaults, `defaults` (a script's own choices), the recipe (when a
    dataclass has a `recipe` field: `--recipe NAME`, else the YAML file's, else `defaults`'; `none` for none), the
    YAML file, the command line. (A script's defaults given as command-line items instead would silently beat the
    YAML file.)

    Raises:
        ValueError: the YAML file (or `defaults`) names a key that no dataclass has (the message lists the known
            keys).
    """
    import yaml
    from transformers import HfArgumentParser

    args = list(sys.argv[1:] if args is None else args)
    config_file = None
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise ValueError("--config needs a YAML file path.")
        config_file = args[i + 1]
        del args[i : i + 2]
    parser = HfArgumentParser(dataclass_types)
    known = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype)}
    if defaults:
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(f"parse_args(defaults=...): unknown key(s) {unknown}. Known keys: {sorted(known)}.")
        parser.set_defaults(**defaults)
    values: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config {config_file}: the file must hold a mapping of option: value.")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config {config_file}: unknown key(s) {unknown}. Known keys: {sorted(known)}.")
    if "recipe" in known:
        recipe = _option_value(args, "--recipe") or values.get("recipe") or (defaults or {}).get("recipe")
        if recipe not in (None, "none"):
            from .recipes import get_recipe

            options = get_recipe(recipe).options()
            unknown = sorted(set(options) - known)
            if unknown:
                raise ValueError(f"recipe {recipe!r} sets option(s) {unknown} that this script does not take.")
            parser.set_defaults(**options)
    parser.set_defaults(**values)
    parsed, extra = parser.parse_known_args(args)
    if extra:
        raise ValueError(f"unknown command-line argument(s) {extra}; see --help.")
    return tuple(dtype(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(dtype) if f.init})
                 for dtype in dataclass_types)  # fmt: skip


def _option_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in `args` (`--flag value` or `--flag=value`; the last one wins), or None."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag:
            if i + 1 >= len(args):
                raise ValueError(f"{flag} needs a value.")
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def check_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an output folder that already holds files, unless `overwrite`. Nothing is written here."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir={str(path)!r} exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ValueError(
            f"output_dir={str(path)!r} already holds another run ({sorted(p.name for p in path.iterdir())[:5]}); "
            "choose another folder or pass --overwrite_output_dir true."
        )
    return path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON whole or not at all (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def reliability_diagram(
    runs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *, n_bins: int = 15, title: str = ""
) -> None:
    """Save a reliability diagram comparing runs: accuracy against confidence in equal-width bins.

    Args:
        runs: `{name: (probabilities [N, C], labels [N])}`.
        path: the PNG to write.
        n_bins: number of confidence bins (as in the ECE).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.2), squeeze=False)
    edges = np.linspace(0, 1, n_bins + 1)
    for ax, (name, (probs, labels)) in zip(axes[0], runs.items()):
        confidence = probs.max(-1)
        correct = probs.argmax(-1) == labels
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        acc = np.array([correct[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)])
        conf = np.array([confidence[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)])
        weight = np.bincount(bins, minlength=n_bins) / len(labels)
        ece = float(np.nansum(weight * np.abs(acc - conf)))
        centers = (edges[:-1] + edges[1:]) / 2
        ax.bar(centers, np.nan_to_num(acc), width=1 / n_bins, edgecolor="black", alpha=0.7, label="accuracy")
        ax.bar(centers, np.nan_to_num(conf - acc), bottom=np.nan_to_num(acc), width=1 / n_bins, color="red",
               alpha=0.25, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
               title=f"{name}\nacc {correct.mean():.3f}  ECE {ece:.3f}")  # fmt: skip
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


# ------------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass
class RunArguments:
    """The options every training script shares: which runs, how they are scored, what is written."""

    recipe: str = dataclasses.field(
        default="none",
        metadata={"help": "A named recipe (hiddenmix.RECIPES) whose options the YAML file and the command line "
                  "override; 'none' for none."},
    )  # fmt: skip
    baseline: bool = dataclasses.field(default=True, metadata={"help": "Also train a no-mix baseline the same way."})
    overwrite_output_dir: bool = dataclasses.field(
        default=False, metadata={"help": "Allow an output folder that holds files."}
    )
    ece_bins: int = dataclasses.field(default=15, metadata={"help": "Confidence bins of the ECE and the diagram."})
    clean_loss_weight: float = dataclasses.field(
        default=0.0, metadata={"help": "RegMixup: weight of a clean forward's loss added to the mixed loss."}
    )
    mix_off_for_last: float = dataclasses.field(
        default=0.0, metadata={"help": "Share of training steps, at the end, without mixing."}
    )
    calibration_size: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Share of the training rows held out to fit a temperature; adds nll_ts / ece_ts."},
    )
    split_seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the data subsets and held-out splits."})
    plot: bool = dataclasses.field(default=True, metadata={"help": "Write reliability.png."})
    save_model: bool = dataclasses.field(
        default=False, metadata={"help": "Save the final model(s) under output_dir/<run>."}
    )

    def __post_init__(self) -> None:
        from .recipes import RECIPES

        if self.recipe != "none" and self.recipe not in RECIPES:
            raise ValueError(f"recipe={self.recipe!r} is not allowed; choose 'none' or one of {sorted(RECIPES)}.")
        if isinstance(self.ece_bins, bool) or not isinstance(self.ece_bins, int) or self.ece_bins < 1:
            raise ValueError(f"ece_bins={self.ece_bins!r} must be an integer >= 1.")
        if not 0 <= self.calibration_size < 1:
            raise ValueError(f"calibration_size={self.calibration_size!r} must be in [0, 1).")
        if not 0 <= self.mix_off_for_last <= 1:
            raise ValueError(f"mix_off_for_last={self.mix_off_for_last!r} must be in [0, 1].")
        if self.clean_loss_weight < 0:
            raise ValueError(f"clean_loss_weight={self.clean_loss_weight!r} must be >= 0 (0 turns it off).")


def replace_training(training: Any, **changes: Any) -> Any:
    """A copy of `TrainingArguments` with `changes` (rebuilt from its init fields, as `to_dict()` flattens some)."""
    kwargs = {f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.init}
    return training.__class__(**{**kwargs, **changes})


def planned_runs(method: str, mix: Any, run: RunArguments) -> dict:
    """`{run name: MixConfig}`: the no-mix baseline (if asked, or if the method is `none`) and the mixed run."""
    runs = {}
    if run.baseline or method == "none":
        # the baseline's mixer sits where the mixed run's does, so both attach to the same places
        runs["no-mix"] = mix.replace(enabled=False, site=method if method != "none" else mix.site)
    if method != "none":
        runs[f"{method}-mixup"] = mix.replace(site=method, enabled=True)
    return runs


def hold_out_calibration(train: Any, run: RunArguments) -> tuple[Any, Any | None]:
    """Split `run.calibration_size` of the training rows off to fit a temperature on (None when 0)."""
    if run.calibration_size <= 0:
        return train, None
    split = train.train_test_split(test_size=run.calibration_size, seed=run.split_seed)
    return split["train"], split["test"]


def train_and_score(
    name: str, *, model: Any, mix: Any, training: Any, data: dict, run: RunArguments, **trainer_kwargs: Any
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Train `model` with `mix` under `output_dir/<name>` and score it on `data["validation"]`.

    With `data["calibration"]`, a temperature is fitted on those held-out training rows and the evaluation scored
    again with it (`temperature`, `nll_ts`, `ece_ts`).

    Returns:
        The metrics (accuracy, macro-F1, NLL, ECE, training seconds, ...) and `(probabilities, labels)`.
    """
    import time

    import torch
    from transformers import EvalPrediction

    from .metrics import classification_metrics, fit_temperature
    from .trainer import MixScheduleCallback, MixupTrainer

    args = replace_training(training, output_dir=os.path.join(training.output_dir, name))
    score = classification_metrics(n_bins=run.ece_bins)
    callbacks = [MixScheduleCallback(off_for_last=run.mix_off_for_last)] if run.mix_off_for_last else None
    trainer = MixupTrainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        mix_config=mix,
        compute_metrics=score,
        clean_loss_weight=run.clean_loss_weight if mix.enabled else 0.0,
        callbacks=callbacks,
        **trainer_kwargs,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    prediction = trainer.predict(data["validation"])
    logits, labels = prediction.predictions, prediction.label_ids
    metrics = score(EvalPrediction(predictions=logits, label_ids=labels))
    if data.get("calibration") is not None:  # fitted on held-out training rows, applied to the evaluation logits
        held_out = trainer.predict(data["calibration"])
        temperature = fit_temperature(held_out.predictions, held_out.label_ids)
        scaled = score(EvalPrediction(predictions=logits / temperature, label_ids=labels))
        metrics.update(temperature=temperature, nll_ts=scaled["nll"], ece_ts=scaled["ece"])
    if run.save_model and trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)
    trainer.mixer.remove()
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()
    return {**metrics, "train_seconds": seconds}, (probs, np.asarray(labels))


def write_results(out: Path, summary: dict, curves: dict, run: RunArguments, *, title: str) -> None:
    """Write `results.json` (and `reliability.png`) in `out`, and print the table of the runs."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", summary)
    if run.plot:
        reliability_diagram(curves, out / "reliability.png", n_bins=run.ece_bins, title=title)
    print(f"\n{'run':<18} {'accuracy':>8} {'macro-F1':>8} {'NLL':>7} {'ECE':>7} {'train s':>8}")
    for name, m in summary["results"].items():
        print(f"{name:<18} {m['accuracy']:>8.4f} {m['macro_f1']:>8.4f} {m['nll']:>7.4f} {m['ece']:>7.4f} "
              f"{m['train_seconds']:>8.1f}")  # fmt: skip
    print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'reliability.png'}" if run.plot else ""))
