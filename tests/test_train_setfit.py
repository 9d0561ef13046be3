"""scripts/train_setfit.py: its options and refusals, its rows (the text runs' for the same options), the runner's
setting that runs it (none of these need setfit), and one tiny run end to end where setfit is installed."""

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import run_experiments as runner  # scripts/ is on the test path
import torch
import train_setfit as script
import train_text_classifier as text_script
from transformers import AutoConfig, AutoModel, BertTokenizerFast

from common.cli import InputError

ROOT = Path(__file__).resolve().parents[1]
WORDS = "good bad fine great awful happy sad ok meh love hate news sport vote film".split()
MOODS = ("pos", "neg", "neu")


def write_csv(path, rows):
    path.write_text("\n".join(["sentence,mood", *(f"{text},{mood}" for text, mood in rows)]) + "\n")
    return path


def sentences(n, seed=0, words=3):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        picked = torch.randint(0, len(WORDS), (words + i % 3,), generator=g).tolist()
        rows.append((" ".join(WORDS[j] for j in picked), MOODS[i % 3]))
    return rows


@pytest.fixture
def folder(tmp_path):
    """60 training rows and 30 evaluation rows of 3 classes; 3 evaluation rows repeat a training text."""
    data = tmp_path / "data"
    data.mkdir()
    train = sentences(60)
    evaluation = sentences(30, seed=1, words=6)
    for i, j in ((0, 0), (7, 4), (20, 11)):
        evaluation[i] = (train[j][0].upper(), evaluation[i][1])
    write_csv(data / "train.csv", train)
    write_csv(data / "validation.csv", evaluation)
    return data


def data_args(folder, *extra):
    return ["--dataset", str(folder), "--text_column", "sentence", "--label_column", "mood", *extra]


# ---------------------------------------------------------------------------------------------- options
def test_setfits_own_defaults_are_left_unset_and_the_data_options_are_the_text_scripts(tmp_path):
    names = script.option_names()
    text = {f.name for t in (text_script.ScriptArguments, script.RunArguments) for f in dataclasses.fields(t)}
    # every data, scoring and output option of the text runs (SetFit trains on the labelled rows alone)
    assert text - {"ignore_mismatched_sizes", "unlabeled_dataset", "unlabeled_samples"} <= names
    assert not {"learning_rate", "max_steps", "per_device_train_batch_size", "mixup_alpha", "site"} & names
    source, run, args = script.parse(["--train_samples_per_class", "16", "--split_seed", "3"])
    assert run.train_samples_per_class == 16 and run.split_seed == 3 and run.recipe == "none"
    assert source.max_length == 64 and args.seed == 0 and args.output_dir == "outputs/setfit"
    assert args.setfit_kwargs() == {}  # SetFit's defaults, whatever its release says they are
    config = tmp_path / "c.yaml"
    config.write_text("num_iterations: 20\nsampling_strategy: unique\nbatch_size: 8\n")
    *_, args = script.parse(["--config", str(config), "--batch_size", "32", "--body_learning_rate", "1e-5"])
    assert args.setfit_kwargs() == {
        "num_iterations": 20, "sampling_strategy": "unique", "batch_size": 32, "body_learning_rate": 1e-5,
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--learning_rate", "1e-4"], r"unknown option '--learning_rate'"),
        (["--sampling_strategy", "random"], r"sampling_strategy='random' is not allowed; allowed: unset or one of ov"),
        (["--num_iterations", "0"], r"num_iterations=0 is not allowed; allowed: unset or an integer >= 1"),
        (["--body_learning_rate", "0"], r"body_learning_rate=0.0 is not allowed; allowed: a number > 0"),
    ],
)
def test_bad_options_are_refused(argv, match):
    with pytest.raises(InputError, match=match):
        script.parse(argv)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--recipe", "few-labels"], r"recipe='few-labels': a recipe sets mixing options, and SetFit does not mix"),
        (["--text_pair_column", "mood"], r"text_pair_column='mood': SetFit classifies single texts"),
    ],
)
def test_mixing_and_sentence_pairs_are_refused_and_nothing_is_written(folder, tmp_path, extra, match):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match):
        script.main(data_args(folder, "--output_dir", str(out), *extra))
    assert not out.exists()


