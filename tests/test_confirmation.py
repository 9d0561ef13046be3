"""The confirmation protocol: evaluation rows split into development and test rows, the evaluation rows that repeat
a training text removed, and the paired bootstrap over seeds and test rows that the grid runner's report gives."""

import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import run_experiments as runner
from datasets import Dataset

from common.cli import InputError
from common.data import drop_train_overlap, eval_test_rows, normalise_text
from common.runs import RunArguments, load_for_run, score_logits

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- the evaluation rows
def test_overlap_with_the_training_texts_is_matched_on_normalised_text_and_counted():
    assert normalise_text("  Good \t NEWS\n today ") == "good news today"
    train = Dataset.from_dict({"text": ["Good news", "bad  film", "fine"], "labels": [0, 1, 0]})
    validation = Dataset.from_dict(
        {"text": ["good news", "awful", "  BAD film ", "fine day", "FINE"], "labels": [0, 1, 1, 0, 0]}
    )
    kept, removed = drop_train_overlap(train, validation)
    assert removed == 3 and kept["text"] == ["awful", "fine day"] and kept["labels"] == [1, 0]
    # a text pair is matched as a pair: the same first text with another second one is no repeat
    train = Dataset.from_dict({"text": ["a", "b"], "text_pair": ["x", "y"], "labels": [0, 1]})
    validation = Dataset.from_dict({"text": ["A", "a"], "text_pair": ["x ", "y"], "labels": [0, 1]})
    kept, removed = drop_train_overlap(train, validation)
    assert removed == 1 and kept["text_pair"] == ["y"]
    with pytest.raises(InputError, match=r"eval_dedup=True removes all 1 evaluation rows: each of their texts occurs"):
        drop_train_overlap(train, validation.select([0]))


def test_the_test_rows_are_stratified_by_label_and_drawn_by_a_fixed_seed_alone():
    labels = np.array([0] * 50 + [1] * 31 + [2] * 7 + [3] * 1 + [4] * 2)
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    for share in (0.5, 0.3, 0.8):
        test = eval_test_rows(labels, share)
        assert abs(test.sum() - share * len(labels)) <= 1
        for c in range(5):  # each label within one row of its share
            assert abs(test[labels == c].sum() - share * (labels == c).sum()) <= 1, (share, c)
        assert np.array_equal(test, eval_test_rows(labels, share))  # deterministic
    assert not np.array_equal(eval_test_rows(labels, 0.5), eval_test_rows(labels, 0.5, seed=1))
    assert 0 < eval_test_rows(labels, 0.5, stratify=False).sum() < len(labels)
    with pytest.raises(ValueError, match=r"eval_test_share=1.0 is not allowed; allowed: a share in \(0, 1\)"):
        eval_test_rows(labels, 1.0)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("\n".join(["sentence,mood", *(",".join(r) for r in rows)]) + "\n")


TRAIN_TEXTS = [f"train text {i} {w}" for i, w in enumerate(["good", "bad", "fine"] * 10)]
# 24 evaluation rows; rows 2, 7 and 20 repeat a training text (in other case and spacing)
EVAL_TEXTS = [f"eval row {i}" for i in range(24)]
EVAL_TEXTS[2], EVAL_TEXTS[7], EVAL_TEXTS[20] = "TRAIN text 0 good", " train  text 4 bad", "Train Text 29 fine "


@pytest.fixture
def folder(tmp_path):
    moods = ["pos", "neg", "neu"]
    write_csv(tmp_path / "train.csv", [(t, moods[i % 3]) for i, t in enumerate(TRAIN_TEXTS)])
    write_csv(tmp_path / "validation.csv", [(t, moods[(i * 7) % 3]) for i, t in enumerate(EVAL_TEXTS)])
    return tmp_path


def load(folder, **options):
    run = RunArguments(**options)
    columns = {"text": "sentence", "label": "mood"}
    return load_for_run(str(folder), kind="text", columns=columns, run=run, num_classes=None)


