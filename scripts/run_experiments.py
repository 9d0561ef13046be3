"""Train a grid of mixing settings against a no-mix baseline, over seeds and datasets, and report paired results.

    python scripts/run_experiments.py --grid configs/experiments/regimes.yaml             # runs what is missing
    python scripts/run_experiments.py --grid configs/experiments/regimes.yaml --shard 0/2 # half of it (2 processes)
    python scripts/run_experiments.py --grid configs/experiments/regimes.yaml --report    # only the report, figures

Every run is the grid's `script` (default `scripts/train_text_classifier.py`; `scripts/train_vit.py` for images) in a
subprocess with the grid's options and its own output folder; a run whose `results.json` exists is skipped, so a grid
resumes where it stopped and may span several sittings, and `--shard K/N` splits it between N processes. Every
setting and the baseline of a seed share the data subsets, the initial head, the data order and the seeds; only the
mixing differs. The report (printed and written as `report.md` in the grid's folder) gives, per dataset and setting,
mean ± std over seeds, and the paired differences to the baseline of the same seed with their 95 % t-interval; a
grid with `axes:` also gets one figure per axis (`<axis>.png`): the paired differences against the axis, with
their intervals.

A setting may run another script on the same datasets, seeds and data options: `setfit: {script: setfit, python:
/path/to/venv/bin/python}` runs scripts/train_setfit.py, the SetFit baseline (`python:`, optional, names an
interpreter that has setfit; `~` and `$VAR` are expanded). Its runs get the grid's options less the fine-tuning ones
(learning rate, steps, mixing), so they draw the same training subsets and score the same evaluation rows as the
text runs, and the report pairs them with the no-mix run of the same seed like any setting.

The confirmation protocol: unless a grid says `confirmation: false`, its runs set apart half of the evaluation rows
as test rows (`--eval_test_share 0.5`: the same rows for every seed and setting) and, for text, drop the evaluation
rows whose text occurs in the training split (`--eval_dedup true`); `confirmation: {eval_test_share: ...,
eval_dedup: ...}` sets other values. Every run writes its predictions (`predictions.npz`). The report's tables and
figures then score the development rows only, and one more table per dataset confirms each setting on the test
rows: a paired bootstrap over seeds and test rows (`paired_bootstrap`). The grids measured before the protocol say
`confirmation: false`, so that they resume and report as they were made. A grid that chooses settings says
`report_test: false`: its test rows are set apart as in every new grid, and its report never scores them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "no-mix"
# the confirmation protocol's options for the runs of a grid's script (a grid without `confirmation:` gets them)
CONFIRMATION = {
    "train_text_classifier.py": {"eval_test_share": 0.5, "eval_dedup": True},
    "train_vit.py": {"eval_test_share": 0.5},  # images have no text to match against the training rows
}
# a setting's `script:`: another training script run on the grid's datasets, seeds and data options, beside the
# grid's own (`setfit: {script: setfit}`); a setting's `python:` is the interpreter of its runs (one that has
# the script's extra dependencies), the runner's own when unset
SETTING_SCRIPTS = {"setfit": "scripts/train_setfit.py"}
RUNNER_KEYS = ("script", "python")  # a setting's keys that are the runner's, not options of the script


def load_grid(path: str) -> dict:
    grid = yaml.safe_load(Path(path).read_text())
    for key in ("output_dir", "seeds", "datasets", "settings"):
        if key not in grid:
            raise ValueError(f"grid {path}: missing key {key!r}; a grid has output_dir, seeds, datasets, settings.")
    if BASELINE not in grid["settings"]:
        raise ValueError(f"grid {path}: settings must include the baseline {BASELINE!r} (enabled: false).")
    for name, spec in grid["datasets"].items():
        subset = spec.get("settings")
        if subset is None:
            continue
        unknown = [s for s in subset if s not in grid["settings"]]
        if unknown or BASELINE not in subset:
            raise ValueError(
                f"grid {path}: datasets.{name}.settings={subset!r} must list the baseline {BASELINE!r} "
                f"and settings of the grid only ({', '.join(grid['settings'])})."
            )
    grid.setdefault("script", "scripts/train_text_classifier.py")
    if not (ROOT / grid["script"]).is_file():
        raise ValueError(f"grid {path}: script={grid['script']!r} is not a file under {ROOT}.")
    for name, spec in grid["settings"].items():
        script, python = (spec or {}).get("script"), (spec or {}).get("python")
        if script is not None and (name == BASELINE or script not in SETTING_SCRIPTS):
            raise ValueError(
                f"grid {path}: settings.{name}.script={script!r} is not allowed; allowed: "
                f"{' / '.join(SETTING_SCRIPTS)} in a setting other than the baseline {BASELINE!r} (the grid's "
                f"script, {grid['script']}, runs the others)."
            )
        if python is not None and not (isinstance(python, str) and python.strip()):
            raise ValueError(f"grid {path}: settings.{name}.python={python!r} is not allowed; allowed: a path.")
    report_test = grid.setdefault("report_test", True)
    if not isinstance(report_test, bool):
        raise ValueError(
            f"grid {path}: report_test={report_test!r} is not allowed; allowed: true (the report confirms each "
            "setting on the test rows) or false (a grid that chooses settings: the test rows are never scored)."
        )
    confirmation = grid.setdefault("confirmation", True)
    allowed = ("eval_test_share", "eval_dedup")
    if not isinstance(confirmation, bool) and not (
        isinstance(confirmation, dict) and confirmation and set(confirmation) <= set(allowed)
    ):
        raise ValueError(
            f"grid {path}: confirmation={confirmation!r} is not allowed; allowed: true (the default: "
            f"{protocol_options(grid['script'], True) or 'nothing for this script'}), false, or a mapping of "
            f"{' / '.join(allowed)}."
        )
    return grid


def protocol_options(script: str, confirmation: bool | dict) -> dict:
    """The run options of a grid's `confirmation:` for its `script`: `CONFIRMATION`'s (true), none (false), or
    those the mapping gives on top of `CONFIRMATION`'s."""
    if confirmation is False:
        return {}
    defaults = dict(CONFIRMATION.get(Path(script).name, {}))
    return defaults if confirmation is True else {**defaults, **confirmation}