def test_a_python_without_setfit_is_told_how_to_install_it_and_nothing_is_written(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setitem(sys.modules, "setfit", None)  # `import setfit` raises ImportError, installed or not
    pattern = r"SetFit is not installed in this Python \(.*\): .*pip install -e '\.\[setfit\]'.* setting `python:`"
    with pytest.raises(InputError, match=pattern):
        script.main(data_args(folder, "--output_dir", str(out)))
    assert not out.exists()
    monkeypatch.setitem(sys.modules, "setfit", types.SimpleNamespace(__version__="1.1.3"))
    with pytest.raises(InputError, match=r"setfit 1.1.3 is installed; this script needs setfit>=1.2"):
        script.main(data_args(folder, "--output_dir", str(out)))
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- the rows
class _Stop(Exception):
    """Ends a text run once its rows are loaded."""


def text_run_rows(argv, monkeypatch):
    """The rows scripts/train_text_classifier.py loads for `argv` (stopped before any model is built)."""
    loaded = []

    def recording(*args, **kwargs):
        data, names = script.load_for_run(*args, **kwargs)
        loaded.append((dict(data), names))
        return data, names

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(text_script, "load_for_run", recording)
    monkeypatch.setattr(text_script, "first_model", stop)
    with pytest.raises(_Stop):
        text_script.main(argv)
    (found,) = loaded
    return found


def rows_of(part):
    return {c: list(part.with_format(None)[c]) for c in sorted(part.column_names)}


def test_a_split_seed_draws_the_text_runs_rows(folder, tmp_path, monkeypatch):
    options = data_args(folder, "--train_samples_per_class", "4", "--calibration_size", "6", "--label_noise", "0.25",
                        "--eval_test_share", "0.5", "--eval_dedup", "true", "--max_eval_samples", "20")  # fmt: skip
    drawn = []
    for seed in (0, 1):
        argv = [*options, "--split_seed", str(seed)]
        theirs, their_names = text_run_rows([*argv, "--output_dir", str(tmp_path / f"text{seed}")], monkeypatch)
        ours, names = script.load_data(*script.parse(argv)[:2])
        assert names == their_names == ["neg", "neu", "pos"]
        for key in ("train", "validation", "calibration"):
            assert rows_of(ours[key]) == rows_of(theirs[key]), (seed, key)
        assert ours["eval_protocol"] == theirs["eval_protocol"]
        assert ours["eval_protocol"]["train_overlap_removed"] == 3 and len(ours["train"]) == 12
        assert {"eval_row", "eval_part"} <= set(ours["validation"].column_names)
        drawn.append(rows_of(ours["train"])["text"])
    assert drawn[0] != drawn[1]  # each seed its own subset


# ---------------------------------------------------------------------------------------------- the runner
def test_the_runner_runs_a_setfit_setting_with_its_interpreter_and_the_text_runs_data(tmp_path, monkeypatch, capsys):
    parsed = {}

    def fake_run(argv, **kwargs):  # parses the run's options as its script would, writes its results.json
        out = Path(argv[argv.index("--output_dir") + 1])
        which = script if argv[1].endswith("train_setfit.py") else text_script
        parsed[out.parts[-2], out.parts[-1]] = (argv, which.parse(argv[2:]))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"results": {"run": {"accuracy": 1.0}}}))
        return runner.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    grid = {
        "output_dir": str(tmp_path / "grid"), "seeds": [0, 1], "script": "scripts/train_text_classifier.py",
        "common": {"recipe": "none", "split_seed": "{seed}", "learning_rate": 5.0e-5, "per_device_train_batch_size": 8,
                   "warmup_steps": 0.1, "max_length": 48, "calibration_size": 300, "max_eval_samples": 1000,
                   "eval_shifts": ["typos:0.2"], "logging_steps": 10, "plot": False},
        "datasets": {"tw": {"dataset": "builtin:twitter-sentiment", "train_samples_per_class": 16, "max_steps": 300,
                            "max_train_samples": None}},
        "settings": {"no-mix": {"enabled": False}, "hidden": {"site": "hidden", "mixup_alpha": 0.4},
                     "setfit": {"script": "setfit", "python": sys.executable, "num_iterations": 20}},
    }  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(grid))  # JSON is YAML
    grid = runner.load_grid(str(path))
    runner.run_all(grid, python="python")
    assert len(parsed) == 6
    printed = capsys.readouterr().out
    for seed in (0, 1):
        argv, (ours, run, args) = parsed["setfit", f"seed{seed}"]
        text_argv, (theirs, text_run, text_args) = parsed["no-mix", f"seed{seed}"]
        assert argv[:2] == [sys.executable, str(ROOT / "scripts" / "train_setfit.py")]
        assert text_argv[:2] == ["python", str(ROOT / "scripts" / "train_text_classifier.py")]
        # the same rows: the same run options (the protocol's included) and the same data options
        assert dataclasses.asdict(run) == dataclasses.asdict(text_run)
        assert run.split_seed == seed and run.eval_test_share == 0.5 and run.eval_dedup is True
        assert run.max_train_samples is None and run.train_samples_per_class == 16
        assert (ours.dataset, ours.max_length) == (theirs.dataset, theirs.max_length) == (
            "builtin:twitter-sentiment", 48)  # fmt: skip
        assert args.seed == text_args.seed == seed and args.setfit_kwargs() == {"num_iterations": 20}
        for flag in ("--learning_rate", "--per_device_train_batch_size", "--max_steps", "--recipe", "--enabled"):
            assert flag not in argv and flag in text_argv
    assert printed.count("takes no recipe, learning_rate, per_device_train_batch_size, warmup_steps,") == 2
    assert "logging_steps, max_steps)" in printed
    report = runner.report(grid)
    assert "- `setfit`: `--num_iterations 20` (scripts/train_setfit.py)" in report
    assert "| setfit | 2 |" in report  # paired with the no-mix runs like any setting