def test_a_run_keeps_the_same_test_rows_whatever_its_seed_cut_or_dedup(folder):
    plain, _ = load(folder)
    assert plain["eval_protocol"] == {"eval_rows_loaded": 24, "eval_dedup": False}
    assert plain["validation"]["eval_row"] == list(range(24)) and "eval_part" not in plain["validation"].column_names
    data, _ = load(folder, eval_test_share=0.5, eval_dedup=True, split_seed=0)
    rows, parts = data["validation"]["eval_row"], data["validation"]["eval_part"]
    assert sorted(set(range(24)) - set(rows)) == [2, 7, 20]
    protocol = data["eval_protocol"]
    assert protocol["train_overlap_removed"] == 3 and protocol["dev_rows"] + protocol["test_rows"] == 21
    assert protocol["test_rows"] == parts.count("test") and protocol["eval_part_seed"] == 0
    # the parts are drawn on the rows as loaded: the same for another training seed, without dedup, and after a cut
    by_row = dict(zip(rows, parts))
    for options in ({"split_seed": 5}, {"eval_dedup": False}, {"max_eval_samples": 9, "split_seed": 2}):
        other, _ = load(folder, **{"eval_test_share": 0.5, "eval_dedup": True, **options})
        pairs = dict(zip(other["validation"]["eval_row"], other["validation"]["eval_part"]))
        assert all(by_row[r] == p for r, p in pairs.items() if r in by_row), options
    assert len(other["validation"]) == 9