def run_options(grid: dict, dataset: str, setting: str | None = None) -> dict:
    """The script options of a run: the confirmation protocol's, then the grid's `common`, the dataset entry's and
    the setting's (each overriding the ones before)."""
    protocol = protocol_options(grid.get("script", "scripts/train_text_classifier.py"), grid.get("confirmation", True))
    setting_options = grid["settings"][setting] if setting is not None else {}
    setting_options = {k: v for k, v in setting_options.items() if k not in RUNNER_KEYS}
    return {**protocol, **grid.get("common", {}), **dataset_options(grid, dataset), **setting_options}


def setting_command(grid: dict, setting: str, python: str) -> tuple[str, str]:
    """`(interpreter, script)` of a setting's runs: its `python:` (`~` and `$VAR` expanded), else `python`; the
    script of its `script:`, else the grid's."""
    spec = grid["settings"][setting] or {}
    script = SETTING_SCRIPTS.get(spec.get("script"), grid.get("script", "scripts/train_text_classifier.py"))
    interpreter = os.path.expandvars(os.path.expanduser(spec["python"])) if spec.get("python") else python
    return interpreter, script


def script_options(script: str, options: dict) -> tuple[dict, list[str]]:
    """`(passed, dropped)`: the options a run of `script` is given. The SetFit script takes the data, scoring and
    output options of the text runs, not their fine-tuning ones (learning rate, steps, mixing): those are dropped
    (`train_setfit.grid_options`), the same for each of its runs."""
    if Path(script).name != "train_setfit.py":
        return options, []
    import train_setfit

    return train_setfit.grid_options(options)


def as_flags(options: dict) -> list[str]:
    """Command-line flags of `options`; `null` becomes `None` through the script's `--config` instead (below)."""
    flags = []
    for key, value in options.items():
        if value is None:
            continue
        flags.append(f"--{key}")
        flags.extend(str(v) for v in value) if isinstance(value, (list, tuple)) else flags.append(str(value))
    return flags


def select(grid: dict, key: str, names: list[str] | None) -> list[str]:
    """The grid's `key` entries named in `names` (all of them when None), in the grid's order."""
    if names is None:
        return list(grid[key])
    unknown = [n for n in names if n not in grid[key]]
    if unknown:
        raise ValueError(f"--{key} {' '.join(unknown)}: not in the grid; it has {', '.join(grid[key])}.")
    return [n for n in grid[key] if n in names]