@pytest.mark.parametrize(
    "setting,match",
    [
        ({"script": "bert"}, r"settings.s.script='bert' is not allowed; allowed: setfit in a setting other than"),
        ({"script": "setfit", "python": ""}, r"settings.s.python='' is not allowed; allowed: a path"),
    ],
)
def test_the_runner_refuses_an_unknown_script_or_interpreter(tmp_path, setting, match):
    grid = {"output_dir": str(tmp_path), "seeds": [0], "datasets": {"d": {}},
            "settings": {"no-mix": {"enabled": False}, "s": setting}}  # fmt: skip
    (tmp_path / "g.yaml").write_text(json.dumps(grid))
    with pytest.raises(ValueError, match=match):
        runner.load_grid(str(tmp_path / "g.yaml"))
    grid["settings"] = {"no-mix": {"script": "setfit"}}
    (tmp_path / "g.yaml").write_text(json.dumps(grid))
    with pytest.raises(ValueError, match=r"settings.no-mix.script='setfit' is not allowed"):
        runner.load_grid(str(tmp_path / "g.yaml"))


def test_a_missing_interpreter_fails_before_any_run(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(runner.subprocess, "run", lambda argv, **kwargs: ran.append(argv))
    grid = {"output_dir": str(tmp_path), "seeds": [0], "datasets": {"d": {"dataset": "x"}},
            "settings": {"no-mix": {"enabled": False},
                         "setfit": {"script": "setfit", "python": str(tmp_path / "nowhere" / "python")}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"settings.setfit.python='.*nowhere/python': no such interpreter"):
        runner.run_all(grid, python="python")
    assert ran == []


# ---------------------------------------------------------------------------------------------- a real run
@pytest.fixture
def tiny_body(tmp_path):
    """A tiny random BERT (a transformers model: SetFit gives it mean pooling)."""
    folder = tmp_path / "tiny-bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    config = AutoConfig.for_model(
        "bert", vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def test_a_tiny_setfit_run_writes_what_the_runner_reads(folder, tiny_body, tmp_path):
    pytest.importorskip(
        "setfit", minversion=script.MIN_SETFIT,
        reason="setfit is an optional extra (pip install -e '.[setfit]'); the tests above cover the script without it",
    )  # fmt: skip
    out = tmp_path / "out"
    argv = data_args(folder, "--model_name_or_path", str(tiny_body), "--output_dir", str(out), "--max_length", "16",
                     "--calibration_size", "6", "--eval_test_share", "0.5", "--eval_dedup", "true",
                     "--eval_shifts", "typos:0.2", "--num_iterations", "1", "--disable_tqdm", "true")  # fmt: skip
    results = script.main(argv)
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["results"]) == list(results) == ["setfit"]
    assert saved["setfit"]["num_iterations"] == 1 and saved["setfit"]["max_length"] == 16
    assert saved["setfit"]["pairs"] == 2 * 1 * saved["train_rows"]
    metrics = results["setfit"]
    assert {"accuracy", "macro_f1", "nll", "ece", "nll_ts", "ece_ts", "temperature", "train_seconds"} <= set(metrics)
    assert {"dev/accuracy", "test/nll_ts", "shift/typos:0.2/accuracy", "test/shift/typos:0.2/ece"} <= set(metrics)
    predictions = np.load(out / "predictions.npz")
    assert list(predictions["runs"]) == ["setfit"] and predictions["probs"].shape == (1, saved["eval_rows"], 3)
    (probs,) = predictions["probs"]
    labels, parts = predictions["labels"], predictions["parts"]
    assert np.all(np.diff(predictions["rows"]) > 0) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    for part in ("dev", "test"):
        keep = parts == part
        assert metrics[f"{part}/accuracy"] == pytest.approx((probs[keep].argmax(-1) == labels[keep]).mean())
        nll = -np.log(probs[keep][np.arange(keep.sum()), labels[keep]]).mean()
        assert metrics[f"{part}/nll"] == pytest.approx(nll, rel=1e-4)