def test_bad_protocol_options_are_refused(folder):
    for share in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"eval_test_share={share} is not allowed; allowed: a share in \[0, 1\)"):
            RunArguments(eval_test_share=share)
    with pytest.raises(InputError, match=r"eval_test_share=0.5 leaves no (dev|test) row among the 1 evaluation rows"):
        load(folder, eval_test_share=0.5, max_eval_samples=1)
    with pytest.raises(InputError, match=r"eval_dedup=True matches the rows' text, and the data has columns"):
        load_for_run(
            "builtin:digits", kind="image", columns={"image": None, "label": None}, run=RunArguments(eval_dedup=True),
            num_classes=None,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- the bootstrap
def predictions(labels: np.ndarray, right: np.ndarray, confidence: float = 0.8, classes: int = 3) -> np.ndarray:
    """Probabilities with `confidence` on the label where `right`, else on the next class."""
    guess = np.where(right, labels, (labels + 1) % classes)
    probs = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    probs[np.arange(len(labels)), guess] = confidence
    return probs


def runs_of(labels, rights, confidence=0.8, ids=None):
    ids = np.arange(len(labels)) if ids is None else ids
    return {seed: (ids, labels, predictions(labels, right, confidence)) for seed, right in enumerate(rights)}


LABELS = np.arange(400) % 3


def test_identical_predictions_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    rights = [rng.random(400) < 0.7 for _ in range(3)]
    result = runner.paired_bootstrap(runs_of(LABELS, rights), runs_of(LABELS, rights), replicates=300)
    assert result["seeds"] == 3 and result["rows"] == 400
    for metric in ("accuracy", "nll", "ece"):
        assert result[metric] == (0.0, 0.0, 0.0), metric


def test_a_setting_right_where_the_baseline_is_wrong_gains_with_an_interval_above_zero():
    half = np.arange(400) % 2 == 0
    base = runs_of(LABELS, [half] * 3)
    better = runs_of(LABELS, [np.ones(400, bool)] * 3)
    result = runner.paired_bootstrap(better, base, replicates=500)
    mean, low, high = result["accuracy"]
    assert mean == pytest.approx(0.5) and 0.4 < low < 0.5 < high < 0.6
    assert result["nll"][2] < 0  # right with the same confidence: lower NLL, on every resample
    # the row resampling, known: one seed, a 50 % difference on 400 rows: half-width 1.96 · sqrt(0.25 / 400)
    _, low, high = runner.paired_bootstrap({0: better[0]}, {0: base[0]}, replicates=2000)["accuracy"]
    assert (high - low) / 2 == pytest.approx(1.96 * np.sqrt(0.25 / 400), rel=0.15)
    # the seed resampling, known: seed 0 no difference, seed 1 right on every row the baseline has wrong
    wrong = np.zeros(400, bool)
    mixed = runner.paired_bootstrap(runs_of(LABELS, [wrong, np.ones(400, bool)]), runs_of(LABELS, [wrong, wrong]))
    assert mixed["accuracy"] == (0.5, 0.0, 1.0)


def test_the_point_estimates_are_the_metrics_of_the_runs_and_the_rows_are_paired_by_id():
    rng = np.random.default_rng(1)
    ours, theirs = {}, {}
    for seed in range(3):
        for runs in (ours, theirs):
            logits = rng.normal(0, 2, (300, 3))
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            runs[seed] = (np.arange(300), LABELS[:300], probs)
    result = runner.paired_bootstrap(ours, theirs, replicates=200)
    for metric in ("accuracy", "nll", "ece"):
        expected = np.mean(
            [
                score_logits(np.log(ours[s][2]), LABELS[:300])[metric]
                - score_logits(np.log(theirs[s][2]), LABELS[:300])[metric]
                for s in range(3)
            ]
        )
        assert result[metric][0] == pytest.approx(expected, abs=1e-9), metric
        assert result[metric][1] <= result[metric][0] <= result[metric][2]
    # reproducible; a run given in another row order, or with a row the others lack, gives the same
    shuffled = dict(ours)
    order = rng.permutation(300)
    ids, labels, probs = ours[1]
    shuffled[1] = (np.append(ids[order], 999), np.append(labels[order], 0), np.vstack([probs[order], probs[:1]]))
    assert runner.paired_bootstrap(shuffled, theirs, replicates=200) == result
    assert runner.paired_bootstrap(ours, theirs, replicates=200, seed=1) != result
    with pytest.raises(
        ValueError, match=r"no seed has both a setting run \(\[5\]\) and a baseline run \(\[0, 1, 2\]\)"
    ):
        runner.paired_bootstrap({5: ours[0]}, theirs)
    relabelled = {0: (ids, (labels + 1) % 3, probs)}
    with pytest.raises(ValueError, match="the runs of seed 0 give a test row another label"):
        runner.paired_bootstrap(relabelled, {0: theirs[0]})


# ---------------------------------------------------------------------------------------------- the runner
def test_a_new_grid_gets_the_protocol_and_an_old_one_says_false(tmp_path, monkeypatch):
    def grid_file(**extra) -> str:
        grid = {"output_dir": str(tmp_path / "out"), "seeds": [0], "datasets": {"d": {"dataset": "x"}},
                "settings": {"no-mix": {"enabled": False}, "mix": {"site": "hidden"}}, **extra}  # fmt: skip
        (tmp_path / "g.yaml").write_text(json.dumps(grid))  # JSON is YAML
        return str(tmp_path / "g.yaml")

    grid = runner.load_grid(grid_file())
    assert runner.run_options(grid, "d", "mix") == {
        "eval_test_share": 0.5, "eval_dedup": True, "dataset": "x", "site": "hidden"}  # fmt: skip
    vit = runner.load_grid(grid_file(script="scripts/train_vit.py"))
    assert runner.run_options(vit, "d") == {"eval_test_share": 0.5, "dataset": "x"}
    assert runner.run_options(runner.load_grid(grid_file(confirmation=False)), "d") == {"dataset": "x"}
    custom = runner.load_grid(grid_file(confirmation={"eval_test_share": 0.3}, common={"eval_dedup": False}))
    assert runner.run_options(custom, "d") == {"eval_test_share": 0.3, "eval_dedup": False, "dataset": "x"}
    with pytest.raises(ValueError, match=r"confirmation=\{'test_share': 0.3\} is not allowed; allowed: true \(the"):
        runner.load_grid(grid_file(confirmation={"test_share": 0.3}))
    for name in ("ner", "regimes", "text_grid", "vit_grid", "vit_regimes"):  # measured before the protocol
        assert runner.load_grid(str(ROOT / "configs" / "experiments" / f"{name}.yaml"))["confirmation"] is False
    pilot = runner.load_grid(str(ROOT / "configs" / "experiments" / "few_labels_pilot.yaml"))
    assert pilot["confirmation"] is True and pilot["report_test"] is False  # chooses settings: never scores tests
    with pytest.raises(ValueError, match=r"report_test='no' is not allowed; allowed: true \(the report confirms"):
        runner.load_grid(grid_file(report_test="no"))
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text("{}")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    runner.run_all(grid, python="python", settings=["mix"])
    (argv,) = calls
    assert argv[argv.index("--eval_test_share") + 1] == "0.5" and argv[argv.index("--eval_dedup") + 1] == "True"


def write_run(folder: Path, metrics: dict, rows: np.ndarray, labels: np.ndarray, probs: np.ndarray, parts) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"results": {"run": metrics}, "run": {"ece_bins": 15}}))
    np.savez_compressed(
        folder / "predictions.npz", rows=rows, labels=labels, parts=np.asarray(parts), runs=np.array(["run"]),
        probs=probs[None].astype(np.float32),
    )  # fmt: skip