def seeds_of(grid: dict, dataset: str) -> list[int]:
    """The seeds of a dataset entry: its own `seeds:`, else the grid's."""
    return list(grid["datasets"][dataset].get("seeds") or grid["seeds"])


def run_all(
    grid: dict,
    *,
    python: str,
    datasets: list[str] | None = None,
    settings: list[str] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> None:
    """Run every (dataset, seed, setting) of the grid, or of the named datasets / settings, that has no results yet.

    Each dataset entry may carry its own `settings:` (a subset of the grid's) and `seeds:`. With `shard=(k, n)` only
    every n-th run of the grid, from the k-th on, is this process's: n processes with k = 0..n-1 share a grid.
    """
    out = Path(grid["output_dir"])
    runs = []
    for d in select(grid, "datasets", datasets):
        here = grid["datasets"][d].get("settings") or list(grid["settings"])
        runs += [(d, s, seed) for seed in seeds_of(grid, d) for s in select(grid, "settings", settings) if s in here]
    runs = runs[shard[0] :: shard[1]]
    todo = [r for r in runs if not (out / r[0] / r[1] / f"seed{r[2]}" / "results.json").exists()]
    for setting in dict.fromkeys(s for _, s, _ in todo):  # an interpreter that is not there fails before any run
        interpreter, _ = setting_command(grid, setting, python)
        if (grid["settings"][setting] or {}).get("python") and shutil.which(interpreter) is None:
            raise ValueError(f"settings.{setting}.python={interpreter!r}: no such interpreter.")
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} done, {len(todo)} to run", flush=True)
    for i, (dataset, setting, seed) in enumerate(todo, 1):
        folder = out / dataset / setting / f"seed{seed}"
        interpreter, script = setting_command(grid, setting, python)
        options, dropped = script_options(script, run_options(grid, dataset, setting))
        # "{seed}" in a value is the run's seed (e.g. `split_seed: "{seed}"`: each seed draws its own subset)
        options = {k: v.format(seed=seed) if isinstance(v, str) else v for k, v in options.items()}
        # options set to null (e.g. max_train_samples: null = every row) cannot be flags: they go in a --config file
        nulls = {k: None for k, v in options.items() if v is None}
        config = []
        if nulls:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as null_file:
                yaml.safe_dump(nulls, null_file)
            config = ["--config", null_file.name]
        argv = [
            interpreter,
            str(ROOT / script),
            *config,
            *as_flags(options),
            "--baseline",
            "false",
            "--seed",
            str(seed),
            "--output_dir",
            str(folder),
            "--overwrite_output_dir",
            "true",
            "--disable_tqdm",
            "true",
        ]
        unused = f" ({Path(script).name} takes no {', '.join(dropped)})" if dropped else ""
        print(f"[{i}/{len(todo)}] {dataset} / {setting} / seed {seed}{unused}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            if nulls:
                os.unlink(null_file.name)
        if done.returncode != 0:
            folder.parent.mkdir(parents=True, exist_ok=True)
            (folder.parent / f"seed{seed}.error.log").write_text(done.stdout + done.stderr)
            raise RuntimeError(f"run {dataset}/{setting}/seed{seed} failed:\n{done.stderr[-3000:]}")
        print(f"    {time.perf_counter() - start:.0f} s", flush=True)


def dataset_options(grid: dict, dataset: str) -> dict:
    """The script options of a dataset entry (its `settings:` and `seeds:` are the runner's, not the script's)."""
    return {k: v for k, v in grid["datasets"][dataset].items() if k not in ("settings", "seeds")}


def collect(grid: dict, part: str | None = "dev") -> dict:
    """`{dataset: {setting: {seed: metrics}}}` of the runs that finished.

    Args:
        part: of a run whose evaluation rows are split (`dev/...` and `test/...` metrics), the metrics of this part
            in place of those of all its rows (`part_metrics`); None keeps those of all the rows.
    """
    out = Path(grid["output_dir"])
    table: dict = {}
    for dataset in grid["datasets"]:
        for setting in grid["settings"]:
            for seed in seeds_of(grid, dataset):
                path = out / dataset / setting / f"seed{seed}" / "results.json"
                if path.exists():
                    (metrics,) = json.loads(path.read_text())["results"].values()
                    if part is not None:
                        metrics = part_metrics(metrics, part)
                    table.setdefault(dataset, {}).setdefault(setting, {})[seed] = metrics
    return table


PARTS = ("dev", "test")


def part_metrics(metrics: dict, part: str) -> dict:
    """A run's metrics with those of one part of its evaluation rows (`dev/accuracy` as `accuracy`, ...) in place of
    those of all the rows, and `part` set to it; the metrics of a run without parts, unchanged."""
    if not any(k.startswith(f"{part}/") for k in metrics):
        return metrics
    kept = {k: v for k, v in metrics.items() if not k.startswith(tuple(f"{p}/" for p in PARTS))}
    return {**kept, **{k[len(part) + 1 :]: v for k, v in metrics.items() if k.startswith(f"{part}/")}, "part": part}


# metric: (name in the tables, scale, digits, higher is better)
METRICS = {
    "f1": ("entity F1", 100, 2, True),
    "accuracy": ("acc", 100, 2, True),
    "nll": ("NLL", 1, 3, False),
    "ece": ("ECE", 100, 2, False),
    "nll_ts": ("NLL (TS)", 1, 3, False),
    "ece_ts": ("ECE (TS)", 100, 2, False),
}


def paired(seeds: dict, base: dict, metric: str) -> np.ndarray:
    """The paired differences (setting minus the baseline run of the same seed) of `metric`."""
    return np.array([seeds[s][metric] - base[s][metric] for s in seeds if s in base and metric in seeds[s]])


def interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """`(mean, low, high)`: the mean of paired differences and its two-sided t-interval (nan bounds below n = 2)."""
    from scipy import stats

    mean = float(diffs.mean()) if len(diffs) else float("nan")
    if len(diffs) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------- confirmation
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 0


def confirmation_predictions(
    grid: dict, dataset: str, setting: str
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`{seed: (row ids, labels, probabilities)}` of the test rows of a dataset entry's runs of `setting` (those
    with a `predictions.npz` that has test rows)."""
    found = {}
    for seed in seeds_of(grid, dataset):
        path = Path(grid["output_dir"]) / dataset / setting / f"seed{seed}" / "predictions.npz"
        if not path.exists():
            continue
        with np.load(path) as saved:
            test = saved["parts"] == "test"
            if test.any():
                (probs,) = saved["probs"]  # a grid's run folder holds one run
                found[seed] = (saved["rows"][test], saved["labels"][test], probs[test])
    return found


def _per_row(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(correct, nll, calibration gaps [N, n_bins])` of each row: summed over rows and divided by their number,
    the gaps' absolute values give the ECE (the estimator of `hiddenmix.metrics`)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(-1)
    correct = (probs.argmax(-1) == labels).astype(np.float64)
    chosen = probs[np.arange(len(labels)), labels]
    nll = -np.log(np.clip(chosen, np.finfo(np.float32).tiny, None))
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gaps = np.zeros((len(labels), n_bins))
    gaps[np.arange(len(labels)), bins] = correct - confidence
    return correct, nll, gaps


def paired_bootstrap(
    setting: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    base: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
    n_bins: int = 15,
) -> dict:
    """The paired difference (setting minus baseline) of accuracy, NLL and ECE on the test rows, with its bootstrap
    interval over seeds and test rows.

    Each of `replicates` resamples draws the seeds with replacement and the test rows with replacement; the same
    rows serve every drawn seed (all the seeds were scored on the same test rows, so which rows happen to be in the
    test set is shared by them) and both the setting and the baseline run of a seed. The resample's difference is
    the mean over its seeds of the metric of the setting minus that of the baseline, each on the resampled rows.
    The interval is the two-sided percentile interval of the resamples; the mean is the difference on every seed
    and every row. A fixed `seed` makes it reproducible.

    Args:
        setting: `{seed: (row ids [N], class ids [N], probabilities [N, C])}` of the setting's runs.
        base: the same of the baseline runs; only the seeds in both count, and only the rows every run has.
        replicates: number of resamples.
        level: coverage of the interval.
        seed: seed of the resampling.
        n_bins: confidence bins of the ECE.

    Returns:
        `{"seeds": S, "rows": N, "accuracy": (mean, low, high), "nll": (...), "ece": (...)}`.

    Raises:
        ValueError: no seed or no row in common, the runs disagree on a row's label, or a bad `replicates` /
            `level`.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ValueError(f"replicates={replicates!r} is not allowed; allowed: an integer >= 1.")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not allowed; allowed: a number in (0, 1).")
    seeds = sorted(s for s in setting if s in base)
    if not seeds:
        raise ValueError(
            f"paired_bootstrap: no seed has both a setting run ({sorted(setting)}) and a baseline run "
            f"({sorted(base)})."
        )
    runs = [entry for s in seeds for entry in (setting[s], base[s])]
    rows = runs[0][0]
    for entry in runs[1:]:
        rows = np.intersect1d(rows, entry[0])
    if len(rows) == 0:
        raise ValueError("paired_bootstrap: the runs have no test row in common.")

    def aligned(entry: tuple) -> tuple[np.ndarray, np.ndarray]:
        ids, labels, probs = (np.asarray(a) for a in entry)
        order = np.argsort(ids, kind="stable")
        take = order[np.searchsorted(ids[order], rows)]
        return labels[take], probs[take]

    labels = aligned(runs[0])[0]
    # per seed, setting minus baseline: (correct, nll) per row [S, N] and the calibration gaps [S, N, bins] of each
    diffs, gaps = [], []
    for s in seeds:
        ours, theirs = aligned(setting[s]), aligned(base[s])
        if not (np.array_equal(ours[0], labels) and np.array_equal(theirs[0], labels)):
            raise ValueError(
                f"paired_bootstrap: the runs of seed {s} give a test row another label than seed {seeds[0]}."
            )
        a, b = _per_row(labels, ours[1], n_bins), _per_row(labels, theirs[1], n_bins)
        diffs.append(np.stack([a[0] - b[0], a[1] - b[1]]))
        gaps.append((a[2], b[2]))
    diffs = np.stack(diffs)  # [S, 2, N]
    n_seeds, n_rows = len(seeds), len(rows)

    def estimate(seed_counts: np.ndarray, row_counts: np.ndarray) -> np.ndarray:
        """`[B, 3]`: the mean differences of accuracy, NLL and ECE of B resamples (counts of each seed and row)."""
        means = np.einsum("bn,skn->bsk", row_counts, diffs) / n_rows  # [B, S, 2]
        ece = (
            np.stack(
                [np.abs(row_counts @ ours).sum(-1) - np.abs(row_counts @ theirs).sum(-1) for ours, theirs in gaps],
                axis=1,
            )
            / n_rows
        )  # [B, S]
        per_seed = np.concatenate([means, ece[..., None]], axis=-1)  # [B, S, 3]
        return np.einsum("bs,bsk->bk", seed_counts, per_seed) / n_seeds

    point = estimate(np.ones((1, n_seeds)), np.ones((1, n_rows)))[0]
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, replicates, 250):  # in blocks, to bound the memory of the row counts
        block = range(start, min(start + 250, replicates))
        seed_counts, row_counts = [], []
        for _ in block:
            seed_counts.append(np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds))
            row_counts.append(np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows))
        draws.append(estimate(np.array(seed_counts, dtype=np.float64), np.array(row_counts, dtype=np.float64)))
    low, high = np.percentile(np.concatenate(draws), [50 * (1 - level), 50 * (1 + level)], axis=0)
    result: dict = {"seeds": n_seeds, "rows": n_rows}
    for k, metric in enumerate(("accuracy", "nll", "ece")):
        result[metric] = (float(point[k]), float(low[k]), float(high[k]))
    return result


