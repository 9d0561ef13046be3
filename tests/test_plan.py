import pytest
import torch

from hiddenmix import MixConfig, MixPlan, PlanSampler, box_masks, mix_pixels


def sample(batch=8, grid=None, **cfg):
    return PlanSampler(MixConfig(seed=0, **cfg), rank=0).sample(batch, "cpu", layers=(0, 1, 2), grid=grid)


def test_seeded_plans_are_reproducible_and_the_stream_advances():
    a, b = (
        PlanSampler(MixConfig(seed=3, cutmix_alpha=1.0), rank=0),
        PlanSampler(MixConfig(seed=3, cutmix_alpha=1.0), rank=0),
    )
    for _ in range(3):
        pa, pb = a.sample(16, "cpu", layers=(0, 1), grid=(8, 8)), b.sample(16, "cpu", layers=(0, 1), grid=(8, 8))
        for name in ("index", "lam", "lam_target", "boxes", "use_cutmix"):
            assert torch.equal(getattr(pa, name), getattr(pb, name)), name
        assert pa.layer == pb.layer
    assert not torch.equal(a.sample(16, "cpu", layers=(0,), grid=(8, 8)).lam, pa.lam)


def test_ranks_draw_different_plans_from_the_same_seed():
    p0 = PlanSampler(MixConfig(seed=3), rank=0).sample(16, "cpu", layers=(0,))
    p1 = PlanSampler(MixConfig(seed=3), rank=1).sample(16, "cpu", layers=(0,))
    assert not torch.equal(p0.lam, p1.lam)


def test_sampler_state_round_trip_continues_the_same_stream():
    a = PlanSampler(MixConfig(seed=5), rank=0)
    a.sample(8, "cpu", layers=(0, 1, 2))
    state = a.state_dict()
    expected = [a.sample(8, "cpu", layers=(0, 1, 2)) for _ in range(3)]
    b = PlanSampler(MixConfig(seed=5), rank=0)
    b.load_state_dict(state)
    for want in expected:
        got = b.sample(8, "cpu", layers=(0, 1, 2))
        assert torch.equal(got.lam, want.lam) and torch.equal(got.index, want.index) and got.layer == want.layer


@pytest.mark.parametrize("batch", [2, 3, 7, 8])
def test_elem_partners_form_a_derangement(batch):
    plan = sample(batch)
    assert sorted(plan.index.tolist()) == list(range(batch))
    assert (plan.index != torch.arange(batch)).all()


@pytest.mark.parametrize("batch", [2, 5, 8])
def test_pair_mode_pairs_swap_and_share_lam(batch):
    plan = sample(batch, mode="pair")
    idx = plan.index
    assert torch.equal(idx[idx], torch.arange(batch))  # an involution: partners swap
    assert torch.equal(plan.lam[idx], plan.lam)
    alone = idx == torch.arange(batch)
    assert int(alone.sum()) == batch % 2
    assert (plan.lam[alone] == 1).all()


def test_batch_mode_shares_one_lam_elem_mode_draws_one_per_sample():
    assert sample(16, mode="batch").lam.unique().numel() == 1
    assert sample(16, mode="elem").lam.unique().numel() == 16


def test_batch_size_one_is_a_stated_no_mix():
    plan = sample(1)
    assert plan.mixed is False and plan.lam.tolist() == [1.0] and plan.index.tolist() == [0]


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_odd_batches_work(mode):
    plan = sample(7, grid=(6, 6), mode=mode, cutmix_alpha=1.0)
    images = torch.rand(7, 3, 6, 6)
    assert mix_pixels(images, plan).shape == images.shape


def test_prob_zero_and_disabled_never_mix():
    assert sample(8, prob=0.0).mixed is False
    assert sample(8, enabled=False).mixed is False


def test_elem_prob_mixes_about_that_share_of_samples():
    plan = sample(4000, prob=0.3)
    share = (plan.lam < 1).float().mean().item()
    assert 0.26 < share < 0.34


def test_batch_prob_is_one_draw_for_the_whole_batch():
    sampler = PlanSampler(MixConfig(seed=0, prob=0.5, mode="batch"), rank=0)
    mixed = [sampler.sample(4, "cpu", layers=(0,)).mixed for _ in range(400)]
    assert 0.4 < sum(mixed) / 400 < 0.6


def test_fold_lam_keeps_every_sample_the_major_part():
    assert (sample(256, fold_lam=True).lam >= 0.5).all()


@pytest.mark.parametrize("switch_prob,expect", [(0.0, "mixup"), (1.0, "cutmix")])
def test_switch_prob_extremes_give_pure_methods(switch_prob, expect):
    plan = sample(64, grid=(8, 8), cutmix_alpha=1.0, switch_prob=switch_prob)
    assert plan.use_cutmix.all() if expect == "cutmix" else not plan.use_cutmix.any()


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("minmax", [None, (0.2, 0.7)])
def test_realised_cutmix_lam_is_exactly_the_unpasted_share(mode, minmax):
    # Image i gets the value i everywhere, so the mixed image says pixel by pixel where it came from.
    batch, height, width = 32, 13, 9
    plan = sample(batch, grid=(height, width), mode=mode, mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=minmax)
    images = torch.arange(batch, dtype=torch.float32)[:, None, None, None].expand(batch, 3, height, width)
    mixed = mix_pixels(images, plan)
    own_pixels = (mixed[:, 0] == torch.arange(batch, dtype=torch.float32)[:, None, None]).sum((1, 2))
    alone = plan.index == torch.arange(batch)
    # exact to the pixel: λ·H·W is the number of pixels the sample kept
    assert torch.equal((plan.lam_target * height * width).round().long()[~alone], own_pixels[~alone])
    torch.testing.assert_close(plan.lam_target[~alone], own_pixels[~alone] / (height * width))
    assert (plan.lam_target[alone] == 1).all()


