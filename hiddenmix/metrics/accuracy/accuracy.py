"""Accuracy: the share of predictions equal to their reference. Works offline: `evaluate.load(<this folder>)`."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy = (number of predictions equal to their reference) / (number of predictions)."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    normalize (`bool`, defaults to `True`): the share; `False` gives the number of correct predictions.
    sample_weight (`list[float]`, *optional*): weight of each sample.
Returns:
    accuracy (`float`).
Examples:
    >>> metric = evaluate.load("hiddenmix/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.shape != references.shape:
            raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape.")
        weight = np.ones(len(predictions)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != predictions.shape:
            raise ValueError(f"sample_weight has shape {weight.shape}; predictions have {predictions.shape}.")
        correct = float(((predictions == references) * weight).sum())
        return {"accuracy": correct / float(weight.sum()) if normalize else correct}