def confirmation_lines(grid: dict, dataset: str, settings: Sequence[str]) -> list[str]:
    """The report's confirmation table of a dataset entry: each setting against no mix on the test rows
    (`paired_bootstrap`); no lines where the runs have no test rows."""
    base = confirmation_predictions(grid, dataset, BASELINE)
    if not base:
        return []
    n_bins = _ece_bins(grid, dataset)

    def rows_against(reference: dict, skip: set) -> list[str]:
        lines = []
        for setting in settings:
            ours = confirmation_predictions(grid, dataset, setting) if setting not in skip else {}
            if not any(s in reference for s in ours):
                continue
            result = paired_bootstrap(ours, reference, n_bins=n_bins)
            cells = []
            for metric in ("accuracy", "nll", "ece"):
                _, scale, digits, _ = METRICS[metric]
                mean, low, high = (v * scale for v in result[metric])
                cells.append(f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]")
            lines.append(f"| {setting} | {result['seeds']} | {result['rows']} | " + " | ".join(cells) + " |")
        return lines

    lines = rows_against(base, {BASELINE})
    if not lines:
        return []
    head = ["| setting | n seeds | n test rows | Δacc | ΔNLL | ΔECE |", "|---|---|---|---|---|---|"]
    text = [
        "",
        f"Confirmation on the test rows (set apart before any run; the tables above never score them): paired "
        f"bootstrap over seeds and test rows ({BOOTSTRAP_REPLICATES} resamples, RNG seed {BOOTSTRAP_SEED}; each "
        "draws the seeds and, shared by them and by each setting and its no-mix run, the test rows, with "
        "replacement). Δ: setting minus no mix, mean [95 % percentile interval]; accuracy and ECE in points.",
        "",
        *head,
        *lines,
    ]
    # the few-label user's usual choice, where the grid runs it: each setting against SetFit, the same way
    setfit = confirmation_predictions(grid, dataset, "setfit") if "setfit" in settings else {}
    against = rows_against(setfit, {BASELINE, "setfit"}) if setfit else []
    if against:
        text += ["", "The same on the test rows, against SetFit: Δ is setting minus SetFit.", "", *head, *against]
    return text


