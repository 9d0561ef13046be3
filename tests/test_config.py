import pytest

from hiddenmix import MixConfig, MixupTrainingArguments

# (field, value, what the message must say after "<owner>.<field>=<value> is not allowed; ")
BAD_VALUES = [
    ("mixup_alpha", -0.1, "allowed: a finite number >= 0"),
    ("mixup_alpha", float("nan"), "allowed: a finite number >= 0"),
    ("cutmix_alpha", "1", "allowed: a finite number >= 0"),
    ("cutmix_minmax", (0.5, 0.2), r"allowed: a pair with 0 < min < max <= 1"),
    ("cutmix_minmax", (0.0, 0.5), "allowed: a pair with 0 < min < max <= 1"),
    ("cutmix_minmax", (0.2, 1.5), "allowed: a pair with 0 < min < max <= 1"),
    ("cutmix_minmax", 0.3, r"allowed: None or a pair \(min, max\)"),
    ("cutmix_mask", "grid", r"choose one of \['box', 'fmix'\]"),
    ("fmix_decay_power", 0, "allowed: a finite number > 0"),
    ("prob", 1.5, r"allowed: a number in \[0, 1\]"),
    ("prob", -0.01, r"allowed: a number in \[0, 1\]"),
    ("switch_prob", 2, r"allowed: a number in \[0, 1\]"),
    ("mode", "sample", r"choose one of \['batch', 'pair', 'elem'\]"),
    ("site", "logits", r"choose one of \['input', 'embeddings', 'hidden'\]"),
    ("pad_policy", "drop", r"choose one of \['mix', 'keep', 'zero'\]"),
    ("partner", "flip", r"choose one of \['random', 'similar_length'\]"),
    ("problem_type", "multiclass", "choose None or one of"),
    ("num_classes", 0, "allowed: None or an integer >= 1"),
    ("num_classes", 2.5, "allowed: None or an integer >= 1"),
    ("ignore_index", "x", "allowed: an integer"),
    ("layers", (), "allowed: None or a non-empty list of integers"),
    ("layers", (1, 1), "it lists a layer twice"),
    ("layers", ("a",), "allowed: None or a non-empty list of integers"),
    ("layers", "12", "allowed: None or a non-empty list"),
    ("layer_stack", "", "allowed: None or a dotted module path"),
    ("correct_lam", "yes", "allowed: True or False"),
]


def _value_pattern(value) -> str:
    import re

    return re.escape(repr(tuple(value) if isinstance(value, list) else value))


@pytest.mark.parametrize("field,value,match", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_invalid_value_names_the_field_the_value_and_what_is_allowed(field, value, match):
    with pytest.raises(ValueError, match=rf"^MixConfig\.{field}={_value_pattern(value)} is not allowed; {match}"):
        MixConfig(**{field: value})


@pytest.mark.parametrize("field,value,match", BAD_VALUES[::3], ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES[::3]])
def test_the_training_arguments_check_the_same_fields_under_their_own_name(field, value, match, tmp_path):
    with pytest.raises(ValueError, match=rf"MixupTrainingArguments\.{field}=.* is not allowed; {match}"):
        MixupTrainingArguments(output_dir=str(tmp_path), **{field: value})


@pytest.mark.parametrize(
    "field,value,match",
    [("label_smoothing", 1.0, r"allowed: a number in \[0, 1\)"), ("seed", -1, "allowed: None or an integer >= 0")],
)
def test_the_two_fields_only_mix_config_holds_are_checked(field, value, match):
    with pytest.raises(ValueError, match=rf"^MixConfig\.{field}={value!r} is not allowed; {match}"):
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