def test_the_report_scores_the_development_rows_and_confirms_on_the_test_rows(tmp_path):
    grid = {
        "name": "g", "output_dir": str(tmp_path), "seeds": [0, 1, 2], "confirmation": True,
        "datasets": {"d": {"dataset": "x"}, "old": {"dataset": "y"}},
        "settings": {"no-mix": {"enabled": False}, "mix": {"site": "hidden"}},
    }  # fmt: skip
    labels = np.arange(60) % 3
    parts = np.where(np.arange(60) % 2 == 0, "test", "dev")
    rng = np.random.default_rng(0)
    found = {}
    for setting, seed in itertools.product(("no-mix", "mix"), (0, 1, 2)):
        right = rng.random(60) < (0.9 if setting == "mix" else 0.6)
        probs = predictions(labels, right)
        gain = 0.1 * (setting == "mix")
        metrics = {"accuracy": 0.5, "nll": 1.0, "ece": 0.1, "dev/accuracy": 0.7 + gain + 0.01 * seed, "dev/nll": 0.8,
                   "dev/ece": 0.05, "test/accuracy": 0.0, "test/nll": 9.0, "test/ece": 0.9}  # fmt: skip
        write_run(tmp_path / "d" / setting / f"seed{seed}", metrics, np.arange(60), labels, probs, parts)
        found.setdefault(setting, {})[seed] = (np.arange(60)[parts == "test"], labels[parts == "test"],
                                               probs[parts == "test"])  # fmt: skip
        # an entry run before the protocol: no parts, its predictions on all the rows
        old = tmp_path / "old" / setting / f"seed{seed}"
        write_run(old, {"accuracy": 0.5 + gain, "nll": 1.0, "ece": 0.1}, np.arange(60), labels, probs, ["all"] * 60)
    text = runner.report(grid)
    section, old_section = text.split("\n## d\n")[1].split("\n## old\n")
    assert "`--eval_test_share 0.5 --eval_dedup True --dataset x`" in section
    assert "Development rows: the tables below score" in section
    assert "| mix | 3 | 81.00 ± 1.00 |" in section  # the development rows' accuracy, not that of all the rows
    above = section.split("Confirmation")[0]
    assert "9.000" not in above and "90.00" not in above  # no test metric above the confirmation table
    expected = runner.paired_bootstrap(found["mix"], found["no-mix"])
    mean, low, high = (100 * v for v in expected["accuracy"])
    row = f"| mix | 3 | 30 | {mean:+.2f} [{low:+.2f}, {high:+.2f}] |"
    assert row in section and low > 0
    assert "Confirmation" not in old_section and "Development rows" not in old_section
    assert "| mix | 3 | 60.00 ± 0.00 |" in old_section
    # where the grid runs SetFit, each setting is also confirmed against it
    for seed in (0, 1, 2):
        probs = predictions(labels, rng.random(60) < 0.75)
        write_run(tmp_path / "d" / "setfit" / f"seed{seed}", {"accuracy": 0.5, "nll": 1.0, "ece": 0.1},
                  np.arange(60), labels, probs, parts)  # fmt: skip
        found.setdefault("setfit", {})[seed] = (np.arange(60)[parts == "test"], labels[parts == "test"],
                                                probs[parts == "test"])  # fmt: skip
    with_setfit = runner.report({**grid, "settings": {**grid["settings"], "setfit": {"script": "setfit"}}})
    against = with_setfit.split("against SetFit")[1]
    versus = runner.paired_bootstrap(found["mix"], found["setfit"])
    mean, low, high = (100 * v for v in versus["accuracy"])
    assert f"| mix | 3 | 30 | {mean:+.2f} [{low:+.2f}, {high:+.2f}] |" in against and "| setfit |" not in against
    assert "against SetFit" not in text
    choosing = runner.report({**grid, "report_test": False})  # a grid that chooses settings never scores tests
    assert "Confirmation" not in choosing and "| mix | 3 | 81.00 ± 1.00 |" in choosing and row not in choosing
