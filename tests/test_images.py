"""Images: pixel Mixup / CutMix / FMix, the three ways to use them, and mixing inside ViT-family models."""

import numpy as np
import pytest
import torch
from conftest import MODELS, swin, vit
from torch.utils.data import DataLoader

from hiddenmix import HiddenMixer, MixConfig, MixPlan, MixupCutmix, MixupCutmixCollate, fmix_masks, mix_pixels
from hiddenmix.plots import reliability_diagram, save_mixed_grid

B, C, H, W = 7, 3, 16, 16  # odd on purpose: timm refuses odd batches


def tagged_images(batch=B, channels=C, height=H, width=W):
    """Each sample a distinct constant image, so every output pixel tells which sample it came from."""
    return (torch.arange(1, batch + 1, dtype=torch.float32)[:, None, None, None] * 10).expand(
        batch, channels, height, width
    ) + torch.zeros(batch, channels, height, width)


def partner_share(mixed, images, index):
    """Share of each sample's pixels taken, exactly, from its partner (all channels must agree)."""
    from_partner = (mixed == images[index]).all(dim=1)  # (B, H, W)
    alone = index == torch.arange(len(index))  # its own partner (odd batch in pair mode): nothing taken
    return torch.where(alone, 0, from_partner.flatten(1).sum(1))


# ---------------------------------------------------------------------------------------------- pixel transform
PASTING = {
    "cutmix-batch": dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch"),
    "cutmix-pair": dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="pair"),
    "cutmix-elem": dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem"),
    "cutmix-minmax": dict(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8), mode="elem"),
    "switch-elem": dict(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0, mode="elem"),
    "cutmix-prob": dict(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.5, mode="elem"),
}


@pytest.mark.parametrize("mask", ["box", "fmix"])
@pytest.mark.parametrize("knobs", list(PASTING.values()), ids=list(PASTING))
def test_realised_lam_is_the_pasted_pixel_share_exactly(knobs, mask):
    images = tagged_images()
    for seed in range(5):
        out = MixupCutmix(MixConfig(num_classes=B, seed=seed, cutmix_mask=mask, **knobs)).mix(images, torch.arange(B))
        plan = out.plan
        if not plan.mixed:
            continue
        pasted = partner_share(out.pixel_values, images, plan.index)
        assert torch.equal(plan.lam_target, 1.0 - pasted.to(torch.float32) / float(H * W))
        own = (out.pixel_values == images).all(dim=1).flatten(1).sum(1)
        assert torch.equal(own + pasted, torch.full((B,), H * W))  # every pixel is one or the other, whole
        # the soft target of class i is the realised λ
        assert torch.allclose(out.targets.target[torch.arange(B), torch.arange(B)], plan.lam_target)


def test_elem_mode_draws_a_box_per_sample_and_batch_mode_one_box():
    images = tagged_images(batch=16)
    elem = MixupCutmix(MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", seed=0, num_classes=16))
    boxes = elem.mix(images, torch.arange(16)).plan.boxes
    assert torch.unique(boxes, dim=0).shape[0] > 8
    batch = MixupCutmix(MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", seed=0, num_classes=16))
    boxes = batch.mix(images, torch.arange(16)).plan.boxes
    assert torch.unique(boxes, dim=0).shape[0] == 1


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_switch_prob_zero_is_pure_mixup(mode):
    images = torch.rand(B, C, H, W)
    mix = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.0, mode=mode, seed=1, num_classes=B))
    for _ in range(4):
        out = mix.mix(images, torch.arange(B))
        plan = out.plan
        assert plan.use_cutmix is None or not plan.use_cutmix.any()
        expected = torch.lerp(images[plan.index], images, plan.lam[:, None, None, None])
        torch.testing.assert_close(out.pixel_values, expected)
        assert torch.equal(plan.lam_target, plan.lam)


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_switch_prob_one_is_pure_cutmix(mode):
    images = tagged_images()
    mix = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0, mode=mode, seed=1, num_classes=B))
    pasted = 0
    for _ in range(4):
        out = mix.mix(images, torch.arange(B))
        own = (out.pixel_values == images).all(dim=1)
        partner = (out.pixel_values == images[out.plan.index]).all(dim=1)
        assert (own | partner).all()  # no pixel is a blend
        pasted += int(partner.sum())
    assert pasted > 0  # (one draw may give an empty box: λ close to 1)


