"""scripts/train_token_classifier.py end to end on a tiny tagger, its tag alignment, its refusals, entity-level
metrics, and a 2-process launch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import train_token_classifier as script
from transformers import AutoConfig, AutoModelForTokenClassification, BertTokenizerFast, EvalPrediction

from hiddenmix.metrics import token_classification_metrics

ROOT = Path(__file__).resolve().parents[1]
WORDS = "paris london obama apple google went to the new york times said with music band show".split()
TAGS = ["O", "B-loc", "I-loc", "B-per", "B-org", "I-org"]


@pytest.fixture(scope="module")
def tiny_tagger_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-tagger")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing"]
    # transformers 5's BertTokenizerFast takes the vocabulary as `vocab=` (a `vocab_file=` keyword is ignored)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    config = AutoConfig.for_model(
        "bert",
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=5,
    )
    torch.manual_seed(0)
    AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    return folder


def tagged_file(path: Path, rows: int = 40) -> Path:
    g = np.random.default_rng(0)
    lines = []
    for _ in range(rows):
        n = int(g.integers(2, 7))
        words = [WORDS[int(k)] for k in g.integers(0, len(WORDS), n)]
        tags = [TAGS[int(k)] for k in g.integers(0, 5, n)]
        lines.append(json.dumps({"words": words, "ner": tags}))
    path.write_text("\n".join(lines) + "\n")
    return path


def args_for(model_dir, data, out, *extra):
    return [
        "--model_name_or_path", str(model_dir), "--dataset", str(data), "--tokens_column", "words",
        "--tags_column", "ner", "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "8",
        "--logging_steps", "1", "--disable_tqdm", "true", "--layers", "1", "2", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "site_args",
    [
        ["--site", "hidden", "--layers", "1", "2"],
        ["--site", "embeddings", "--mixup_alpha", "0", "--cutmix_alpha", "1.0", "--layers", "1"],
    ],
    ids=["hidden", "span-cutmix"],
)
def test_runs_end_to_end_with_a_baseline_and_entity_scores(tiny_tagger_dir, tmp_path, site_args):
    data = tagged_file(tmp_path / "tags.jsonl")
    out = tmp_path / "out"
    results = script.main(args_for(tiny_tagger_dir, data, out, *site_args))
    site = site_args[1]
    assert set(results) == {"no-mix", f"{site}-mix"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["labels"][0] == "O" and set(saved["labels"]) == set(TAGS[:5])
    assert saved["eval_rows"] == 8 and saved["train_rows"] == 32
    for metrics in results.values():
        assert {"f1", "precision", "recall", "accuracy", "nll", "ece"} <= set(metrics)
    assert results[f"{site}-mix"]["nll"] != results["no-mix"]["nll"]  # the mixed run really trained differently


def test_tags_go_on_each_words_first_piece_and_special_tokens_are_ignored(tiny_tagger_dir):
    import datasets

    tokenizer = BertTokenizerFast.from_pretrained(tiny_tagger_dir)
    part = datasets.Dataset.from_dict({"tokens": [["paris", "went", "bands"]], "labels": [[1, 0, 4]]})
    names = ["O", "B-loc", "I-loc", "B-per", "B-org", "I-org"]
    first = script.tokenize(part, tokenizer, script.ScriptArguments(), names)[0]
    pieces = tokenizer.convert_ids_to_tokens(first["input_ids"])
    assert pieces == ["[CLS]", "paris", "went", "band", "##s", "[SEP]"]
    assert first["labels"] == [-100, 1, 0, 4, -100, -100]
    every = script.tokenize(part, tokenizer, script.ScriptArguments(label_all_tokens=True), names)[0]
    assert every["labels"] == [-100, 1, 0, 4, 5, -100]  # the piece after a B-org gets I-org


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--train_samples_per_class", "4"], r"train_samples_per_class=4: not defined for tagged tokens"),
        (["--label_noise", "0.2"], r"label_noise=0.2: not defined for tagged tokens"),
        (["--tags_column", "tags"], r"label_column='tags' is not a column of dataset=.*; its columns are \['words', "),
    ],
    ids=["per-class", "noise", "column"],
)
def test_bad_input_is_refused_before_anything_is_written(tiny_tagger_dir, tmp_path, extra, match):
    data = tagged_file(tmp_path / "tags.jsonl")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        script.main(args_for(tiny_tagger_dir, data, out, *extra))
    assert not out.exists()


def test_entity_metrics_score_whole_entities_and_skip_ignored_positions():
    names = ["O", "B-per", "I-per", "B-loc"]
    labels = np.array([[-100, 1, 2, 0, 3, -100], [-100, 0, 3, -100, -100, -100]])
    hit = np.full((2, 6, 4), -5.0)
    for i, row in enumerate(np.where(labels < 0, 0, labels)):
        hit[i, np.arange(6), row] = 5.0
    perfect = token_classification_metrics(names)(EvalPrediction(predictions=hit, label_ids=labels))
    assert perfect["f1"] == 1.0 and perfect["accuracy"] == 1.0
    half = hit.copy()
    half[0, 2] = -5.0
    half[0, 2, 0] = 5.0  # I-per -> O: the person entity is cut short, so it no longer matches; loc still does
    scores = token_classification_metrics(names)(EvalPrediction(predictions=half, label_ids=labels))
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(5 / 6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_trains_the_tagger_with_two_processes(tiny_tagger_dir, tmp_path):
    data = tagged_file(tmp_path / "tags.jsonl", rows=64)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(ROOT / "scripts" / "train_token_classifier.py"),
        *args_for(tiny_tagger_dir, data, out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["training"]["world_size"] == 2
    assert set(saved["results"]) == {"no-mix", "hidden-mix"}
