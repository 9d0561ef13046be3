"""scripts/train_text_classifier.py end to end on a tiny model, its refusals, and a 2-process launch."""

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
WORDS = "good bad fine great awful happy sad ok meh love hate news sport vote film".split()


import train_text_classifier as script  # noqa: E402  (scripts/ is on the test path)

from common.data import load_labelled_dataset  # noqa: E402


def load_text_dataset(dataset, text_column=None, label_column=None):
    return load_labelled_dataset(dataset, kind="text", columns={"text": text_column, "label": label_column})


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # transformers 5's BertTokenizerFast takes the vocabulary as `vocab=` (a `vocab_file=` keyword is ignored)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    config = AutoConfig.for_model(
        "bert", vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


def write_csv(path, rows, header=("sentence", "mood")):
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    return path


def sentences(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (2 + i % 5,), generator=g).tolist()]
        rows.append((" ".join(words), ["pos", "neg", "neu"][i % 3]))
    return rows


def args_for(model_dir, data, out, *extra):
    return [
        "--model_name_or_path", str(model_dir), "--dataset", str(data), "--text_column", "sentence",
        "--label_column", "mood", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "8",
        "--max_length", "16", "--logging_steps", "1", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def test_runs_end_to_end_with_a_baseline_and_writes_results(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "data.csv", sentences(40))
    out = tmp_path / "out"
    results = script.main(args_for(tiny_model_dir, data, out, "--mixup_alpha", "0.2", "--layers", "0", "1"))
    assert set(results) == {"no-mix", "hidden-mix"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"].keys() == results.keys()
    assert saved["mix_config"]["mixup_alpha"] == 0.2 and saved["mix_config"]["layers"] == [0, 1]
    assert saved["eval_rows"] == 8 and saved["train_rows"] == 32  # 20 % held out, stratified
    for metrics in results.values():
        assert 0 <= metrics["accuracy"] <= 1 and metrics["nll"] > 0 and 0 <= metrics["ece"] <= 1
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_scores_its_development_and_test_rows_apart_and_saves_its_predictions(tiny_model_dir, tmp_path):
    from common.data import eval_test_rows

    folder = tmp_path / "data"
    folder.mkdir()
    train = sentences(30)
    write_csv(folder / "train.csv", train)
    # 12 evaluation rows of 7 words (no training row has more than 6); rows 1, 5 and 9 repeat a training text
    evaluation = [(" ".join(WORDS[(i + k) % len(WORDS)] for k in range(7)), ["pos", "neg", "neu"][i % 3])
                  for i in range(12)]  # fmt: skip
    for i, j in ((1, 0), (5, 4), (9, 13)):
        evaluation[i] = ("  " + train[j][0].upper().replace(" ", "   ") + " ", evaluation[i][1])
    write_csv(folder / "validation.csv", evaluation)
    out = tmp_path / "out"
    options = ["--eval_test_share", "0.5", "--eval_dedup", "true", "--calibration_size", "6",
               "--eval_shifts", "typos:0.2"]  # fmt: skip
    results = script.main(args_for(tiny_model_dir, folder, out, *options))
    saved = json.loads((out / "results.json").read_text())
    protocol = saved["eval_protocol"]
    assert protocol["eval_rows_loaded"] == 12 and protocol["train_overlap_removed"] == 3 and saved["eval_rows"] == 9
    assert protocol["dev_rows"] + protocol["test_rows"] == 9 and min(protocol["dev_rows"], protocol["test_rows"]) > 0
    predictions = np.load(out / "predictions.npz")
    assert list(predictions["runs"]) == ["no-mix", "hidden-mix"] and predictions["probs"].dtype == np.float32
    rows, labels, parts = predictions["rows"], predictions["labels"], predictions["parts"]
    assert rows.tolist() == [0, 2, 3, 4, 6, 7, 8, 10, 11]  # in row order, the repeated rows removed
    names = ["neg", "neu", "pos"]
    assert labels.tolist() == [names.index(evaluation[r][1]) for r in rows]
    drawn = eval_test_rows([names.index(mood) for _, mood in evaluation], 0.5)  # on the 12 rows as loaded
    assert parts.tolist() == ["test" if drawn[r] else "dev" for r in rows]
    assert (parts == "test").sum() == protocol["test_rows"]
    for k, (name, metrics) in enumerate(results.items()):
        probs = predictions["probs"][k]
        assert probs.shape == (9, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
        for part in ("dev", "test"):
            keep = parts == part
            assert metrics[f"{part}/accuracy"] == pytest.approx((probs[keep].argmax(-1) == labels[keep]).mean())
            nll = -np.log(probs[keep][np.arange(keep.sum()), labels[keep]]).mean()
            assert metrics[f"{part}/nll"] == pytest.approx(nll, rel=1e-4)
            assert {f"{part}/nll_ts", f"{part}/ece", f"{part}/shift/typos:0.2/accuracy"} <= set(metrics)
        # the metrics of all the rows stay what they were: the two parts' weighted together
        n_dev, n_test = protocol["dev_rows"], protocol["test_rows"]
        for metric in ("accuracy", "nll", "shift/typos:0.2/nll"):
            both = (n_dev * metrics[f"dev/{metric}"] + n_test * metrics[f"test/{metric}"]) / 9
            assert metrics[metric] == pytest.approx(both), (name, metric)
    # without the options: no parts, every row kept, and no predictions file when asked for none
    plain = tmp_path / "plain"
    script.main(args_for(tiny_model_dir, folder, plain, "--baseline", "false", "--save_predictions", "false"))
    saved = json.loads((plain / "results.json").read_text())
    assert saved["eval_rows"] == 12 and saved["eval_protocol"] == {"eval_rows_loaded": 12, "eval_dedup": False}
    assert not any(k.startswith(("dev/", "test/")) for k in saved["results"]["hidden-mix"])
    assert not (plain / "predictions.npz").exists()


def test_a_yaml_config_is_applied_and_the_command_line_overrides_it(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("site: embeddings\nmixup_alpha: 0.3\nseed: 5\nlearning_rate: 0.001\n")
    argv = ["--config", str(cfg), "--mixup_alpha", "0.7", "--output_dir", str(tmp_path / "o")]
    _, _, args = script.parse(argv)
    mix = args.mix_config()
    assert mix.site == "embeddings" and mix.mixup_alpha == 0.7 and mix.seed == 5 and args.learning_rate == 0.001


def test_a_config_file_beats_the_scripts_defaults(tmp_path):
    # the script's own defaults (output_dir, epochs, ...) must sit below a --config file, not above it

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"num_train_epochs: 7\noutput_dir: {tmp_path / 'from-yaml'}\n")
    *_, t = script.parse(["--config", str(cfg)])
    assert t.num_train_epochs == 7 and t.output_dir == str(tmp_path / "from-yaml")
    *_, t = script.parse([])
    assert t.num_train_epochs == script.DEFAULTS["num_train_epochs"]


@pytest.mark.parametrize("cfg", sorted((ROOT / "configs" / "text").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_text_config_parses_to_what_it_says(cfg):
    import yaml

    values = yaml.safe_load(cfg.read_text())
    script_args, run, args = script.parse(["--config", str(cfg)])
    for key, value in values.items():
        held = next(getattr(a, key) for a in (script_args, run, args) if hasattr(a, key))
        assert held == (tuple(value) if isinstance(held, tuple) else value), (cfg.name, key)


@pytest.mark.parametrize(
    "setup,extra,match",
    [
        ("missing-text", ["--text_column", "body"], r"text_column='body' is not a column .* \['sentence', 'mood'\]"),
        ("missing-label", ["--label_column", "y"], r"label_column='y' is not a column .* \['sentence', 'mood'\]"),
        ("unseen-label", [], r"labels \['angry'\] that are not in the training label set \['neg', 'neu', 'pos'\]"),
        ("empty", [], "is an empty dataset: the training split has no row"),
        ("bad-site", ["--site", "logits"], r"argument --site: invalid choice: 'logits' \(choose from 'input', 'emb"),
        ("bad-mix", ["--mixup_alpha", "-1"], r"MixupTrainingArguments.mixup_alpha=-1.0 is not allowed; allowed: a"),
        ("unknown-key", ["--config", "BAD_YAML"], r"unknown key 'mixup_alfa'; did you mean 'mixup_alpha'\?"),
        ("unknown-flag", ["--mixup_alfa", "0.2"], r"unknown option '--mixup_alfa'; did you mean '--mixup_alpha'\?"),
        ("few-rows", ["--train_samples_per_class", "50"], r"train_samples_per_class=50 but class 0 has \d+ training"),
        ("bad-shift", ["--eval_shifts", "blur:0.2"], r"eval_shifts holds 'blur:0.2'; allowed: NAME:STRENGTH with NA"),
        ("bad-layers", ["--layers", "9"], r"MixConfig.layers=\[9\] holds 9, out of range for a model with 2 layers"),
        ("unlabeled-options-alone", ["--unlabeled_views", "2"], r"unlabelled-row options \{'unlabeled_views': 2\}"),
        ("few-unlabeled", ["--train_samples_per_class", "2", "--unlabeled_samples", "2", "--unlabeled_batch_size",
                           "4"], r"unlabeled_dataset has 2 rows, fewer than one batch of unlabeled_batch_size=4"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_is_written(tiny_model_dir, tmp_path, setup, extra, match):
    folder = tmp_path / "data"
    folder.mkdir()
    if setup == "unseen-label":
        write_csv(folder / "train.csv", sentences(12))
        write_csv(folder / "validation.csv", [("good news", "angry"), ("bad film", "pos")])
    elif setup == "empty":
        write_csv(folder / "train.csv", [])
    else:
        write_csv(folder / "train.csv", sentences(12))
    if setup == "unknown-key":
        (tmp_path / "bad.yaml").write_text("mixup_alfa: 0.2\n")
        extra = ["--config", str(tmp_path / "bad.yaml")]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        script.main(args_for(tiny_model_dir, folder, out, *extra))
    assert not out.exists()


def test_an_output_folder_holding_another_run_is_refused_unless_overwrite(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "data.csv", sentences(20))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(ValueError, match=r"already holds another run \(\['results.json'\]\).*--overwrite_output_dir"):
        script.main(args_for(tiny_model_dir, data, out))
    assert (out / "results.json").read_text() == "{}"
    script.main(args_for(tiny_model_dir, data, out, "--overwrite_output_dir", "true", "--baseline", "false"))
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"hidden-mix"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_runs_the_script_with_two_processes(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "data.csv", sentences(48))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port", str(_free_port()),
        str(ROOT / "scripts" / "train_text_classifier.py"), *args_for(tiny_model_dir, data, out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["training"]["world_size"] == 2
    assert set(saved["results"]) == {"no-mix", "hidden-mix"}


@pytest.mark.slow
def test_experiment_runner_reports_paired_results_and_resumes(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "data.csv", sentences(40))
    grid = tmp_path / "grid.yaml"
    out = tmp_path / "grid-out"
    grid.write_text(
        f"name: tiny\noutput_dir: {out}\nseeds: [0, 1]\n"
        f"common: {{max_steps: 2, max_length: 16, per_device_train_batch_size: 8, calibration_size: 0.25, "
        "eval_shifts: [typos:0.2]}\n"
        f"datasets:\n  tiny: {{dataset: {data}, model_name_or_path: {tiny_model_dir}, text_column: sentence, "
        f"label_column: mood}}\n"
        "settings:\n  no-mix: {enabled: false}\n  hidden: {site: hidden, mixup_alpha: 0.4}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "run_experiments.py"), "--grid", str(grid)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 runs in the grid, 0 done, 4 to run" in first.stdout
    report = (out / "report.md").read_text()
    means, deltas, confirmed = [line for line in report.splitlines() if line.startswith("| hidden |")]
    assert [c.strip() for c in means.strip("|").split("|")][1] == "2" and "±" in means  # n = 2 seeds, mean ± std
    cells = [c.strip() for c in deltas.strip("|").split("|")]
    # paired Δacc and ΔNLL with their 95 % interval, and the shifted evaluation's
    interval = r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]"
    assert cells[1] == "2" and re.fullmatch(interval, cells[2])
    assert "Δacc typos:0.2" in report and cells[-1].startswith("acc ")
    saved = json.loads((out / "tiny" / "hidden" / "seed1" / "results.json").read_text())
    results = saved["results"]
    assert {"temperature", "nll_ts", "ece_ts"} <= set(results["hidden-mix"])
    # a grid without `confirmation:` sets test rows apart: the tables score the development rows, and the last one
    # confirms on the test rows, with the paired bootstrap over the 2 seeds and the test rows
    assert saved["run"]["eval_test_share"] == 0.5 and saved["run"]["eval_dedup"] is True
    runs = [json.loads((out / "tiny" / "hidden" / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    devs = [100 * r["results"]["hidden-mix"]["dev/accuracy"] for r in runs]
    assert f"| {np.mean(devs):.2f} ± {np.std(devs, ddof=1):.2f} |" in means
    confirmed = [c.strip() for c in confirmed.strip("|").split("|")]
    assert confirmed[1:3] == ["2", str(saved["eval_protocol"]["test_rows"])]
    assert all(re.fullmatch(interval, c) for c in confirmed[3:6])
    # a finished run is skipped; a missing one is run again
    (out / "tiny" / "hidden" / "seed1" / "results.json").unlink()
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 runs in the grid, 3 done, 1 to run" in second.stdout


def test_a_classlabel_class_without_training_rows_is_not_in_the_label_set(tmp_path):
    import datasets

    feature = datasets.ClassLabel(names=["neg", "neu", "pos"])
    features = datasets.Features({"text": datasets.Value("string"), "label": feature})
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [0, 2, 0, 2]}, features=features)
    validation = datasets.Dataset.from_dict({"text": ["e", "f"], "label": [1, 0]}, features=features)
    datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"labels \['neu'\] that are not in the training label set \['neg', 'pos'\]"):
        load_text_dataset(str(tmp_path / "saved"))


def test_unlabelled_classlabel_rows_are_dropped_not_trained_as_the_last_class(tmp_path):
    import datasets

    feature = datasets.ClassLabel(names=["neg", "pos"])
    features = datasets.Features({"text": datasets.Value("string"), "label": feature})
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [0, 1, -1, 1]}, features=features)
    test = datasets.Dataset.from_dict({"text": ["e", "f", "g"], "label": [-1, 0, -1]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    data, names = load_text_dataset(str(tmp_path / "saved"))
    assert names == ["neg", "pos"]
    assert data["train"]["text"] == ["a", "b", "d"] and data["train"]["labels"] == [0, 1, 1]
    assert data["validation"]["text"] == ["f"] and data["validation"]["labels"] == [0]


def test_a_tsv_folder_is_read_with_tabs_and_split_names_with_suffixes_are_recognised(tmp_path):
    folder = tmp_path / "glue"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tmood\ngood, fine\tpos\nbad, awful\tneg\nok\tpos\nmeh\tneg\n")
    (folder / "dev_matched.tsv").write_text("sentence\tmood\ngreat, good\tpos\n")
    data, names = load_text_dataset(str(folder), text_column="sentence", label_column="mood")
    assert data["train"]["text"] == ["good, fine", "bad, awful", "ok", "meh"]  # commas kept inside the text
    assert data["validation"]["text"] == ["great, good"]  # dev_matched is the evaluation split, not training data
    assert names == ["neg", "pos"]


def test_an_evaluation_split_without_the_label_column_is_named(tmp_path):
    import datasets

    train = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "mood": ["pos", "neg"]})
    test = datasets.Dataset.from_dict({"sentence": ["fine"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"evaluation split 'test' .* has no column\(s\) \['mood'\]; its columns"):
        load_text_dataset(str(tmp_path / "saved"), text_column="sentence", label_column="mood")
    # split files of a folder with different columns cannot be one dataset: said so, not a CastError
    folder = tmp_path / "data"
    folder.mkdir()
    write_csv(folder / "train.csv", sentences(6))
    (folder / "test.csv").write_text("sentence\ngood news\n")
    with pytest.raises(ValueError, match="every split file must have the same columns"):
        load_text_dataset(str(folder), text_column="sentence", label_column="mood")


def _runner():
    import run_experiments

    return run_experiments


def test_experiment_runner_runs_the_chosen_datasets_and_settings_and_each_datasets_subset(tmp_path, monkeypatch):
    runner = _runner()
    calls = []

    def fake_run(argv, **kwargs):  # stands in for a training run: records its options, writes its results.json
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"results": {"run": {"accuracy": 1.0}}}))
        calls.append(argv[2:])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    grid = {
        "output_dir": str(tmp_path), "seeds": [0, 1], "script": "scripts/train_text_classifier.py",
        "common": {"num_train_epochs": 2},
        "datasets": {"a": {"dataset": "x"},
                     "b": {"dataset": "y", "num_train_epochs": 5, "settings": ["no-mix", "s2"]}},
        "settings": {"no-mix": {"site": "none"}, "s1": {"site": "hidden"}, "s2": {"site": "embeddings"}},
    }  # fmt: skip
    runner.run_all(grid, python="python", datasets=["b"])
    ran = [(c[c.index("--dataset") + 1], c[c.index("--site") + 1], c[c.index("--seed") + 1]) for c in calls]
    assert ran == [("y", "none", "0"), ("y", "embeddings", "0"), ("y", "none", "1"), ("y", "embeddings", "1")]
    assert all("--settings" not in c and c[c.index("--num_train_epochs") + 1] == "5" for c in calls)
    calls.clear()
    runner.run_all(grid, python="python", settings=["s1", "s2"])  # b's s2 is done: only a's runs are left
    assert sorted((c[c.index("--dataset") + 1], c[c.index("--site") + 1]) for c in calls) == [
        ("x", "embeddings"), ("x", "embeddings"), ("x", "hidden"), ("x", "hidden")]  # fmt: skip
    # two shards split the grid's runs between them, each run exactly once; a dataset may have its own seeds
    for path in tmp_path.glob("*/*/seed*/results.json"):
        path.unlink()
    grid["datasets"]["a"]["seeds"] = [3]
    shards = []
    for k in (0, 1):
        calls.clear()
        runner.run_all(grid, python="python", shard=(k, 2))
        shards.append(
            {(c[c.index("--dataset") + 1], c[c.index("--site") + 1], c[c.index("--seed") + 1]) for c in calls}
        )
    assert not shards[0] & shards[1] and len(shards[0]) + len(shards[1]) == 3 + 4
    assert {run for run in shards[0] | shards[1] if run[0] == "x"} == {
        ("x", s, "3") for s in ("none", "hidden", "embeddings")
    }
    with pytest.raises(ValueError, match=r"--settings s9: not in the grid; it has no-mix, s1, s2"):
        runner.run_all(grid, python="python", settings=["s9"])
    with pytest.raises(ValueError, match=r"--datasets c: not in the grid; it has a, b"):
        runner.run_all(grid, python="python", datasets=["c"])
    for subset in (["no-mix", "s7"], ["s1"]):
        grid["datasets"]["b"]["settings"] = subset
        (tmp_path / "g.yaml").write_text(json.dumps(grid))  # JSON is YAML
        with pytest.raises(ValueError, match=r"datasets.b.settings=.* must list the baseline 'no-mix' and settings"):
            runner.load_grid(str(tmp_path / "g.yaml"))


def test_the_verdict_marks_a_metric_only_where_its_95_percent_interval_excludes_zero():
    runner = _runner()
    base = {s: {"accuracy": 0.80, "nll": 0.60, "ece": 0.05} for s in range(5)}

    def shifted(acc, nll, ece, spread=(0.0, 0.0, 0.0)):
        wobble = [-2, -1, 0, 1, 2]
        return {s: {"accuracy": 0.80 + acc + spread[0] * wobble[s], "nll": 0.60 + nll + spread[1] * wobble[s],
                    "ece": 0.05 + ece + spread[2] * wobble[s]} for s in range(5)}  # fmt: skip

    assert runner.verdict(shifted(0.02, -0.05, -0.02, (0.001, 0.001, 0.001)), base) == "acc +, NLL +, ECE +"
    assert runner.verdict(shifted(-0.02, 0.05, 0.02, (0.001, 0.001, 0.001)), base) == "acc -, NLL -, ECE -"
    # the same mean gain with a spread the 5-seed t-interval cannot separate from 0
    assert runner.verdict(shifted(0.02, -0.05, -0.02, (0.02, 0.05, 0.02)), base) == "acc =, NLL =, ECE ="
    assert runner.verdict({0: base[0]}, base) == "n < 2"
    mean, low, high = runner.interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)  # t(0.975, 2) = 4.3027


def test_the_axis_figures_draw_only_points_with_an_interval(tmp_path, monkeypatch):
    import matplotlib.axes

    runner = _runner()
    grid = {
        "output_dir": str(tmp_path), "seeds": [0, 1], "datasets": {"few": {}, "more": {}},
        "settings": {"no-mix": {"enabled": False}, "mix": {}},
        "axes": {"labels": {"title": "t", "xlabel": "per class", "lines": {"d": [[16, "few"], [64, "more"]]}}},
    }  # fmt: skip
    for dataset, setting, seed in itertools.product(("few", "more"), ("no-mix", "mix"), (0, 1)):
        if (dataset, setting, seed) == ("more", "mix", 1):
            continue  # "more" has one paired seed of "mix": no interval, no point
        folder = tmp_path / dataset / setting / f"seed{seed}"
        folder.mkdir(parents=True)
        metrics = {"accuracy": 0.5 + 0.1 * (setting == "mix") + 0.01 * seed, "nll": 1.0 - 0.01 * seed, "ece": 0.1}
        (folder / "results.json").write_text(json.dumps({"results": {"run": metrics}}))
    drawn = []
    plain = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "errorbar",
        lambda ax, x, y, **kw: drawn.append((kw["label"], list(y))) or plain(ax, x, y, **kw),
    )
    (path,) = runner.figures(grid)
    assert path == tmp_path / "labels.png" and path.stat().st_size > 0
    assert [label for label, _ in drawn] == ["mix"] * 3  # accuracy, NLL, ECE
    assert drawn[0][1] == pytest.approx([10.0])  # the "few" point only: +10 accuracy points on both seeds


def test_help_starts_with_the_mixing_options_and_the_recipes():
    from hiddenmix import RECIPES

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_text_classifier.py"), "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    first = text.index("mixing options (hiddenmix)")
    for name, recipe in RECIPES.items():
        assert f"  {name:<16} {recipe.use}" in text[first:]

    def option(name: str) -> int:  # where the option's own line is (the description quotes some of them)
        return text.index(f"\n  {name} ")

    assert first < option("--mixup_alpha") < option("--dataset") < option("--output_dir")
    assert first < option("--clean_loss_weight") < option("--output_dir")


def test_each_run_loads_its_model_once_and_the_recipe_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    data = write_csv(tmp_path / "data.csv", sentences(24))
    built = []
    real_build = script.build
    monkeypatch.setattr(script, "build", lambda *a: built.append(1) or real_build(*a))
    script.main(args_for(tiny_model_dir, data, tmp_path / "out", "--mixup_alpha", "0.3"))
    assert len(built) == 2  # two runs: the first run's model is the one the mixing was checked on
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("The 'few-labels' recipe over seeds, with intervals: docs/results.md")
    assert "[1/2] no-mix: training with no mixing" in "\n".join(printed)


def test_a_run_that_mixes_nothing_says_so_when_it_starts(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "data.csv", sentences(24))
    script.main(args_for(tiny_model_dir, data, tmp_path / "out", "--mixup_alpha", "0", "--recipe", "none"))
    printed = capsys.readouterr().out
    assert "[2/2] hidden-mix: training with no mixing (mixup_alpha and cutmix_alpha are 0, or prob is 0)" in printed


def test_unlabelled_rows_come_from_the_rest_of_the_pool_or_a_dataset_of_their_own(tiny_model_dir, tmp_path):
    from common.data import normalise_text

    data = write_csv(tmp_path / "data.csv", sentences(60))
    out = tmp_path / "pool"
    options = ["--train_samples_per_class", "4", "--unlabeled_samples", "10", "--unlabeled_batch_size", "4",
               "--unlabeled_augment", "swap", "--mixup_alpha", "0.5"]  # fmt: skip
    script.main(args_for(tiny_model_dir, data, out, *options))
    saved = json.loads((out / "results.json").read_text())
    assert saved["eval_protocol"]["unlabeled_rows"] + saved["eval_protocol"]["unlabeled_eval_overlap_removed"] == 10
    logs = {name: run["train_loss_curve"] for name, run in saved["results"].items()}
    assert all("mix/loss_unlabeled" in entry for entry in logs["hidden-mix"])
    assert not any("mix/loss_unlabeled" in entry for entry in logs["no-mix"])  # the baseline is plain fine-tuning
    # the rows drawn are none of the run's training or calibration rows
    from datasets import Dataset

    from common.data import unlabeled_rows

    pool = Dataset.from_dict({"text": [f"t{i}" for i in range(10)], "labels": list(range(10))})
    drawn = unlabeled_rows(pool, [1, 3, 5], 4, seed=0)
    assert drawn.column_names == ["text"] and len(drawn) == 4
    assert not {"t1", "t3", "t5"} & set(drawn["text"])
    assert (
        drawn["text"]
        == unlabeled_rows(pool, [1, 3, 5], 4, seed=0)["text"]
        != unlabeled_rows(pool, [1, 3, 5], 4, seed=1)["text"]
    )
    with pytest.raises(ValueError, match="unlabeled_samples=8 but only 7 rows of the training split"):
        unlabeled_rows(pool, [1, 3, 5], 8, seed=0)

    # a dataset of its own: its label column is ignored, and texts that are evaluation rows are removed
    validation = json.loads((tmp_path / "pool" / "results.json").read_text())["eval_rows"]
    evaluation = [normalise_text(t) for t in load_text_dataset(str(data), "sentence", "mood")[0]["validation"]["text"]]
    assert validation == len(evaluation)
    own = write_csv(tmp_path / "own.csv", [(evaluation[0].upper(), "whatever"), ("good good news", "x"),
                                           ("fine film", "y")])  # fmt: skip
    out = tmp_path / "own"
    options = ["--unlabeled_dataset", str(own), "--unlabeled_batch_size", "2", "--unlabeled_augment", "none"]
    script.main(args_for(tiny_model_dir, data, out, *options))
    protocol = json.loads((out / "results.json").read_text())["eval_protocol"]
    assert (protocol["unlabeled_rows"], protocol["unlabeled_eval_overlap_removed"]) == (2, 1)
    other = write_csv(tmp_path / "other.csv", [("good news", "x")], header=("review", "mood"))
    with pytest.raises(ValueError, match=r"unlabeled_dataset='.*other.csv' has no column 'sentence' for the text"):
        script.main(args_for(tiny_model_dir, data, tmp_path / "bad", "--unlabeled_dataset", str(other)))
    assert not (tmp_path / "bad").exists()
