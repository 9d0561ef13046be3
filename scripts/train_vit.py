"""Fine-tune a ViT image classifier with hiddenmix mixing and compare it with a no-mix baseline trained the same way.

    python scripts/train_vit.py                  # offline demo: a small ViT on sklearn's digits, the `vit` recipe
    python scripts/train_vit.py --config configs/vit/patch_cutmix.yaml --num_train_epochs 10
    python scripts/train_vit.py --dataset path/to/imagefolder --model_name_or_path path/to/vit --method hidden
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/train_vit.py --config ...

Where the mix happens (`--method`):
    none        only the baseline, no mixing.
    input       Mixup / CutMix of the pixel values (the mixer's `input` site, inside the model's forward).
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

Every option of `MixConfig` is an option here (`--mixup_alpha 0.8 --cutmix_alpha 1.0 --switch_prob 0.5 ...`;
`MixConfig.seed` is `--mix_seed`), as are all of `transformers.TrainingArguments` and the script's own below;
`--config FILE.yaml` sets any of them and the command line overrides the file.

The mixing starts from the measured `vit` recipe (`hiddenmix.RECIPES`: pixel Mixup α 0.8 / CutMix α 1.0 on half the
samples); the YAML file and the command line override it, and `--recipe none` starts from the DeiT settings
(every sample mixed) instead.
"""

from __future__ import annotations

import dataclasses
import functools
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
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    default_data_collator,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from hiddenmix import HiddenMixer, MixConfig  # noqa: E402
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
from hiddenmix.data import check_columns_and_eval_split  # noqa: E402

METHODS = ("none", "input", "embeddings", "hidden")
BUILTIN_IMAGE_DATASETS = {"digits": ("image", "label")}  # name: (image column, label column)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CHANNEL_MODES = {1: "L", 3: "RGB"}  # the PIL mode an image is converted to for a model of that many channels


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local ViT / DeiT / BEiT folder (or hub name); default: a random-init ViT built from the "
                  "options below."},
    )  # fmt: skip
    dataset: str = field(
        default="builtin:digits",
        metadata={"help": "builtin:digits | an imagefolder directory | a save_to_disk folder | a hub name."},
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: 'image')."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: 'label')."})
    validation_split: str | None = field(default=None, metadata={"help": "Evaluation split (default: found/made)."})
    validation_size: float = field(default=0.2, metadata={"help": "Share held out when there is no eval split."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Seeded training subset size."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Seeded evaluation subset size."})
    method: str = field(default="input", metadata={"help": "none | input | embeddings | hidden: where to mix."})
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
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not allowed; choose one of {list(METHODS)}.")
        for name in ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size"):  # fmt: skip
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
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value!r} must be None or an integer >= 1.")


# Defaults of the demo: a 4-layer, 64-wide ViT on 8x8 digits (17 tokens), small enough for 2 CPU cores.
TRAINING_DEFAULTS = dict(
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
    recipe="vit",  # hiddenmix's measured recipe for this use; --recipe none for the plain defaults
    # the datasets hold images and labels and are turned into pixel_values on the fly (`with_transform`), so the
    # Trainer must not drop the columns the model's forward does not name
    remove_unused_columns=False,
)
# The DeiT recipe's pixel mixing: Mixup α 0.8 or CutMix α 1.0, half the samples each.
MIX_DEFAULTS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)


# ---------------------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def _digits():
    """sklearn's digits as a `Dataset` of 8x8 grey PIL images (0..16 scaled to 0..255) and `ClassLabel` labels."""
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray(np.round(x * (255.0 / 16.0)).astype(np.uint8), mode="L") for x in digits.images]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    return datasets.Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)


def _read(dataset: str) -> Any:
    import datasets

    if dataset.startswith("builtin:"):
        name = dataset.removeprefix("builtin:")
        if name not in BUILTIN_IMAGE_DATASETS:
            raise ValueError(
                f"dataset={dataset!r} is not a built-in dataset; choose one of "
                f"{['builtin:' + n for n in BUILTIN_IMAGE_DATASETS]}, a local folder, or a hub name."
            )
        return datasets.DatasetDict({"train": _digits()})
    path = Path(dataset)
    if path.is_file():
        raise ValueError(
            f"dataset={dataset!r} is a file; give an imagefolder directory (<dir>/<label>/<image>), a folder written "
            "by save_to_disk, builtin:digits, or a hub name."
        )
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            # datasets saves an empty split with no data file and then fails to load it (an IndexError deep inside):
            # say what it is instead
            for state in [path / "state.json", *path.glob("*/state.json")]:
                if state.is_file() and not json.loads(state.read_text()).get("_data_files", [None]):
                    split = "train" if state.parent == path else state.parent.name
                    raise ValueError(f"dataset={dataset!r} is an empty dataset: its split {split!r} has no row.")
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.rglob("*") if p.is_file()):
            raise ValueError(
                f"dataset={dataset!r} is an empty dataset: a folder with no image file ({sorted(IMAGE_EXTENSIONS)}) "
                "that is not a dataset saved with save_to_disk either."
            )
        return datasets.load_dataset("imagefolder", data_dir=str(path))
    try:
        return datasets.load_dataset(dataset)
    except Exception as err:
        raise ValueError(
            f"dataset={dataset!r} is neither a local folder nor a loadable hub dataset ({err}). Offline, use a local "
            "imagefolder / save_to_disk folder or builtin:digits."
        ) from err


