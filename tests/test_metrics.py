import numpy as np
import pytest

from hiddenmix.metrics import fit_temperature


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_generated_the_labels(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    # the model reports logits scaled by T; dividing by the fitted T must undo it
    assert fit_temperature(logits * true_temperature, labels) == pytest.approx(true_temperature, rel=0.08)


def test_fit_temperature_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"needs logits \[N, C\] and labels \[N\] with N > 0; got \(3,\)"):
        fit_temperature(np.zeros(3), np.zeros(3, dtype=int))
