import pytest

from hiddenmix import MixConfig

BAD_VALUES = [
    ("mixup_alpha", -0.1, "mixup_alpha=-0.1 must be a finite number >= 0"),
    ("mixup_alpha", float("nan"), "mixup_alpha=nan"),
    ("cutmix_alpha", "1", "cutmix_alpha='1'"),
    ("cutmix_minmax", (0.5, 0.2), r"cutmix_minmax=\(0.5, 0.2\) must satisfy 0 < min < max <= 1"),
    ("cutmix_minmax", (0.0, 0.5), "0 < min < max <= 1"),
    ("cutmix_minmax", (0.2, 1.5), "0 < min < max <= 1"),
    ("cutmix_minmax", 0.3, "must be None or a pair"),
    ("prob", 1.5, r"prob=1.5 must be a number in \[0, 1\]"),
    ("prob", -0.01, "prob=-0.01"),
    ("switch_prob", 2, "switch_prob=2"),
    ("label_smoothing", 1.0, r"label_smoothing=1.0 must be a number in \[0, 1\)"),
    ("mode", "sample", r"mode='sample' is not allowed; choose one of \['batch', 'pair', 'elem'\]"),
    ("site", "logits", "site='logits' is not allowed"),
    ("pad_policy", "drop", "pad_policy='drop' is not allowed"),
    ("partner", "flip", "partner='flip' is not allowed"),
    ("problem_type", "multiclass", "problem_type='multiclass' is not allowed"),
    ("num_classes", 0, "num_classes=0 must be None or an integer >= 1"),
    ("num_classes", 2.5, "num_classes=2.5"),
    ("ignore_index", "x", "ignore_index='x' must be an integer"),
    ("layers", (), r"layers=\(\) must be None or a non-empty list of integers"),
    ("layers", (1, 1), "lists a layer twice"),
    ("layers", ("a",), "must be None or a non-empty list of integers"),
    ("layers", "12", "must be None or a non-empty list"),
    ("layer_stack", "", "layer_stack='' must be None or a dotted module path"),
    ("seed", -1, "seed=-1 must be None or an integer >= 0"),
    ("correct_lam", "yes", "correct_lam='yes' must be True or False"),
]


@pytest.mark.parametrize("field,value,match", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_invalid_value_names_field_value_and_allowed(field, value, match):
    with pytest.raises(ValueError, match=match):
        MixConfig(**{field: value})


def test_layers_accepts_a_single_int_and_lists():
    assert MixConfig(layers=3).layers == (3,)
    assert MixConfig(layers=[7, 9, 12]).layers == (7, 9, 12)


def test_replace_validates_and_rejects_unknown_fields():
    cfg = MixConfig()
    assert cfg.replace(prob=0.5).prob == 0.5
    with pytest.raises(ValueError, match="prob=3"):
        cfg.replace(prob=3)
    with pytest.raises(ValueError, match=r"no field\(s\) \['alpha'\]"):
        cfg.replace(alpha=0.2)


@pytest.mark.parametrize(
    "kwargs,active",
    [
        ({}, True),
        ({"prob": 0.0}, False),
        ({"enabled": False}, False),
        ({"mixup_alpha": 0.0}, False),
        ({"mixup_alpha": 0.0, "cutmix_alpha": 1.0}, True),
        ({"mixup_alpha": 0.0, "cutmix_minmax": (0.2, 0.8)}, True),
    ],
)
def test_active(kwargs, active):
    assert MixConfig(**kwargs).active is active