def _label_namer(feature: Any) -> Any:
    """A label value's name: the `ClassLabel` name of an id, else the value as a string."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return lambda value: feature.names[value]
    return str


def load_image_dataset(
    dataset: str,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    validation_split: str | None = None,
    validation_size: float = 0.2,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
) -> tuple[Any, list[str], str, str]:
    """Load a labelled image dataset as `(DatasetDict(train, validation), label_names, image_column, label_column)`.

    Images are not decoded here (only the label column is read), so this is quick on a large folder.

    Args:
        dataset: `builtin:digits`, an imagefolder directory, a `save_to_disk` folder, or a hub name.
        image_column, label_column: the columns to use (defaults `image`, `label`).
        validation_split: the split to evaluate on; default: `validation`, else `test`, else a stratified
            `validation_size` share held out of `train` (seeded).
        max_train_samples, max_eval_samples: keep a seeded random subset of this size.
        seed: seed of the held-out split and the subsets.

    Returns:
        The two splits with their original columns, the training label names (the classes present in the training
        split, in `ClassLabel` order or sorted), and the resolved column names.

    Raises:
        ValueError: a column is missing (the message lists the columns that exist), a label of the evaluation split
            is not among the training labels, a split is empty, or the dataset cannot be read.
    """
    import datasets

    raw = _read(dataset)
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    if "train" not in raw:
        raise ValueError(f"dataset={dataset!r} has no 'train' split; its splits are {sorted(raw)}.")
    image_column, label_column = image_column or "image", label_column or "label"
    columns = {"image_column": image_column, "label_column": label_column}
    validation_split = check_columns_and_eval_split(raw, dataset, columns, validation_split)
    train = raw["train"]
    if len(train) == 0:
        raise ValueError(f"dataset={dataset!r} is an empty dataset: its training split has no row.")
    # rows without a label are dropped; `input_columns` reads the label column only, never decoding an image
    has_label = dict(input_columns=[label_column], desc="Dropping rows without a label")
    train = train.filter(lambda label: label is not None and label != "", **has_label)

    label_feature = train.features[label_column]
    class_label = isinstance(label_feature, datasets.ClassLabel)
    to_name = _label_namer(label_feature)

    if validation_split is None:
        if not 0 < validation_size < 1:
            raise ValueError(f"validation_size={validation_size!r} must be in (0, 1) to hold out a validation split.")
        if not class_label:  # stratifying needs a ClassLabel column
            train = train.map(lambda b: {"__label": [str(v) for v in b]}, batched=True, input_columns=[label_column])
            train = train.class_encode_column("__label")
        by = label_column if class_label else "__label"
        try:
            split = train.train_test_split(test_size=validation_size, seed=seed, stratify_by_column=by)
        except ValueError as err:  # a class with a single image cannot be in both parts
            raise ValueError(
                f"dataset={dataset!r}: cannot hold out a stratified validation_size={validation_size} share ({err}); "
                "give a validation split or more images per class."
            ) from err
        train, validation = split["train"], split["test"]
        if not class_label:
            train, validation = train.remove_columns("__label"), validation.remove_columns("__label")
    else:
        validation = raw[validation_split]
        for arg, column in (("image_column", image_column), ("label_column", label_column)):
            if column not in validation.column_names:
                raise ValueError(
                    f"{arg}={column!r} is not a column of the {validation_split!r} split of dataset={dataset!r}; its "
                    f"columns are {validation.column_names}."
                )
        validation = validation.filter(lambda label: label is not None and label != "", **has_label)
    for name, part in (("training", train), ("evaluation", validation)):
        if len(part) == 0:
            raise ValueError(f"dataset={dataset!r} is an empty dataset: the {name} split has no labelled row.")

    # The label set is what the training split holds: a class the model never sees in training cannot be learned,
    # and an evaluation label outside it has no output to be scored against.
    present = {to_name(v) for v in train[label_column]}
    if class_label:
        label_names = [n for n in label_feature.names if n in present]
    else:
        label_names = sorted(present)
    to_name_eval = _label_namer(validation.features[label_column])  # its ClassLabel may differ from train's
    unknown = sorted({to_name_eval(v) for v in validation[label_column]} - present)
    if unknown:
        raise ValueError(
            f"the evaluation split of dataset={dataset!r} has labels {unknown[:10]} that are not in the training "
            f"label set {label_names}; allowed: labels that occur in the training split."
        )

    parts = {}
    for name, part, limit in (("train", train, max_train_samples), ("validation", validation, max_eval_samples)):
        if limit is not None and limit < len(part):
            part = part.shuffle(seed=seed).select(range(limit))
        parts[name] = part
    return datasets.DatasetDict(parts), label_names, image_column, label_column


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


def make_transform(
    image_column: str, label_column: str, label_feature: Any, label_to_id: dict[str, int], image: dict
) -> Any:
    """The `with_transform` function: a batch of rows to `pixel_values` (normalised) and `labels` (ids)."""
    to_name = _label_namer(label_feature)
    mean = torch.tensor(image["mean"], dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.tensor(image["std"], dtype=torch.float32).reshape(-1, 1, 1)

    def transform(batch: dict) -> dict:
        pixels = [(image_to_tensor(x, image["size"], image["num_channels"]) - mean) / std for x in batch[image_column]]
        labels = [label_to_id[to_name(v)] for v in batch[label_column]]
        return {"pixel_values": pixels, "labels": labels}

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
    for name, given, found in (("image_mean", script.image_mean, processor.get("image_mean")),
                               ("image_std", script.image_std, processor.get("image_std"))):  # fmt: skip
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
def parse(argv: list[str]) -> tuple[ScriptArguments, RunArguments, MixConfig, TrainingArguments]:
    """The script's, run, mixing and training arguments of `argv` (`--config FILE.yaml` included), validated.

    Precedence, lowest first: the dataclasses' defaults, this script's (`TRAINING_DEFAULTS`, `MIX_DEFAULTS`), the
    YAML file, the command line.
    """
    script, run, mix_arguments, training = parse_args(
        (ScriptArguments, RunArguments, MixArguments, TrainingArguments),
        argv,
        defaults={**TRAINING_DEFAULTS, **MIX_DEFAULTS},
    )
    mix = to_mix_config(mix_arguments)
    if not torch.cuda.is_available() and not training.use_cpu:
        training = replace_training(training, use_cpu=True)  # gloo when launched on CPU
    return script, run, mix, training


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default `sys.argv[1:]`), check everything, train the runs, write and print the results.

    Returns:
        `{run name: metrics}`.
    """
    hf_logging.set_verbosity_warning()
    given = list(sys.argv[1:] if argv is None else argv)
    script, run, mix, training = parse(given)

    # Check everything before anything is written: the output folder, the data, the model and the mixer.
    out = check_output_dir(training.output_dir, run.overwrite_output_dir)
    data, label_names, image_column, label_column = load_image_dataset(
        script.dataset,
        image_column=script.image_column,
        label_column=script.label_column,
        validation_split=script.validation_split,
        validation_size=script.validation_size,
        max_train_samples=script.max_train_samples,
        max_eval_samples=script.max_eval_samples,
        seed=run.split_seed,
    )
    image = image_settings(script, data["train"][0][image_column])
    if mix.num_classes is not None and mix.num_classes != len(label_names):
        raise ValueError(
            f"num_classes={mix.num_classes} but the training split has {len(label_names)} labels {label_names}; "
            "leave num_classes unset or give that number."
        )
    mix = mix.replace(num_classes=len(label_names))
    label_to_id = {n: i for i, n in enumerate(label_names)}
    data = dict(data)
    data["train"], data["calibration"] = hold_out_calibration(data["train"], run)
    data = {
        split: part.with_transform(
            make_transform(image_column, label_column, part.features[label_column], label_to_id, image)
        )
        for split, part in data.items()
        if part is not None
    }

    runs = planned_runs(script.method, mix, run)
    # Every run starts from the same weights: each model is built right after seeding. The first is built now, so
    # a model that cannot load and a mixer that cannot attach to it (e.g. CutMix after Swin's stages) are refused
    # before any Trainer creates a folder; the others are built when their run starts, one model in memory at a time.
    torch.manual_seed(training.seed)
    model = build_model(script, label_names, image["num_channels"])
    for run_mix in runs.values():
        HiddenMixer(model, run_mix).remove()

    results, curves = {}, {}
    for name, run_mix in runs.items():
        if model is None:
            torch.manual_seed(training.seed)
            model = build_model(script, label_names, image["num_channels"])
        torch.manual_seed(training.seed)
        results[name], curves[name] = train_and_score(
            name, model=model, mix=run_mix, training=training, data=data, run=run, data_collator=default_data_collator
        )
        model = None

    if training.process_index == 0:
        model_name = script.model_name_or_path or (
            f"ViT {script.image_size}px/{script.patch_size}, {script.num_hidden_layers}x{script.hidden_size} "
            "(random init)"
        )
        summary = {
            "model": model_name,
            "dataset": script.dataset,
            "labels": label_names,
            "train_rows": len(data["train"]),
            "eval_rows": len(data["validation"]),
            "image": image,
            "method": script.method,
            "recipe": run.recipe,
            "clean_loss_weight": run.clean_loss_weight,
            "mix_off_for_last": run.mix_off_for_last,
            "mix_config": dataclasses.asdict(runs[list(runs)[-1]]),
            "epochs": training.num_train_epochs,
            "max_steps": training.max_steps,
            "processes": training.world_size,
            "results": results,
            "command": " ".join(["python scripts/train_vit.py", *given]),
        }
        write_results(out, summary, curves, run, title=f"{model_name} on {script.dataset}")
    return results


if __name__ == "__main__":
    main()
    finish_distributed()