@pytest.mark.parametrize(
    "knobs",
    [dict(prob=0.0), dict(enabled=False), dict(mixup_alpha=0.0, cutmix_alpha=0.0)],
    ids=["prob0", "disabled", "alphas0"],
)
def test_nothing_to_mix_returns_the_input_tensor_itself(knobs):
    images = torch.rand(B, C, H, W)
    labels = torch.randint(0, 10, (B,))
    mixed, targets = MixupCutmix(MixConfig(num_classes=10, **knobs))(images, labels)
    assert mixed is images
    assert torch.equal(targets, torch.nn.functional.one_hot(labels, 10).float())


def test_a_size_one_batch_returns_the_input_tensor_itself():
    image = torch.rand(1, C, H, W)
    mixed, targets = MixupCutmix(MixConfig(num_classes=10, mixup_alpha=1.0, cutmix_alpha=1.0))(
        image, torch.tensor([3])
    )
    assert mixed is image
    assert targets.argmax(-1).tolist() == [3]


def test_pair_mode_odd_batch_leaves_one_sample_unmixed():
    images = tagged_images()
    out = MixupCutmix(MixConfig(mixup_alpha=1.0, mode="pair", seed=0, num_classes=B)).mix(images, torch.arange(B))
    alone = out.plan.index == torch.arange(B)
    assert alone.sum() == 1
    assert torch.equal(out.pixel_values[alone], images[alone])
    assert (out.plan.index[out.plan.index] == torch.arange(B)).all()  # partners swap


@pytest.mark.parametrize(
    "knobs",
    [dict(mixup_alpha=1.0), dict(mixup_alpha=0.0, cutmix_alpha=1.0), dict(mixup_alpha=1.0, cutmix_alpha=1.0)],
    ids=["mixup", "cutmix", "switch"],
)
@pytest.mark.parametrize("mask", ["box", "fmix"])
def test_the_callers_tensors_are_not_modified(knobs, mask):
    images, labels = torch.rand(B, C, H, W), torch.randint(0, 10, (B,))
    images_before, labels_before = images.clone(), labels.clone()
    mixed, _ = MixupCutmix(MixConfig(num_classes=10, seed=0, cutmix_mask=mask, **knobs))(images, labels)
    assert not torch.equal(mixed, images)
    assert torch.equal(images, images_before) and torch.equal(labels, labels_before)


def test_fused_mixup_equals_lerp_and_keeps_lam_one_rows_exact():
    images = torch.randn(B, C, H, W)
    index = torch.tensor([1, 2, 3, 4, 5, 6, 0])
    lam = torch.tensor([1.0, 0.0, 0.3, 0.5, 0.7, 0.99, 1.0])
    plan = MixPlan.from_lam(index, lam, site="input")
    mixed = mix_pixels(images, plan)
    torch.testing.assert_close(mixed, torch.lerp(images[index], images, lam[:, None, None, None]))
    assert torch.equal(mixed[0], images[0]) and torch.equal(mixed[1], images[2])


LABEL_FORMATS = {
    "ids": (torch.tensor([0, 1, 2, 3, 4, 0, 1]), {}, (B, 5)),
    "one_hot": (torch.nn.functional.one_hot(torch.arange(B) % 5, 5).float(), {}, (B, 5)),
    "probabilities": (torch.softmax(torch.randn(B, 5), -1), {}, (B, 5)),
    "multi_label": (
        (torch.rand(B, 5) > 0.5).float(),
        dict(problem_type="multi_label_classification"),
        (B, 5),
    ),
    "regression": (torch.randn(B), dict(problem_type="regression"), (B,)),
}


@pytest.mark.parametrize("labels, knobs, shape", list(LABEL_FORMATS.values()), ids=list(LABEL_FORMATS))
def test_any_label_format_gives_targets_mixed_with_the_realised_lam(labels, knobs, shape):
    cfg = MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, seed=0, num_classes=None if "regression" in str(knobs) else 5)
    out = MixupCutmix(cfg, **knobs).mix(torch.rand(B, C, H, W), labels)
    assert tuple(out.targets.target.shape) == shape
    rows = labels.float() if labels.is_floating_point() else torch.nn.functional.one_hot(labels, 5).float()
    lam = out.plan.lam_target.reshape(-1, *([1] * (rows.dim() - 1)))
    torch.testing.assert_close(out.targets.target, lam * rows + (1 - lam) * rows[out.plan.index])


