"""F1 score (macro by default) for single-label classification. Works offline: `evaluate.load(<this folder>)`.

Matches `sklearn.metrics.f1_score`: the classes are those that occur in the predictions or the references (or
`labels=`), and a class with no predicted and no true sample scores 0 (sklearn's `zero_division=0`).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "F1 = 2 * precision * recall / (precision + recall), per class, then averaged (macro by default)."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    average (`str`, defaults to `"macro"`): `macro` (unweighted mean over classes), `weighted` (mean weighted by
        the number of true samples of each class), `micro` (from the pooled counts), or `None` (one score per class).
    labels (`list[int]`, *optional*): the classes to score; default: those in the predictions or references.
Returns:
    f1 (`float`, or `list[float]` with `average=None`).
Examples:
    >>> metric = evaluate.load("hiddenmix/metrics/f1")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'f1': 0.6666666666666666}
"""

_CITATION = ""

_AVERAGES = ("macro", "weighted", "micro", None)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="macro", labels=None):
        if average not in _AVERAGES:
            raise ValueError(f"average={average!r} is not allowed; choose one of {list(_AVERAGES)}.")
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.shape != references.shape:
            raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape.")
        classes = np.unique(np.concatenate([predictions, references])) if labels is None else np.asarray(labels)
        tp = np.array([np.sum((predictions == c) & (references == c)) for c in classes], dtype=np.float64)
        fp = np.array([np.sum((predictions == c) & (references != c)) for c in classes], dtype=np.float64)
        fn = np.array([np.sum((predictions != c) & (references == c)) for c in classes], dtype=np.float64)
        if average == "micro":
            denominator = 2 * tp.sum() + fp.sum() + fn.sum()
            return {"f1": float(2 * tp.sum() / denominator) if denominator > 0 else 0.0}
        denominator = 2 * tp + fp + fn
        per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        if average is None:
            return {"f1": per_class.tolist()}
        if average == "weighted":
            support = tp + fn
            return {"f1": float((per_class * support).sum() / support.sum()) if support.sum() > 0 else 0.0}
        return {"f1": float(per_class.mean()) if len(per_class) else 0.0}
