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

    Precedence, lowest first: the dataclasses' own defaults, `defaults` (a script's own choices), the YAML file, the
    command line. (A script's defaults given as command-line items instead would silently beat the YAML file.)

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
    if config_file is not None:
        with open(config_file, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config {config_file}: the file must hold a mapping of option: value.")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config {config_file}: unknown key(s) {unknown}. Known keys: {sorted(known)}.")
        parser.set_defaults(**values)
    parsed, extra = parser.parse_known_args(args)
    if extra:
        raise ValueError(f"unknown command-line argument(s) {extra}; see --help.")
    return tuple(dtype(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(dtype) if f.init})
                 for dtype in dataclass_types)  # fmt: skip


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