def _ece_bins(grid: dict, dataset: str) -> int:
    """The ECE bins the dataset entry's no-mix runs were scored with (15 where their results.json does not say)."""
    for seed in seeds_of(grid, dataset):
        path = Path(grid["output_dir"]) / dataset / BASELINE / f"seed{seed}" / "results.json"
        if path.exists():
            return int(json.loads(path.read_text()).get("run", {}).get("ece_bins", 15))
    return 15


def verdict(seeds: dict, base: dict, metrics: Sequence[str] = ("accuracy", "nll", "ece")) -> str:
    """Per metric: `+` where the 95 % interval of the paired difference lies wholly on the better side, `-` where
    wholly on the worse side, `=` where it holds 0; `n < 2` below two paired seeds."""
    marks = []
    for metric in metrics:
        mean, low, high = interval(paired(seeds, base, metric))
        if np.isnan(low):
            return "n < 2"
        better = metric.endswith(("accuracy", "f1"))
        gain, loss = (low > 0, high < 0) if better else (high < 0, low > 0)
        name = METRICS[metric][0] if metric in METRICS else metric.rsplit("/", 1)[-1]
        marks.append(f"{name} {'+' if gain else '-' if loss else '='}")
    return ", ".join(marks)


def fmt(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    if len(values) == 0:
        return "–"
    arr = np.asarray(values) * scale
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.{digits}f}"