def test_boxes_are_clipped_at_the_border_and_lam_follows_the_clipped_area():
    plan = sample(2000, grid=(10, 10), mixup_alpha=0.0, cutmix_alpha=1.0)
    boxes = plan.boxes
    assert (
        (boxes[:, 0] >= 0).all()
        and (boxes[:, 1] <= 10).all()
        and (boxes[:, 2] >= 0).all()
        and (boxes[:, 3] <= 10).all()
    )
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    assert torch.equal(plan.lam_target, 1 - area.float() / 100)
    assert ((boxes[:, 0] == 0) | (boxes[:, 1] == 10)).any()  # some boxes were clipped


def test_correct_lam_false_keeps_the_drawn_lam():
    plan = sample(500, grid=(10, 10), mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False)
    assert torch.equal(plan.lam_target, plan.lam)
    area_lam = 1 - ((plan.boxes[:, 1] - plan.boxes[:, 0]) * (plan.boxes[:, 3] - plan.boxes[:, 2])).float() / 100
    assert not torch.equal(plan.lam_target, area_lam)


def test_elem_boxes_differ_across_the_batch():
    plan = sample(16, grid=(32, 32), mixup_alpha=0.0, cutmix_alpha=1.0)
    assert plan.boxes.unique(dim=0).shape[0] == 16
    assert plan.lam.unique().numel() == 16


def test_minmax_boxes_lie_inside_with_sides_in_range():
    plan = sample(500, grid=(20, 20), mixup_alpha=0.0, cutmix_minmax=(0.2, 0.6))
    h = plan.boxes[:, 1] - plan.boxes[:, 0]
    w = plan.boxes[:, 3] - plan.boxes[:, 2]
    assert (h >= 4).all() and (h <= 12).all() and (w >= 4).all() and (w <= 12).all()
    assert (plan.boxes[:, 1] <= 20).all() and (plan.boxes[:, 3] <= 20).all()


def test_token_spans_on_a_one_row_grid_take_one_minus_lam_of_the_length():
    plan = PlanSampler(MixConfig(seed=0, mixup_alpha=0.0, cutmix_alpha=1.0), rank=0).sample(
        64, "cpu", layers=(0,), grid=(1, 50), sequence_length=50
    )
    span = plan.boxes[:, 3] - plan.boxes[:, 2]
    assert (plan.boxes[:, 0] == 0).all() and (plan.boxes[:, 1] == 1).all()
    assert torch.equal(plan.lam_target, 1 - span.float() / 50)
    torch.testing.assert_close(plan.weights.mean(-1), plan.lam_target)


def test_similar_length_partners_are_neighbours_in_length():
    lengths = torch.tensor([3, 30, 4, 29, 15, 16, 50, 49])
    mask = torch.arange(50)[None, :] < lengths[:, None]
    plan = PlanSampler(MixConfig(seed=0, partner="similar_length"), rank=0).sample(
        8, "cpu", layers=(0,), token_mask=mask, sequence_length=50
    )
    assert (lengths - lengths[plan.index]).abs().max() <= 1


def test_cutmix_without_a_grid_is_an_error():
    with pytest.raises(ValueError, match="CutMix needs the grid"):
        sample(4, cutmix_alpha=1.0)


def test_hidden_site_without_candidate_layers_is_an_error():
    with pytest.raises(ValueError, match="site='hidden' needs at least one candidate layer"):
        PlanSampler(MixConfig(seed=0), rank=0).sample(4, "cpu", layers=())


def test_identity_plan():
    plan = MixPlan.identity(3)
    assert plan.mixed is False and plan.lam.tolist() == [1, 1, 1] and plan.index.tolist() == [0, 1, 2]


def test_box_masks_match_a_loop():
    boxes = torch.tensor([[0, 2, 1, 3], [1, 4, 0, 4], [2, 2, 0, 4]])
    masks = box_masks(boxes, 4, 4)
    for b, (t, bo, le, r) in enumerate(boxes.tolist()):
        for y in range(4):
            for x in range(4):
                assert bool(masks[b, y, x]) == (t <= y < bo and le <= x < r)


def test_a_row_left_without_a_partner_keeps_weight_one_everywhere():
    # similar_length pairs neighbours; an odd batch leaves one row alone, which must look exactly unmixed
    mask = torch.arange(6)[None] < torch.tensor([6, 2, 5, 3, 4])[:, None]
    for mode in ("elem", "batch"):
        sampler = PlanSampler(MixConfig(partner="similar_length", mode=mode, correct_lam_tokens=True, seed=1))
        for _ in range(10):
            plan = sampler.sample(5, "cpu", layers=(0,), token_mask=mask, sequence_length=6)
            alone = plan.index == torch.arange(5)
            assert alone.any()
            assert torch.equal(plan.weights[alone], torch.ones_like(plan.weights[alone]))
            assert torch.equal(plan.lam_target[alone], torch.ones_like(plan.lam_target[alone]))