def test_fmix_masks_hold_exactly_the_wanted_share_and_are_smooth():
    lam = torch.tensor([0.25, 0.5, 0.9, 1.0])
    masks, realised = fmix_masks(lam, (32, 32), generator=torch.Generator().manual_seed(0))
    assert masks.shape == (4, 32, 32)
    assert torch.equal(masks.flatten(1).sum(1), torch.round((1 - lam) * 1024).long())
    assert torch.equal(realised, 1.0 - torch.round((1 - lam) * 1024) / 1024)
    # low-frequency: far fewer mask edges than a random scatter of the same share would have
    edges = (masks[:, 1:] != masks[:, :-1]).sum() + (masks[:, :, 1:] != masks[:, :, :-1]).sum()
    assert edges < 0.2 * 2 * 4 * 32 * 31 * 0.5


# ---------------------------------------------------------------------------------------------- collate_fn
class DictImages(torch.utils.data.Dataset):
    def __init__(self, n=10):
        self.images = torch.rand(n, C, H, W)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"pixel_values": self.images[i], "labels": i % 4, "id": i}


@pytest.mark.parametrize("structure", ["dict", "tuple"])
def test_collate_wrapper_mixes_a_collated_batch_and_keeps_its_structure(structure):
    data = DictImages()
    if structure == "tuple":
        data = [(d["pixel_values"], d["labels"], d["id"]) for d in data]
    collate = MixupCutmixCollate(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=4, seed=0))
    batch = next(iter(DataLoader(data, batch_size=5, collate_fn=collate)))
    if structure == "dict":
        assert set(batch) == {"pixel_values", "labels", "id"}
        pixels, targets, ids = batch["pixel_values"], batch["labels"], batch["id"]
    else:
        pixels, targets, ids = batch
    assert pixels.shape == (5, C, H, W) and targets.shape == (5, 4)
    assert torch.allclose(targets.sum(-1), torch.ones(5))
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert not torch.equal(pixels, torch.stack([DictImages().images[i] for i in range(5)]))


def test_collate_wrapper_with_prob_zero_passes_the_collated_pixels_through():
    seen = {}

    def collate(samples):
        seen["batch"] = torch.utils.data.default_collate(samples)
        return seen["batch"]

    wrapper = MixupCutmixCollate(MixupCutmix(MixConfig(prob=0.0, num_classes=4)), collate_fn=collate)
    batch = wrapper([DictImages()[i] for i in range(3)])
    assert batch["pixel_values"] is seen["batch"]["pixel_values"]


def test_collate_workers_draw_different_mixes():
    collate = MixupCutmixCollate(MixConfig(mixup_alpha=1.0, num_classes=4, seed=0))
    loader = DataLoader(DictImages(8), batch_size=4, collate_fn=collate, num_workers=2)
    first, second = list(loader)  # worker 0 and worker 1, each with its own stream
    lam_first = first["labels"].max(-1).values
    lam_second = second["labels"].max(-1).values
    assert not torch.allclose(lam_first, lam_second)


# ---------------------------------------------------------------------------------------------- HiddenMixer
SITES = {
    "input-mixup": dict(site="input", mixup_alpha=1.0),
    "input-cutmix": dict(site="input", mixup_alpha=1.0, cutmix_alpha=1.0),
    "embeddings-patch-cutmix": dict(site="embeddings", mixup_alpha=0.0, cutmix_alpha=1.0),
    "embeddings-mixup": dict(site="embeddings", mixup_alpha=1.0),
    "hidden-mixup": dict(site="hidden", mixup_alpha=1.0),
    "hidden-patch-cutmix": dict(site="hidden", mixup_alpha=0.0, cutmix_alpha=1.0),
}


