"""Expected calibration error (ECE) with equal-width confidence bins. Works offline: `evaluate.load(<this folder>)`.

ECE = Σ_b (n_b / N) · |accuracy_b - confidence_b| over `n_bins` equal-width bins of the confidence (the highest
predicted probability); bin b holds the confidences in (b/n_bins, (b+1)/n_bins], the first bin also 0. This is the
estimator of Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, with their 15 bins by default.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Expected calibration error: the sample-weighted mean gap between confidence and accuracy per bin."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): predicted class probabilities, one row per sample (rows sum to 1).
    references (`list[int]`): true class ids.
    n_bins (`int`, defaults to 15): number of equal-width confidence bins on [0, 1].
Returns:
    ece (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("hiddenmix/metrics/ece")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.4, 0.6]], references=[0, 0])
    {'ece': 0.35}
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpectedCalibrationError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, n_bins=15):
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins={n_bins!r} must be an integer >= 1.")
        probs, references = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        if probs.ndim != 2 or probs.shape[0] != references.shape[0]:
            raise ValueError(
                f"predictions must be [N, C] probabilities and references [N]; got {probs.shape} and "
                f"{references.shape}."
            )
        if len(references) == 0:
            return {"ece": 0.0}
        confidence = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == references).astype(np.float64)
        # bin b holds (b/n, (b+1)/n]; ceil(c * n) - 1 is that b, and a confidence of exactly 0 joins bin 0
        bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
        gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, confidence, n_bins))
        # Σ_b (n_b/N)·|acc_b - conf_b| = Σ_b |Σ_{i∈b} (correct_i - conf_i)| / N
        return {"ece": float(gap.sum() / len(references))}
