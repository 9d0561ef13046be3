"""Train a grid of mixing settings against a no-mix baseline, over seeds and datasets, and report paired results.

    python scripts/run_experiments.py --grid configs/experiments/text_grid.yaml            # runs what is missing
    python scripts/run_experiments.py --grid configs/experiments/text_grid.yaml --report   # only the report

Every run is the grid's `script` (default `scripts/train_text_classifier.py`; `scripts/train_vit.py` for images) in a
subprocess with the grid's options and its own output folder;
a run whose `results.json` exists is skipped, so a grid resumes where it stopped and may span several sittings.
Every setting and the baseline of a seed share the data subsets, the initial head, the data order and the seeds;
only the mixing differs. The report (printed and written as `report.md` in the grid's folder) gives, per dataset and
setting, mean ± std over seeds of accuracy, macro-F1, NLL, ECE and ECE / NLL after temperature scaling (fitted on
held-out training rows), and the paired differences to the baseline of the same seed, mean ± std.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "macro_f1", "nll", "ece", "nll_ts", "ece_ts")
BASELINE = "no-mix"


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
            raise ValueError(f"grid {path}: datasets.{name}.settings={subset!r} must list the baseline {BASELINE!r} "
                             f"and settings of the grid only ({', '.join(grid['settings'])}).")  # fmt: skip
    grid.setdefault("script", "scripts/train_text_classifier.py")
    if not (ROOT / grid["script"]).is_file():
        raise ValueError(f"grid {path}: script={grid['script']!r} is not a file under {ROOT}.")
    return grid


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


def run_all(grid: dict, *, python: str, datasets: list[str] | None = None, settings: list[str] | None = None) -> None:
    """Run every (dataset, seed, setting) of the grid, or of the named datasets / settings, that has no results yet.

    Each dataset entry may carry its own `settings:` list (a subset of the grid's) to run only those there.
    """
    out = Path(grid["output_dir"])
    runs = []
    for d in select(grid, "datasets", datasets):
        here = grid["datasets"][d].get("settings") or list(grid["settings"])
        runs += [(d, s, seed) for seed in grid["seeds"] for s in select(grid, "settings", settings) if s in here]
    todo = [r for r in runs if not (out / r[0] / r[1] / f"seed{r[2]}" / "results.json").exists()]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} done, {len(todo)} to run", flush=True)
    for i, (dataset, setting, seed) in enumerate(todo, 1):
        folder = out / dataset / setting / f"seed{seed}"
        options = {**grid.get("common", {}), **dataset_options(grid, dataset), **grid["settings"][setting]}
        # "{seed}" in a value is the run's seed (e.g. `split_seed: "{seed}"`: each seed draws its own subset)
        options = {k: v.format(seed=seed) if isinstance(v, str) else v for k, v in options.items()}
        # options set to null (e.g. max_train_samples: null = every row) cannot be flags: they go in a --config file
        nulls = {k: None for k, v in options.items() if v is None}
        config = []
        if nulls:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as null_file:
                yaml.safe_dump(nulls, null_file)
            config = ["--config", null_file.name]
        argv = [python, str(ROOT / grid["script"]), *config, *as_flags(options), "--baseline", "false",
                "--seed", str(seed), "--output_dir", str(folder), "--overwrite_output_dir", "true",
                "--disable_tqdm", "true"]  # fmt: skip
        print(f"[{i}/{len(todo)}] {dataset} / {setting} / seed {seed}", flush=True)
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
    """The script options of a dataset entry (its `settings:` subset is the runner's, not the script's)."""
    return {k: v for k, v in grid["datasets"][dataset].items() if k != "settings"}


def collect(grid: dict) -> dict:
    out = Path(grid["output_dir"])
    table: dict = {}
    for dataset in grid["datasets"]:
        for setting in grid["settings"]:
            for seed in grid["seeds"]:
                path = out / dataset / setting / f"seed{seed}" / "results.json"
                if path.exists():
                    results = json.loads(path.read_text())["results"]
                    (metrics,) = results.values()
                    table.setdefault(dataset, {}).setdefault(setting, {})[seed] = metrics
    return table


def fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "–"
    arr = np.asarray(values) * scale
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.{digits}f}"


ACCURACY_TOLERANCE = 0.3  # points: the recipe bar's allowance below the no-mix accuracy


def recipe_bar(seeds: dict, base: dict) -> str:
    """Whether a setting clears the bar a recommended recipe must clear, over the seeds paired with a baseline.

    The bar: mean accuracy within `ACCURACY_TOLERANCE` points of no mixing (or above), and mean NLL and ECE lowered by
    more than the seed-to-seed spread, taken as the larger of the paired differences' std and the baseline's std.

    Returns:
        `"yes"`, `"no: <what falls short>"`, or `"n < 2"` when fewer than 2 seeds are paired.
    """
    paired = [s for s in seeds if s in base]
    if len(paired) < 2:
        return "n < 2"
    short = []
    if 100 * np.mean([seeds[s]["accuracy"] - base[s]["accuracy"] for s in paired]) < -ACCURACY_TOLERANCE:
        short.append("accuracy")
    for metric in ("nll", "ece"):
        diffs = np.array([seeds[s][metric] - base[s][metric] for s in paired])
        spread = max(diffs.std(ddof=1), np.std([base[s][metric] for s in paired], ddof=1))
        if not diffs.mean() < -spread:
            short.append(metric.upper())
    return "yes" if not short else "no: " + ", ".join(short)


def _row(setting: str, seeds: dict, base: dict) -> str:
    """One table row: means ± std over seeds, and paired differences to the baseline of the same seed."""

    def col(metric: str) -> list[float]:
        return [r[metric] for r in seeds.values() if metric in r]

    def delta(metric: str, scale: float = 1.0, digits: int = 3) -> str:
        if setting == BASELINE:
            return ""
        return fmt([seeds[s][metric] - base[s][metric] for s in seeds if s in base], scale, digits)

    cells = [
        setting, str(len(seeds)), fmt(col("accuracy"), 100, 2), fmt(col("macro_f1"), 100, 2), fmt(col("nll")),
        fmt(col("ece"), 100, 2), fmt(col("nll_ts")), fmt(col("ece_ts"), 100, 2), fmt(col("temperature"), 1, 2),
        delta("accuracy", 100, 2), delta("nll"), delta("ece", 100, 2), delta("nll_ts"),
        "" if setting == BASELINE else recipe_bar(seeds, base),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def report(grid: dict) -> str:
    table = collect(grid)
    lines = [f"# {grid.get('name', 'grid')}: mixing settings against no mix", ""]
    lines.append(
        f"Seeds {grid['seeds']}; mean ± std over the seeds that finished (n). Paired Δ: setting minus the no-mix run "
        "of the same seed, mean ± std. Accuracy and ECE in points (x100). TS: after temperature scaling fitted on "
        f"held-out training rows (T). Recipe bar: accuracy within {ACCURACY_TOLERANCE} points of no mix or above, and "
        "NLL and ECE lowered by more than the seed-to-seed spread (the larger of the paired Δ's std and the no-mix "
        "std); `no:` lists what falls short."
    )
    for dataset, settings in table.items():
        options = {**grid.get("common", {}), **dataset_options(grid, dataset)}
        lines += ["", f"## {dataset}", "", f"Options: `{' '.join(as_flags(options))}`", ""]
        lines.append(
            "| setting | n | accuracy | macro-F1 | NLL | ECE | NLL (TS) | ECE (TS) | T | Δacc | ΔNLL | ΔECE "
            "| ΔNLL (TS) | recipe bar |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for setting, seeds in settings.items():
            lines.append(_row(setting, seeds, settings.get(BASELINE, {})))
    lines += ["", "Settings:", ""]
    lines += [f"- `{name}`: `{' '.join(as_flags(opts)) or '(defaults)'}`" for name, opts in grid["settings"].items()]
    lines += ["", f"Command: `python scripts/run_experiments.py --grid {grid.get('_path', '...')}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, help="the grid YAML (output_dir, seeds, datasets, settings)")
    parser.add_argument("--report", action="store_true", help="only write the report of the runs that finished")
    parser.add_argument("--datasets", nargs="+", help="run only these dataset entries of the grid")
    parser.add_argument("--settings", nargs="+", help="run only these settings of the grid")
    args = parser.parse_args()
    grid = load_grid(args.grid)
    grid["_path"] = args.grid
    if not args.report:
        run_all(grid, python=sys.executable, datasets=args.datasets, settings=args.settings)
    text = report(grid)
    Path(grid["output_dir"]).mkdir(parents=True, exist_ok=True)
    (Path(grid["output_dir"]) / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