@pytest.mark.parametrize("knobs", list(SITES.values()), ids=list(SITES))
def test_eval_mode_is_bit_identical_to_the_model_without_a_mixer(knobs):
    model = vit()
    pixels = torch.randn(5, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        plain = model(pixel_values=pixels).logits
        with HiddenMixer(model, MixConfig(seed=0, **knobs)):
            attached = model(pixel_values=pixels).logits
    assert torch.equal(plain, attached)
    model.train()
    with HiddenMixer(model, MixConfig(seed=0, **knobs)):
        torch.manual_seed(0)
        mixed = model(pixel_values=pixels).logits
    torch.manual_seed(0)
    assert not torch.equal(mixed, model(pixel_values=pixels).logits)  # the mixer did mix in training


def first_layer_inputs(model, mixer, pixels):
    """Hidden states entering layer 0 with the mixer's mix, and without (same dropout draws: dropout is 0)."""
    caught = []
    stack = mixer.stack.modules[0]
    handle = stack.register_forward_pre_hook(
        lambda m, args, kwargs: caught.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    try:
        model.train()
        model(pixel_values=pixels)
        plan = mixer.plan
        with mixer.paused():
            model(pixel_values=pixels)
    finally:
        handle.remove()
    return caught[0], caught[1], plan


@pytest.mark.parametrize("name, prefix", [("vit", 1), ("deit", 2), ("beit", 1), ("swin", 0)])
def test_patch_token_cutmix_lam_is_the_share_of_patches_from_the_partner(name, prefix):
    model = MODELS[name]()
    mixer = HiddenMixer(model, MixConfig(site="embeddings", mixup_alpha=0.0, cutmix_alpha=1.0, seed=0))
    checked = 0
    for seed in range(4):
        torch.manual_seed(seed)
        mixed, plain, plan = first_layer_inputs(model, mixer, torch.randn(6, 1, 8, 8))
        assert plan.grid == (4, 4)
        patches_mixed, patches_plain = mixed[:, prefix:], plain[:, prefix:]
        from_partner = (patches_mixed == patches_plain[plan.index]).all(-1)  # (B, 16)
        own = (patches_mixed == patches_plain).all(-1)
        assert (from_partner | own).all()
        taken = from_partner & ~own  # a row that takes nothing is its own partner
        assert torch.equal(plan.lam_target, 1.0 - taken.sum(1).float() / 16.0)
        # the pasted patches form the plan's box on the 4x4 grid
        boxes = plan.boxes
        expected = torch.zeros(6, 4, 4, dtype=torch.bool)
        for i in range(6):  # test-side reference, written out per sample
            expected[i, boxes[i, 0] : boxes[i, 1], boxes[i, 2] : boxes[i, 3]] = True
        assert torch.equal(from_partner & ~own, expected.flatten(1) & ~own)
        checked += int((plan.lam_target < 1).sum())
        # prefix tokens (class, distillation) are the same learned vectors for every sample entering layer 0
        torch.testing.assert_close(mixed[:, :prefix], plain[:, :prefix])
    assert checked > 0
    mixer.remove()


@pytest.mark.parametrize("name", list(MODELS))
def test_hidden_site_mixes_the_drawn_layer_output_of_vit_family_models(name):
    model = MODELS[name]()
    mixer = HiddenMixer(model, MixConfig(site="hidden", mixup_alpha=1.0, seed=0))
    outputs = []

    def keep(module, args, output):
        outputs.append(output[0] if isinstance(output, tuple) else output)

    handles = [layer.register_forward_hook(keep) for layer in mixer.stack.modules]  # after the mixer's hooks
    pixels = torch.randn(5, 1, 8, 8)
    model.train()
    model(pixel_values=pixels)
    plan = mixer.plan
    mixed = outputs[plan.layer]
    outputs.clear()
    with mixer.paused():
        model(pixel_values=pixels)
    plain = outputs[plan.layer]
    for h in handles:
        h.remove()
    mixer.remove()
    expected = torch.lerp(plain[plan.index], plain, plan.lam[:, None, None])
    torch.testing.assert_close(mixed, expected)


def test_swin_refuses_cutmix_between_stages_with_a_clear_error():
    with pytest.raises(ValueError, match=r"site='hidden'.*merge patches.*cutmix_alpha=0"):
        HiddenMixer(swin(), MixConfig(site="hidden", cutmix_alpha=1.0))


def test_gradient_checkpointing_recomputes_the_same_patch_mix():
    model = vit()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pixels, labels = torch.randn(6, 1, 8, 8), torch.arange(6)
    with HiddenMixer(model, MixConfig(site="embeddings", mixup_alpha=1.0, cutmix_alpha=1.0, seed=0)) as mixer:
        model.train()
        loss = mixer.loss(model(pixel_values=pixels).logits, labels)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        plan = mixer.plan
    model.gradient_checkpointing_disable()
    model.zero_grad()
    with HiddenMixer(model, MixConfig(site="embeddings")) as mixer, mixer.use_plan(plan):
        mixer.loss(model(pixel_values=pixels).logits, labels, plan).backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# ---------------------------------------------------------------------------------------------- training
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    return (images - 0.5) / 0.5, torch.tensor(data.target)


TRAIN_SITES = {
    "input": dict(site="input", mixup_alpha=0.4, cutmix_alpha=1.0),
    "embeddings-patch-cutmix": dict(site="embeddings", mixup_alpha=0.0, cutmix_alpha=1.0),
    "hidden": dict(site="hidden", mixup_alpha=0.4),
}


@pytest.mark.slow
@pytest.mark.parametrize("knobs", list(TRAIN_SITES.values()), ids=list(TRAIN_SITES))
def test_a_tiny_vit_learns_digits_with_each_site(knobs):
    images, labels = digits()
    held_x, held_y = images[-300:], labels[-300:]
    model = vit()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(pixel_values=held_x).logits, held_y).item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64 x 17-token model runs faster on one thread than on two shared ones
    before = held_out_loss()
    try:
        with HiddenMixer(model, MixConfig(seed=0, **knobs)) as mixer:
            for _ in range(80):
                rows = torch.randint(0, len(images) - 300, (64,), generator=generator)
                model.train()
                loss = mixer.loss(model(pixel_values=images[rows]).logits, labels[rows])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                assert mixer.plan.mixed
        after = held_out_loss()
    finally:
        torch.set_num_threads(threads)
    assert after < 0.75 * before, (before, after)  # chance level is ln 10 = 2.30


# ---------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "images, match",
    [
        (torch.rand(C, H, W), r"pixel_values must have rank 4 \[B, C, H, W\]; got rank 3 with shape \(3, 16, 16\)"),
        (torch.rand(2, 2, C, H, W), r"rank 4 .* got rank 5"),
        (torch.rand(0, C, H, W), r"empty batch"),
    ],
    ids=["rank3", "rank5", "empty"],
)
def test_transform_refuses_a_batch_of_the_wrong_rank(images, match):
    with pytest.raises(ValueError, match=match):
        MixupCutmix(MixConfig(num_classes=10))(images, torch.zeros(len(images), dtype=torch.long))


