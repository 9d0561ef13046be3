import pytest
import torch
import torch.nn.functional as F

from hiddenmix import MixConfig, MixPlan, PlanSampler, mix_targets, mixup_loss, soft_target_cross_entropy

INDEX = torch.tensor([1, 2, 3, 0])
LAM = torch.tensor([0.7, 0.2, 1.0, 0.5])


def plan():
    return MixPlan.from_lam(INDEX, LAM)


def test_soft_targets_sum_to_one_with_at_most_two_classes_per_row():
    p = PlanSampler(MixConfig(seed=0), rank=0).sample(64, "cpu", layers=(0,))
    labels = torch.randint(0, 10, (64,))
    target = mix_targets(labels, p, num_classes=10).target
    torch.testing.assert_close(target.sum(-1), torch.ones(64))
    assert ((target > 0).sum(-1) <= 2).all()
    assert ((target > 0).sum(-1) == 2).any()


def test_class_id_targets_by_hand():
    labels = torch.tensor([0, 1, 2, 0])
    target = mix_targets(labels, plan(), num_classes=3).target
    expected = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.2, 0.8], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(target, expected)


def test_label_smoothing_is_applied_before_mixing():
    labels = torch.tensor([0, 1, 2, 0])
    eps = 0.1
    target = mix_targets(labels, plan(), num_classes=3, label_smoothing=eps).target
    smooth = F.one_hot(labels, 3).float() * (1 - eps) + eps / 3
    torch.testing.assert_close(target, LAM[:, None] * smooth + (1 - LAM[:, None]) * smooth[INDEX])
    torch.testing.assert_close(target.sum(-1), torch.ones(4))


def test_probability_rows_mix_like_ids():
    rows = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5], [0, 0, 1], [0.2, 0.8, 0]])
    target = mix_targets(rows, plan(), num_classes=3).target
    torch.testing.assert_close(target, LAM[:, None] * rows + (1 - LAM[:, None]) * rows[INDEX])


def test_multi_label_rows():
    rows = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]])
    t = mix_targets(rows, plan(), problem_type="multi_label_classification")
    torch.testing.assert_close(t.target, LAM[:, None] * rows + (1 - LAM[:, None]) * rows[INDEX])
    assert t.problem_type == "multi_label_classification"


@pytest.mark.parametrize("shape", [(4,), (4, 2)])
def test_regression_values(shape):
    values = torch.randn(*shape)
    t = mix_targets(values, plan(), problem_type="regression")
    weight = LAM.reshape(-1, *([1] * (len(shape) - 1)))
    torch.testing.assert_close(t.target, weight * values + (1 - weight) * values[INDEX])


def test_ignore_index_rows_and_their_mixed_partners_are_left_out():
    labels = torch.tensor([0, -100, 2, 1])
    t = mix_targets(labels, plan(), num_classes=3)
    # row 1 is ignored; row 0 mixed 30% of row 1 in; row 2 (λ = 1) took nothing from its partner
    assert t.valid.tolist() == [False, False, True, True]
    logits = torch.randn(4, 3)
    loss = soft_target_cross_entropy(logits, t.target, t.valid)
    expected = -(t.target[2:] * logits[2:].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)


def test_all_rows_ignored_gives_zero_not_nan():
    labels = torch.full((4,), -100)
    t = mix_targets(labels, plan(), num_classes=3)
    assert soft_target_cross_entropy(torch.randn(4, 3), t.target, t.valid).item() == 0.0


def test_unmixed_soft_ce_equals_torch_cross_entropy_with_smoothing():
    logits = torch.randn(6, 5)
    labels = torch.randint(0, 5, (6,))
    loss = mixup_loss(logits, labels, MixPlan.identity(6), label_smoothing=0.1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, label_smoothing=0.1))


@pytest.mark.parametrize(
    "labels,kwargs,error,match",
    [
        (
            torch.tensor([0, 1, 5, 0]),
            dict(num_classes=3),
            ValueError,
            r"class ids in \[0, 3\).*num_classes is too small",
        ),
        (
            torch.tensor([0, 1]),
            dict(num_classes=3),
            ValueError,
            r"labels have shape \(2,\) but the plan mixed a batch of 4",
        ),
        (torch.zeros(4, 5), dict(num_classes=3), ValueError, "labels have 5 classes per row but num_classes=3"),
        (
            torch.zeros(4, 7, dtype=torch.long),
            dict(num_classes=3, plan="5 tokens"),
            ValueError,
            r"dense labels with positions \(7,\) do not match the positions this plan mixed \(\(5,\)\)",
        ),
        (torch.tensor([0, 1, 2, 0]), dict(), ValueError, "num_classes is needed"),
        (
            torch.tensor([0, 1, 2, 0]),
            dict(problem_type="regression"),
            ValueError,
            "regression labels must be floating",
        ),
        (torch.tensor([0, 1, 2, 0]), dict(num_classes=3, problem_type="binary"), ValueError, "problem_type='binary'"),
        ([0, 1, 2, 0], dict(num_classes=3), TypeError, "labels must be a tensor"),
    ],
    ids=[
        "id-too-large",
        "batch-mismatch",
        "rows-vs-num-classes",
        "dense-positions",
        "no-num-classes",
        "int-regression",
        "bad-problem-type",
        "list",
    ],
)
def test_bad_labels_raise_clear_errors(labels, kwargs, error, match):
    kwargs = dict(kwargs)
    mixed = plan()
    if kwargs.pop("plan", None) == "5 tokens":  # a sequence plan with per-token weights over 5 positions
        mixed = MixPlan.from_lam(mixed.index, 0.5, token_mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(error, match=match):
        mix_targets(labels, mixed, **kwargs)


def test_logits_width_mismatch_is_named():
    with pytest.raises(ValueError, match="produces 4 logits per row but the targets have 3 classes"):
        mixup_loss(torch.randn(4, 4), torch.zeros(4, 3), plan())


def test_soft_ce_gradient_matches_by_hand():
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.softmax(torch.randn(4, 3), -1)
    soft_target_cross_entropy(logits, target).backward()
    torch.testing.assert_close(logits.grad, (logits.softmax(-1) - target).detach() / 4)
