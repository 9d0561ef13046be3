"""Fine-tune a ViT image classifier with hiddenmix mixing and compare it with a no-mix baseline trained the same way.

Examples:
    python scripts/train_vit.py                  # a small ViT on sklearn's digits, the `vit` recipe
    python scripts/train_vit.py --config configs/vit/patch_cutmix.yaml --num_train_epochs 10
    python scripts/train_vit.py --dataset path/to/imagefolder --model_name_or_path path/to/vit --site hidden
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/train_vit.py --config ...

Where the mix happens (`--site`; `--enabled false` trains the baseline only):
    input       Mixup / CutMix / FMix of the pixel values (inside the model's forward).
    embeddings  the patch-token sequence entering the first layer; with CutMix the box is drawn on the patch grid
                (patch-token CutMix), with Mixup every token is interpolated.
    hidden      the output of a layer drawn from `--layers` (manifold mixup).

Data (`--dataset`): `builtin:digits` (sklearn's 1,797 real 8x8 grey digits, offline), an `imagefolder` directory
(`<dir>/<label>/*.png`, or `<dir>/train/<label>/...` and `<dir>/validation/<label>/...`), a folder written by
`save_to_disk`, or a hub name where the hub is reachable. Images are resized to the model's `image_size`, converted
to its `num_channels` (grey or RGB) and normalised, in plain PIL + torch.

Model: `--model_name_or_path` (a local ViT / DeiT / BEiT folder; its head is replaced for the dataset's labels) or,
without it, a randomly initialised ViT built from `--image_size --patch_size --hidden_size --num_hidden_layers ...`
(no pretrained image transformer is available offline; the defaults train on digits in seconds on 2 CPU cores).

Both runs start from the same weights and see the same data in the same order with the same seeds; only the mixing
differs. Prints and writes accuracy, macro-F1, NLL and ECE of each (`results.json`), and a reliability diagram
(`reliability.png`) comparing the two, in `--output_dir`.

Options: this script's own, every `MixupTrainingArguments` option (the mixing options of `hiddenmix.MixConfig` and
all of `transformers.TrainingArguments`), and `--config FILE.yaml`, whose values the command line overrides. The
mixing starts from the measured `vit` recipe (`hiddenmix.RECIPES`: pixel Mixup α 0.8 / CutMix α 1.0 on half the
samples); `--recipe none` starts from the DeiT settings (every sample mixed) instead.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    default_data_collator,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from common.cli import check_output_dir, input_errors, run_main  # noqa: E402
from common.data import parse_shift, shift_image  # noqa: E402
from common.runs import (  # noqa: E402
    RunArguments,
    finish_distributed,
    first_model,
    load_for_run,
    parse_training,
    planned_runs,
    replace_args,
    run_summary,
    train_and_score,
    write_results,
)
from hiddenmix import MixupTrainingArguments  # noqa: E402

CHANNEL_MODES = {1: "L", 3: "RGB"}  # the PIL mode an image is converted to for a model of that many channels


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local ViT / DeiT / BEiT folder (or hub name); default: a random-init ViT built from the "
            "options below."
        },
    )
    dataset: str = field(
        default="builtin:digits",
        metadata={"help": "builtin:digits | an imagefolder directory | a save_to_disk folder | a hub name."},
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column; unset: 'image'."})
    label_column: str | None = field(default=None, metadata={"help": "Label column; unset: 'label'."})
    image_mean: list[float] | None = field(
        default=None, metadata={"help": "Per-channel mean to subtract (default: the model's preprocessor, else 0.5)."}
    )
    image_std: list[float] | None = field(
        default=None, metadata={"help": "Per-channel std to divide by (default: the model's preprocessor, else 0.5)."}
    )
    # The ViT built when no model_name_or_path is given (ignored otherwise: a pretrained model has its own).
    image_size: int = field(default=8, metadata={"help": "Built ViT: image side; images are resized to it."})
    patch_size: int = field(default=2, metadata={"help": "Built ViT: patch side (must divide image_size)."})
    num_channels: int | None = field(
        default=None, metadata={"help": "Built ViT: 1 (grey) or 3 (RGB); default: that of the first training image."}
    )
    hidden_size: int = field(default=64, metadata={"help": "Built ViT: width of the tokens."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Built ViT: number of layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Built ViT: heads (must divide hidden_size)."})
    intermediate_size: int = field(default=128, metadata={"help": "Built ViT: width of the MLPs."})
    hidden_dropout_prob: float = field(default=0.0, metadata={"help": "Built ViT: dropout of the hidden states."})
    attention_probs_dropout_prob: float = field(default=0.0, metadata={"help": "Built ViT: attention dropout."})

    def __post_init__(self) -> None:
        for name in (
            "image_size",
            "patch_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} does not divide image_size={self.image_size}; allowed: a divisor of "
                "image_size (e.g. 2 or 4 for 8x8 digits)."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} does not divide hidden_size={self.hidden_size}."
            )
        if self.num_channels is not None and self.num_channels not in CHANNEL_MODES:
            raise ValueError(
                f"num_channels={self.num_channels!r} is not allowed; choose one of {list(CHANNEL_MODES)}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1).")


# The defaults: a 4-layer, 64-wide ViT on 8x8 digits (17 tokens), small enough for 2 CPU cores.
DEFAULTS = dict(
    output_dir="outputs/vit",
    num_train_epochs=15,
    learning_rate=2e-3,
    per_device_train_batch_size=64,
    per_device_eval_batch_size=256,
    warmup_steps=0.1,  # a float in [0, 1) is a share of the steps
    weight_decay=0.05,
    logging_steps=50,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    seed=0,
    data_seed=0,
    recipe="vit",  # hiddenmix's measured recipe for this use; --recipe none for the DeiT settings below
    # the DeiT recipe's pixel mixing: Mixup α 0.8 or CutMix α 1.0, half the samples each
    site="input",
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    switch_prob=0.5,
    # the datasets hold images and labels and are turned into pixel_values on the fly (`with_transform`), so the
    # Trainer must not drop the columns the model's forward does not name
    remove_unused_columns=False,
)


# ---------------------------------------------------------------------------------------------------- images
def image_to_tensor(image: Any, size: tuple[int, int], num_channels: int) -> torch.Tensor:
    """One image (PIL, or an `[H, W]` / `[H, W, C]` array of 0..255 integers or 0..1 floats) as `[C, H, W]` floats
    in [0, 1], converted to grey / RGB and resized (bilinear) to `size = (H, W)`."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.ndim not in (2, 3):
            raise ValueError(f"an image must be [H, W] or [H, W, C]; got an array of shape {array.shape}.")
        if array.dtype.kind == "f":
            array = np.clip(array, 0.0, 1.0) * 255.0
        image = Image.fromarray(np.round(array).astype(np.uint8).squeeze())
    image = image.convert(CHANNEL_MODES[num_channels])
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).reshape(height, width, num_channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def make_transform(image: dict, shift: str | None = None) -> Any:
    """The `with_transform` function: a batch of rows to `pixel_values` (normalised) and `labels`. With `shift`,
    each image is shifted first (`common.data.shift_image`), seeded by its `row` so every run sees the same."""
    mean = torch.tensor(image["mean"], dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.tensor(image["std"], dtype=torch.float32).reshape(-1, 1, 1)

    def transform(batch: dict) -> dict:
        pixels = []
        for k, x in enumerate(batch["image"]):
            tensor = image_to_tensor(x, image["size"], image["num_channels"])  # (C, H, W) in [0, 1]
            if shift is not None:
                shifted = shift_image(tensor.numpy(), shift, np.random.default_rng(batch["row"][k]))
                tensor = torch.from_numpy(shifted).to(torch.float32)
            pixels.append((tensor - mean) / std)
        return {"pixel_values": pixels, "labels": batch["labels"]}

    return transform


# ---------------------------------------------------------------------------------------------------- model
def _channels_of(first: Any) -> int:
    """1 when `first` (the first training image) is grey, else 3."""
    return 1 if getattr(first, "mode", None) in ("L", "1", "I", "I;16", "F") or np.asarray(first).ndim == 2 else 3


def build_model(script: ScriptArguments, label_names: list[str], num_channels: int | None) -> torch.nn.Module:
    """The pretrained model at `model_name_or_path` with a fresh head for `label_names`, or a random-init ViT."""
    labels = dict(
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )
    if script.model_name_or_path is None:
        config = ViTConfig(
            image_size=script.image_size,
            patch_size=script.patch_size,
            num_channels=num_channels,
            hidden_size=script.hidden_size,
            num_hidden_layers=script.num_hidden_layers,
            num_attention_heads=script.num_attention_heads,
            intermediate_size=script.intermediate_size,
            hidden_dropout_prob=script.hidden_dropout_prob,
            attention_probs_dropout_prob=script.attention_probs_dropout_prob,
            **labels,
        )
        return ViTForImageClassification(config)
    # ignore_mismatched_sizes: a checkpoint's head (e.g. ImageNet's 1,000 classes) is replaced by one for our labels
    return AutoModelForImageClassification.from_pretrained(
        script.model_name_or_path, ignore_mismatched_sizes=True, **labels
    )


def image_settings(script: ScriptArguments, first_image: Any) -> dict:
    """Size, channels, mean and std the images are prepared with, checked against the model to be trained."""
    if script.model_name_or_path is None:
        channels = script.num_channels or _channels_of(first_image)
        size = (script.image_size, script.image_size)
        processor = {}
    else:
        try:
            config = AutoConfig.from_pretrained(script.model_name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"model_name_or_path={script.model_name_or_path!r} cannot be loaded ({err}); allowed: a local folder "
                "with a config.json (ViT, DeiT, BEiT, ...), or a hub name where the hub is reachable."
            ) from err
        if getattr(config, "image_size", None) is None:
            raise ValueError(
                f"model_name_or_path={script.model_name_or_path!r} is a {config.model_type!r} model with no "
                "image_size; allowed: an image classifier such as ViT, DeiT or BEiT."
            )
        channels = getattr(config, "num_channels", 3)
        if channels not in CHANNEL_MODES:
            raise ValueError(
                f"model_name_or_path={script.model_name_or_path!r} takes num_channels={channels}; images can be "
                f"prepared with {list(CHANNEL_MODES)} channels."
            )
        side = config.image_size
        size = (side, side) if isinstance(side, int) else tuple(side)
        processor_file = Path(script.model_name_or_path) / "preprocessor_config.json"
        processor = json.loads(processor_file.read_text()) if processor_file.is_file() else {}
    stats = {}
    for name, given, found in (
        ("image_mean", script.image_mean, processor.get("image_mean")),
        ("image_std", script.image_std, processor.get("image_std")),
    ):
        value = list(given if given is not None else (found if found is not None else [0.5]))
        if len(value) == 1:
            value = value * channels
        if len(value) != channels or (name == "image_std" and min(value) <= 0):
            raise ValueError(
                f"{name}={value} does not fit the model's {channels} channel(s); allowed: one value, or {channels} "
                "values" + (" > 0." if name == "image_std" else ".")
            )
        stats[name] = value
    return {"size": size, "num_channels": channels, "mean": stats["image_mean"], "std": stats["image_std"]}


# ---------------------------------------------------------------------------------------------------- training
def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, MixupTrainingArguments]:
    """The script's, the run's and the training arguments of `argv` (`--config FILE.yaml` included)."""
    return parse_training(ScriptArguments, argv, defaults=DEFAULTS, description=__doc__, prog="train_vit.py")


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train the runs, write and print the results.

    Returns:
        `{run name: metrics}`.
    """
    hf_logging.set_verbosity_warning()
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, args = parse(given)
    # Everything is checked before anything is written: the output folder, the data, the model and the mixer.
    with input_errors():
        out = check_output_dir(args.output_dir, run.overwrite_output_dir)
        data, label_names = load_for_run(
            script.dataset,
            kind="image",
            columns={"image": script.image_column, "label": script.label_column},
            run=run,
            num_classes=args.num_classes,
        )
        protocol = data.pop("eval_protocol")
        image = image_settings(script, data["train"][0]["image"])
        for spec in run.eval_shifts or []:
            parse_shift(spec, "image")
        rows = data["validation"].add_column("row", list(range(len(data["validation"]))))
        shifts = {spec: rows.with_transform(make_transform(image, spec)) for spec in run.eval_shifts or []}
        data = {k: v.with_transform(make_transform(image)) for k, v in data.items() if v is not None}
        data["shifts"] = shifts
        runs = planned_runs(replace_args(args, num_classes=len(label_names)), run)
        # every run starts from the same weights: each model is built right after seeding
        model = first_model(lambda: build_model(script, label_names, image["num_channels"]), runs, args.seed)

    results, curves = {}, {}
    for i, (name, run_args) in enumerate(runs.items(), 1):
        if model is None:
            torch.manual_seed(run_args.seed)
            model = build_model(script, label_names, image["num_channels"])
        torch.manual_seed(run_args.seed)
        results[name], curves[name] = train_and_score(
            name,
            model=model,
            args=run_args,
            data=data,
            run=run,
            position=f"{i}/{len(runs)}",
            data_collator=default_data_collator,
        )
        model = None

    if args.process_index == 0:
        model_name = script.model_name_or_path or (
            f"ViT {script.image_size}px/{script.patch_size}, {script.num_hidden_layers}x{script.hidden_size} "
            "(random init)"
        )
        summary = run_summary(
            "scripts/train_vit.py",
            given,
            model=model_name,
            dataset=script.dataset,
            labels=label_names,
            data=data,
            run=run,
            runs=runs,
            results=results,
            image=image,
            eval_protocol=protocol,
        )
        write_results(out, summary, curves, run, title=f"{model_name} on {script.dataset}")
    return results


if __name__ == "__main__":
    run_main(main)
    finish_distributed()