@pytest.mark.parametrize("site", ["input", "embeddings", "hidden"])
def test_mixer_refuses_pixels_of_the_wrong_rank_or_channel_count(site):
    model = vit()
    model.train()
    with HiddenMixer(model, MixConfig(site=site)):
        with pytest.raises(ValueError, match=r"pixel_values has 3 channels \(shape \(4, 3, 8, 8\)\).*num_channels=1"):
            model(pixel_values=torch.rand(4, 3, 8, 8))
        with pytest.raises(ValueError, match=r"rank 4 \[B, C, H, W\]; got rank 3"):
            model(pixel_values=torch.rand(1, 8, 8))


def test_transform_refuses_a_channel_count_it_was_told_not_to_take():
    with pytest.raises(ValueError, match=r"pixel_values has 1 channels.*num_channels=3"):
        MixupCutmix(MixConfig(num_classes=10), num_channels=3)(torch.rand(4, 1, H, W), torch.zeros(4).long())


@pytest.mark.parametrize("minmax", [(0.0, 0.5), (0.2, 1.5), (0.6, 0.4), (-0.1, 0.5)])
def test_box_range_outside_zero_one_is_refused(minmax):
    with pytest.raises(ValueError, match=r"cutmix_minmax=.* is not allowed; allowed: a pair with 0 < min < max <= 1"):
        MixupCutmix(MixConfig(num_classes=10), cutmix_minmax=minmax)


def test_num_classes_too_small_for_the_labels_is_refused():
    mix = MixupCutmix(MixConfig(num_classes=3, seed=0))
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*num_classes is too small"):
        mix(torch.rand(4, C, H, W), torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match=r"labels have 5 classes per row but num_classes=3"):
        mix(torch.rand(4, C, H, W), torch.eye(5)[:4])


def test_mixer_refuses_logits_narrower_than_the_labels():
    model = vit(num_labels=3)
    model.train()
    with HiddenMixer(model, MixConfig(site="input", seed=0)) as mixer:
        logits = model(pixel_values=torch.rand(4, 1, 8, 8)).logits
        with pytest.raises(ValueError, match=r"num_classes is too small"):
            mixer.loss(logits, torch.tensor([0, 1, 2, 7]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cutmix_mask="grid"), ValueError, r"MixConfig.cutmix_mask='grid' is not allowed; choose one of \['box'"),
        (dict(fmix_decay_power=0), ValueError, r"MixConfig.fmix_decay_power=0 is not allowed; allowed: a finite"),
        (dict(num_channels=0), ValueError, r"num_channels=0 must be None or an integer >= 1"),
        (dict(mode="row"), ValueError, r"MixConfig.mode='row' is not allowed"),
    ],
    ids=["mask", "decay", "channels", "mode"],
)
def test_transform_constructor_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        MixupCutmix(MixConfig(), **kwargs)


