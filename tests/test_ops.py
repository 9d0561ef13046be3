import pytest
import torch

from hiddenmix import MixConfig, PlanSampler, interpolate, mix_pixels, token_share_lam, union_attention_mask
from hiddenmix.ops import apply_pad_policy, mix_sequence

INDEX = torch.tensor([2, 0, 1])
KEY_MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # lengths 3, 5, 1


def by_hand_key_union(mask2d):
    # the union written out element by element
    out = torch.zeros_like(mask2d)
    for i in range(mask2d.shape[0]):
        for t in range(mask2d.shape[1]):
            out[i, t] = 1 if (mask2d[i, t] == 1 or mask2d[INDEX[i], t] == 1) else 0
    return out


def as_form(mask2d, form):
    b, t = mask2d.shape
    keys = mask2d[:, None, None, :].expand(b, 1, t, t)
    if form == "2d":
        return mask2d.clone()
    if form == "4d_bool":
        return keys.bool()
    if form == "4d_additive":
        return (1.0 - keys.float()) * torch.finfo(torch.float32).min
    if form == "4d_int":
        return keys.long()
    if form == "4d_bool_causal":
        return keys.bool() & torch.ones(t, t, dtype=torch.bool).tril()
    if form == "4d_outer_int":  # DeBERTa: m_q * m_k
        return mask2d[:, None, :, None].long() * mask2d[:, None, None, :].long()
    raise AssertionError(form)


FORMS = ["2d", "4d_bool", "4d_additive", "4d_int", "4d_bool_causal", "4d_outer_int"]


@pytest.mark.parametrize("form", FORMS)
def test_mask_union_matches_a_by_hand_or_for_each_form(form):
    union2d = by_hand_key_union(KEY_MASK)
    expected = as_form(union2d, form)
    got = union_attention_mask(as_form(KEY_MASK, form), INDEX, outer=form == "4d_outer_int")
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)


def test_mask_union_of_none_and_of_a_batch_broadcast_mask():
    assert union_attention_mask(None, INDEX) is None
    causal = torch.ones(1, 1, 5, 5, dtype=torch.bool).tril()
    assert union_attention_mask(causal, INDEX) is causal


def test_mask_union_does_not_change_the_callers_mask():
    mask = as_form(KEY_MASK, "4d_bool")
    before = mask.clone()
    union_attention_mask(mask, INDEX)
    assert torch.equal(mask, before)


def test_mask_union_rejects_a_batch_mismatch():
    with pytest.raises(ValueError, match="attention mask has batch size 3 but the plan has 2"):
        union_attention_mask(KEY_MASK, torch.tensor([1, 0]))


def test_interpolate_refuses_integer_token_ids():
    with pytest.raises(TypeError, match="integer inputs such as token ids are never mixed"):
        interpolate(torch.tensor([[1, 2], [3, 4]]), torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))


def test_interpolate_per_sample_and_never_in_place():
    x = torch.randn(3, 4, 2)
    before = x.clone()
    lam = torch.tensor([1.0, 0.25, 0.0])
    out = interpolate(x, INDEX, lam)
    assert torch.equal(x, before)
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(out[1], 0.25 * x[1] + 0.75 * x[0])
    assert torch.equal(out[2], x[1])


def test_interpolate_keeps_bf16():
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    assert interpolate(x, INDEX, torch.tensor([0.3, 0.5, 0.7])).dtype == torch.bfloat16


@pytest.mark.parametrize("policy", ["mix", "keep", "zero"])
def test_pad_policies_at_positions_real_in_one_partner(policy):
    mask = KEY_MASK.bool()
    hidden = torch.randn(3, 5, 2)
    lam = torch.full((3, 5), 0.7)
    weight = apply_pad_policy(lam, mask, INDEX, policy)
    out = mix_sequence(hidden, INDEX, weight, mask, policy)
    # sample 0 (length 3) mixed with sample 2 (length 1): position 1 is real only in sample 0,
    # sample 1 (length 5) with sample 0: position 4 is real only in sample 1.
    own_only = out[0, 1]
    if policy == "mix":
        torch.testing.assert_close(own_only, 0.7 * hidden[0, 1] + 0.3 * hidden[2, 1])
    elif policy == "keep":
        torch.testing.assert_close(own_only, hidden[0, 1])
    else:
        torch.testing.assert_close(own_only, 0.7 * hidden[0, 1])
    # sample 2 (length 1) mixed with sample 1 (length 5): position 3 is real only in the partner
    partner_only = out[2, 3]
    if policy == "keep":
        torch.testing.assert_close(partner_only, hidden[1, 3])
    elif policy == "zero":
        torch.testing.assert_close(partner_only, 0.3 * hidden[1, 3])
    # both real: plain interpolation in every policy
    torch.testing.assert_close(out[1, 0], 0.7 * hidden[1, 0] + 0.3 * hidden[0, 0])


def test_token_share_lam_counts_real_content_only():
    mask = KEY_MASK.bool()
    weight = torch.full((3, 5), 0.5)
    lam = token_share_lam(weight, mask, INDEX, torch.full((3,), 0.5))
    # sample 0: own 3 tokens at 0.5, partner (sample 2) 1 token at 0.5 -> 1.5 / 2.0
    # sample 1: own 5 tokens at 0.5, partner (sample 0) 3 tokens at 0.5 -> 2.5 / 4.0
    # sample 2: own 1 token at 0.5, partner (sample 1) 5 tokens at 0.5 -> 0.5 / 3.0
    torch.testing.assert_close(lam, torch.tensor([0.75, 0.625, 1 / 6]))


def test_token_share_lam_with_the_keep_policy():
    mask = KEY_MASK.bool()
    weight = apply_pad_policy(torch.full((3, 5), 0.5), mask, INDEX, "keep")
    lam = token_share_lam(weight, mask, INDEX, torch.full((3,), 0.5))
    # sample 2 keeps its one shared token at 0.5 and receives partner-only tokens 1..4 whole: 0.5 / 5
    torch.testing.assert_close(lam[2], torch.tensor(0.1))


def test_plan_with_token_lam_correction_uses_the_mask():
    mask = torch.arange(10)[None, :] < torch.tensor([2, 10, 10, 10])[:, None]
    plan = PlanSampler(MixConfig(seed=0, correct_lam_tokens=True), rank=0).sample(
        4, "cpu", layers=(0,), token_mask=mask, sequence_length=10
    )
    expected = token_share_lam(plan.weights, mask, plan.index, plan.lam)
    torch.testing.assert_close(plan.lam_target, expected)
    assert not torch.allclose(plan.lam_target, plan.lam)


def test_mix_pixels_never_changes_the_input():
    images = torch.rand(4, 3, 8, 8)
    before = images.clone()
    plan = PlanSampler(MixConfig(seed=0, cutmix_alpha=1.0), rank=0).sample(4, "cpu", grid=(8, 8), layers=(0,))
    mix_pixels(images, plan)
    assert torch.equal(images, before)