def fmt_interval(diffs: np.ndarray, scale: float, digits: int) -> str:
    mean, low, high = (v * scale for v in interval(diffs))
    if np.isnan(mean):
        return "–"
    if np.isnan(low):
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def shifts_of(settings: dict) -> list[str]:
    """The evaluation shifts the runs were scored on (`shift/<spec>/accuracy` keys)."""
    keys = {k for seeds in settings.values() for m in seeds.values() for k in m}
    return sorted(k.split("/")[1] for k in keys if k.startswith("shift/") and k.endswith("/accuracy"))


def report(grid: dict) -> str:
    table = collect(grid)
    lines = [f"# {grid.get('name', 'grid')}: mixing settings against no mix", ""]
    lines.append(
        "Mean ± std over the seeds that finished (n); accuracy and ECE in points (x100); TS: after temperature "
        "scaling fitted on held-out labelled rows (T). Paired Δ: setting minus the no-mix run of the same seed (same "
        "data, initial weights and order), mean [95 % t-interval]. Verdict: per metric, `+` where the interval lies "
        "wholly on the better side, `-` wholly on the worse side, `=` where it holds 0."
    )
    for dataset, settings in table.items():
        base = settings.get(BASELINE, {})
        options = run_options(grid, dataset)
        lines += ["", f"## {dataset}", "", f"Options: `{' '.join(as_flags(options))}`", ""]
        if any(r.get("part") == "dev" for seeds in settings.values() for r in seeds.values()):
            lines += [
                "Development rows: the tables below score the runs on the evaluation rows that are not test rows; "
                + (
                    "the test rows are scored only in the confirmation table."
                    if grid.get("report_test", True)
                    else "this grid chooses settings, and never scores its test rows."
                ),
                "",
            ]
        curve = _final_loss(base)
        if curve:
            lines += [f"No-mix training loss, mean over seeds: {curve}.", ""]
        tagging = any("f1" in r for seeds in settings.values() for r in seeds.values())  # entity F1 of a tagger
        second = ("f1", "entity F1") if tagging else ("macro_f1", "macro-F1")
        lines += [
            f"| setting | n | accuracy | {second[1]} | NLL | ECE | NLL (TS) | ECE (TS) | T |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for setting, seeds in settings.items():

            def col(metric: str, scale: float = 1, digits: int = 3, runs=seeds) -> str:
                return fmt([r[metric] for r in runs.values() if metric in r], scale, digits)

            lines.append(
                f"| {setting} | {len(seeds)} | {col('accuracy', 100, 2)} | {col(second[0], 100, 2)} | {col('nll')} "
                f"| {col('ece', 100, 2)} | {col('nll_ts')} | {col('ece_ts', 100, 2)} | {col('temperature', 1, 2)} |"
            )
        shifts = shifts_of(settings)
        measured = [m for m in METRICS if any(m in r for seeds in settings.values() for r in seeds.values())]
        head = [f"Δ{METRICS[m][0]}" for m in measured] + [f"Δacc {s}" for s in shifts] + [f"ΔNLL {s}" for s in shifts]
        lines += ["", "| setting | n | " + " | ".join(head) + " | verdict |", "|---" * (len(head) + 3) + "|"]
        for setting, seeds in settings.items():
            if setting == BASELINE:
                continue
            cells = [fmt_interval(paired(seeds, base, m), METRICS[m][1], METRICS[m][2]) for m in measured]
            cells += [fmt_interval(paired(seeds, base, f"shift/{s}/accuracy"), 100, 2) for s in shifts]
            cells += [fmt_interval(paired(seeds, base, f"shift/{s}/nll"), 1, 3) for s in shifts]
            n = len(paired(seeds, base, "accuracy"))
            judged = ("f1", "nll", "ece") if tagging else ("accuracy", "nll", "ece")
            lines.append(f"| {setting} | {n} | " + " | ".join(cells) + f" | {verdict(seeds, base, judged)} |")
        if grid.get("report_test", True):
            lines += confirmation_lines(grid, dataset, list(settings))
    lines += ["", "Settings:", ""]
    lines += [setting_line(name, opts) for name, opts in grid["settings"].items()]
    lines += ["", f"Command: `python scripts/run_experiments.py --grid {grid.get('_path', '...')}`", ""]
    return "\n".join(lines)


def setting_line(name: str, spec: dict) -> str:
    """The report's line of a setting: its options, and the script of a setting that runs another."""
    spec = spec or {}
    flags = " ".join(as_flags({k: v for k, v in spec.items() if k not in RUNNER_KEYS})) or "(defaults)"
    where = f" ({SETTING_SCRIPTS[spec['script']]})" if spec.get("script") in SETTING_SCRIPTS else ""
    return f"- `{name}`: `{flags}`{where}"


def _final_loss(base: dict) -> str:
    """The no-mix runs' training loss at a few points of training (mean over seeds): does it flatten?"""
    curves = [r.get("train_loss_curve") for r in base.values() if r.get("train_loss_curve")]
    if not curves:
        return ""
    steps = [e["step"] for e in curves[0]]
    picks = sorted({steps[int(round(q * (len(steps) - 1)))] for q in (0.25, 0.5, 0.75, 1.0)})
    means = [np.mean([e["loss"] for c in curves for e in c if e["step"] == p]) for p in picks]
    return ", ".join(f"{m:.3f} at step {p}" for p, m in zip(picks, means))


# ---------------------------------------------------------------------------------------------- figures
def figures(grid: dict) -> list[Path]:
    """One PNG per entry of the grid's `axes:`: for each dataset (a row) and metric (a column), the paired Δ of each
    setting against the axis, with 95 % intervals.

    An axis is `{title, xlabel, lines: {dataset name: [[x, dataset entry], ...]}}`; with `shift: NAME` its x values
    are the strengths of that evaluation shift (`NAME:x`, x = 0 the clean evaluation) of the one dataset entry
    each line names.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = collect(grid)
    written = []
    metrics = (("accuracy", "Δ accuracy (points)", 100), ("nll", "Δ NLL", 1), ("ece", "Δ ECE (points)", 100))
    settings = [s for s in grid["settings"] if s != BASELINE]
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(settings)}
    for name, axis in (grid.get("axes") or {}).items():
        lines = axis["lines"]
        fig, axes = plt.subplots(len(lines), 3, figsize=(13, 3.3 * len(lines)), squeeze=False)
        for row, (label, points) in enumerate(lines.items()):
            for column, (metric, ylabel, scale) in enumerate(metrics):
                ax = axes[row, column]
                ax.axhline(0, color="black", linewidth=0.8)
                for k, setting in enumerate(settings):
                    xs, means, errs = [], [], []
                    for x, key in _points(axis, points, metric):
                        dataset, measured = key
                        seeds = table.get(dataset, {}).get(setting, {})
                        base = table.get(dataset, {}).get(BASELINE, {})
                        diffs = paired(
                            {s: {metric: r.get(measured)} for s, r in seeds.items() if measured in r},
                            {s: {metric: r.get(measured)} for s, r in base.items() if measured in r},
                            metric,
                        )
                        if len(diffs) < 2:  # one seed has no interval: no point a reader could take for a claim
                            continue
                        mean, low, high = interval(diffs)
                        xs.append(x)
                        means.append(mean * scale)
                        errs.append(0.0 if np.isnan(low) else (high - mean) * scale)
                    if xs:
                        jitter = (k - (len(settings) - 1) / 2) * 0.02  # side by side, in axis-fraction units
                        shown = _jittered(xs, jitter, log=axis.get("log", False))
                        ax.errorbar(
                            shown,
                            means,
                            yerr=errs,
                            marker="o",
                            capsize=3,
                            color=colors[setting],
                            label=setting,
                            linewidth=1.2,
                            markersize=4,
                        )
                if axis.get("log"):
                    ax.set_xscale("log", base=2)
                ax.set(xlabel=axis.get("xlabel", name), ylabel=ylabel, title=f"{label}: {ylabel}")
        handles, names = axes[0, 0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8)
        fig.suptitle(f"{axis.get('title', name)}: setting minus no mix, mean and 95 % interval over seeds")
        fig.tight_layout(rect=(0, 0.05, 1, 0.97))
        path = Path(grid["output_dir"]) / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _points(axis: dict, points: Any, metric: str) -> list[tuple[float, tuple[str, str]]]:
    """`[(x, (dataset entry, metric key))]` of one line of an axis."""
    if "shift" in axis:
        dataset = points
        return [
            (float(x), (dataset, metric if float(x) == 0 else f"shift/{axis['shift']}:{x}/{metric}"))
            for x in axis["strengths"]
        ]
    return [(float(x), (dataset, metric)) for x, dataset in points]


def _jittered(xs: list[float], jitter: float, *, log: bool) -> list[float]:
    if log:
        return [x * 2 ** (jitter * 4) for x in xs]
    span = (max(xs) - min(xs)) or 1.0
    return [x + jitter * span for x in xs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, help="the grid YAML (output_dir, seeds, datasets, settings)")
    parser.add_argument("--report", action="store_true", help="only write the report of the runs that finished")
    parser.add_argument("--datasets", nargs="+", help="run only these dataset entries of the grid")
    parser.add_argument("--settings", nargs="+", help="run only these settings of the grid")
    parser.add_argument("--shard", default="0/1", help="K/N: run only every N-th run of the grid, from the K-th")
    args = parser.parse_args()
    try:
        k, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        parser.error(f"--shard {args.shard!r}: allowed: K/N with 0 <= K < N, e.g. 0/2 and 1/2 for two processes")
    grid = load_grid(args.grid)
    grid["_path"] = args.grid
    if not args.report:
        run_all(grid, python=sys.executable, datasets=args.datasets, settings=args.settings, shard=(k, n))
    text = report(grid)
    Path(grid["output_dir"]).mkdir(parents=True, exist_ok=True)
    (Path(grid["output_dir"]) / "report.md").write_text(text)
    for path in figures(grid):
        print(f"wrote {path}")
    print(text)


if __name__ == "__main__":
    main()