def test_mixup_of_integer_pixels_is_refused():
    with pytest.raises(TypeError, match=r"pixel_values has dtype torch.uint8; Mixup .* needs a floating dtype"):
        MixupCutmix(MixConfig(num_classes=10))(torch.zeros(4, C, H, W, dtype=torch.uint8), torch.zeros(4).long())


def test_pure_cutmix_of_integer_pixels_pastes_exactly():
    images = tagged_images().to(torch.uint8)
    out = MixupCutmix(MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, seed=0, num_classes=B)).mix(images, torch.arange(B))
    assert out.pixel_values.dtype == torch.uint8
    pasted = partner_share(out.pixel_values, images, out.plan.index)
    assert torch.equal(out.plan.lam_target, 1.0 - pasted.float() / (H * W))


# ---------------------------------------------------------------------------------------------- inspection
def test_save_mixed_grid_writes_a_png(tmp_path):
    images, labels = torch.rand(6, 1, 8, 8), torch.arange(6)
    out = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, seed=0, num_classes=6)).mix(images, labels)
    path = save_mixed_grid(tmp_path / "grid.png", out.pixel_values, labels, out.plan, columns=3, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_diagram_shows_each_bins_count(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.bar
    monkeypatch.setattr(
        matplotlib.axes.Axes, "bar", lambda ax, x, h, *a, **k: drawn.append((ax, h)) or original(ax, x, h, *a, **k)
    )
    probs = np.array([[0.95, 0.05]] * 9 + [[0.55, 0.45]])  # 9 examples in the top bin, 1 in the 0.55 bin
    path = reliability_diagram({"run": (probs, np.zeros(10, dtype=int))}, tmp_path / "r.png", n_bins=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = [h for ax, h in drawn if np.ndim(h) == 1]  # the count histogram: one bar per bin
    assert len(counts) == 1 and list(counts[0]) == [0, 0, 0, 0, 0, 1, 0, 0, 0, 9]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_plan_and_mix_stay_on_the_batch_device():
    images = torch.rand(B, C, H, W, device="cuda")
    out = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=10)).mix(
        images, torch.zeros(B, dtype=torch.long, device="cuda")
    )
    assert out.pixel_values.device.type == "cuda" and out.plan.lam.device.type == "cuda"
    assert out.targets.target.device.type == "cuda"


def test_the_transform_refuses_ignore_index_labels_it_cannot_mask_and_mix_returns_the_mask():
    mix = MixupCutmix(MixConfig(num_classes=3, seed=0))
    labels = torch.tensor([0, 1, -100, 2])
    with pytest.raises(ValueError, match=r"labels hold ignore_index=-100 rows.*MixupCutmix.mix\(\.\.\.\)"):
        mix(torch.rand(4, 3, 8, 8), labels)
    out = mix.mix(torch.rand(4, 3, 8, 8), labels)
    assert not out.targets.valid[2]


def test_a_disabled_cutmix_config_is_not_refused_where_it_could_not_mix():
    # a no-mix baseline on Swin keeps CutMix settings it never uses; only an enabled one is checked
    model = swin()
    HiddenMixer(model, MixConfig(site="hidden", cutmix_alpha=1.0, enabled=False)).remove()
    mixer = HiddenMixer(model, MixConfig(site="hidden", mixup_alpha=0.4, enabled=False))
    with pytest.raises(ValueError, match="CutMix"):
        mixer.set_config(mixer.config.replace(cutmix_alpha=1.0, enabled=True))
    mixer.remove()


def test_the_baseline_run_sits_at_the_mixed_runs_site(tmp_path):
    from common.runs import RunArguments, planned_runs
    from hiddenmix import MixupTrainingArguments

    runs = planned_runs(MixupTrainingArguments(str(tmp_path), site="input", clean_loss_weight=1.0), RunArguments())
    assert runs["no-mix"].site == "input" and not runs["no-mix"].enabled and runs["no-mix"].clean_loss_weight == 0
    assert runs["input-mix"].site == "input" and runs["input-mix"].enabled and runs["input-mix"].clean_loss_weight == 1
    assert runs["no-mix"].output_dir == str(tmp_path / "no-mix")
