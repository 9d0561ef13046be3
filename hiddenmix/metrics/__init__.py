"""Classification metrics that work offline: `evaluate` metric modules shipped inside the package.

`evaluate.load("accuracy")` needs the hub; these modules load from their folder:

```python
import evaluate
from hiddenmix.metrics import metric_path, classification_metrics

ece = evaluate.load(metric_path("ece"))           # or load_metric("ece")
trainer = MixupTrainer(..., compute_metrics=classification_metrics())   # accuracy, macro-F1, ECE
```

Calibration is what mixup mostly buys a pretrained text encoder (Park & Caragea, "On the Calibration of
Pre-trained Language Models using Mixup Guided by Area Under the Margin and Saliency", ACL 2022), hence ECE.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

METRICS = ("accuracy", "f1", "ece")
_HERE = os.path.dirname(os.path.abspath(__file__))


def metric_path(name: str) -> str:
    """The folder of the metric module `name` (one of `METRICS`), for `evaluate.load(path)`."""
    if name not in METRICS:
        raise ValueError(f"metric {name!r} is not shipped with hiddenmix; choose one of {list(METRICS)}.")
    return os.path.join(_HERE, name)


def load_metric(name: str, **kwargs: Any):
    """`evaluate.load` of a shipped metric module; works without the hub."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def classification_metrics(*, n_bins: int = 15, ignore_index: int = -100) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: accuracy, macro-F1 and ECE of single-label classification logits.

    Args:
        n_bins: number of equal-width confidence bins of the ECE.
        ignore_index: references with this id are left out.

    Returns:
        A callable taking an `EvalPrediction` (logits `[N, C]`, class ids `[N]`) and returning
        `{"accuracy", "macro_f1", "ece", "nll"}` (NLL: mean negative log-likelihood of the reference class).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be an integer >= 1.")
    accuracy, f1, ece = (load_metric(name) for name in METRICS)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
            raise ValueError(
                "classification_metrics expects single-label logits [N, C] and class ids [N]; got "
                f"{logits.shape} and {labels.shape}."
            )
        keep = labels != ignore_index
        logits, labels = logits[keep], labels[keep]
        probs = _softmax(logits)
        predictions = probs.argmax(-1)
        return {
            "accuracy": accuracy.compute(predictions=predictions, references=labels)["accuracy"],
            "macro_f1": f1.compute(predictions=predictions, references=labels, average="macro")["f1"],
            "ece": ece.compute(predictions=probs, references=labels, n_bins=n_bins)["ece"],
            "nll": float(-np.mean(_log_softmax(logits)[np.arange(labels.shape[0]), labels])) if labels.size else 0.0,
        }

    return compute_metrics


def token_classification_metrics(
    label_names: list[str], *, n_bins: int = 15, ignore_index: int = -100
) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for token classification (NER, POS): entity-level precision, recall and F1 of BIO / IOB2
    tags (`seqeval`, micro-averaged over entity types, as CoNLL's `conlleval` scores them), token accuracy, and the
    token-level NLL and ECE, over the positions whose label is not `ignore_index` (sub-word continuations, special
    tokens and padding are not scored).

    Args:
        label_names: the tag of each class id (`["O", "B-PER", "I-PER", ...]`).
        n_bins: confidence bins of the token-level ECE.
        ignore_index: label of the positions left out.

    Returns:
        A callable taking an `EvalPrediction` (logits `[N, T, C]`, tags `[N, T]`) and returning `{"f1", "precision",
        "recall", "accuracy", "nll", "ece"}`.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score

    ece = load_metric("ece")

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if logits.ndim != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"token_classification_metrics expects logits [N, T, C] and tags [N, T]; got {logits.shape} and "
                f"{labels.shape}."
            )
        keep = labels != ignore_index
        predictions = logits.argmax(-1)
        truth = [[label_names[t] for t, k in zip(row, kept) if k] for row, kept in zip(labels, keep)]
        guess = [[label_names[p] for p, k in zip(row, kept) if k] for row, kept in zip(predictions, keep)]
        flat_logits, flat_labels = logits[keep], labels[keep]
        probs = _softmax(flat_logits)
        log_probs = _log_softmax(flat_logits)[np.arange(flat_labels.shape[0]), flat_labels]
        return {
            "f1": float(f1_score(truth, guess, zero_division=0)),
            "precision": float(precision_score(truth, guess, zero_division=0)),
            "recall": float(recall_score(truth, guess, zero_division=0)),
            "accuracy": float((probs.argmax(-1) == flat_labels).mean()) if flat_labels.size else 0.0,
            "nll": float(-log_probs.mean()) if flat_labels.size else 0.0,
            "ece": ece.compute(predictions=probs, references=flat_labels, n_bins=n_bins)["ece"],
        }

    return compute_metrics


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, max_iter: int = 200) -> float:
    """The temperature T > 0 that minimises the NLL of `softmax(logits / T)` (Guo et al., 2017).

    Fitted on held-out data (never on the data it is then evaluated on); optimised over log T with L-BFGS.
    """
    import torch

    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if logits_t.ndim != 2 or labels_t.ndim != 1 or logits_t.shape[0] != labels_t.shape[0] or logits_t.shape[0] == 0:
        raise ValueError(
            f"fit_temperature needs logits [N, C] and labels [N] with N > 0; got {tuple(logits_t.shape)} and "
            f"{tuple(labels_t.shape)}."
        )
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


__all__ = [
    "METRICS",
    "classification_metrics",
    "fit_temperature",
    "load_metric",
    "metric_path",
    "token_classification_metrics",
]
