"""Dense labels from the same plan: per-token targets (token classification), label maps pasted with the pixels
(semantic segmentation), the one rule for ignored positions, and the trainer's per-position loss."""

import pytest
import torch
import torch.nn.functional as F
from conftest import training_args
from datasets import Dataset
from transformers import AutoConfig, AutoModelForTokenClassification, SegformerConfig, SegformerForSemanticSegmentation

from hiddenmix import (
    DenseTargets,
    HiddenMixer,
    MixConfig,
    MixPlan,
    MixupCutmix,
    MixupCutmixCollate,
    MixupTrainer,
    PlanSampler,
    dense_soft_target_loss,
    mix_dense_targets,
    soft_map_cross_entropy,
)

IGNORE = -100
NUM_TAGS = 5


def tagger(seed: int = 0):
    config = AutoConfig.for_model(
        "bert",
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=NUM_TAGS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return AutoModelForTokenClassification.from_config(config)


def segmenter(seed: int = 0):
    config = SegformerConfig(
        num_channels=1,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[3, 3],
        strides=[2, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=4,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        drop_path_rate=0.0,
    )
    torch.manual_seed(seed)
    return SegformerForSemanticSegmentation(config)


def tagged_batch(seed: int = 0):
    """4 sentences of lengths 6, 3, 5, 4 (padded to 6); tags with -100 on [CLS]/[SEP], on a sub-word continuation
    (row 0, position 2) and on padding."""
    lengths = torch.tensor([6, 3, 5, 4])
    mask = (torch.arange(6)[None] < lengths[:, None]).long()
    ids = torch.randint(5, 64, (4, 6), generator=torch.Generator().manual_seed(seed)) * mask
    tags = torch.randint(0, NUM_TAGS, (4, 6), generator=torch.Generator().manual_seed(seed + 1))
    tags[:, 0] = IGNORE  # [CLS]
    tags[torch.arange(4), lengths - 1] = IGNORE  # [SEP]
    tags[0, 2] = IGNORE  # a continuation piece
    tags[mask == 0] = IGNORE
    return {"input_ids": ids, "attention_mask": mask}, tags


# ---------------------------------------------------------------------------------------------- per-token targets
@pytest.mark.parametrize("pad_policy", ["mix", "keep"])
def test_per_token_targets_are_the_hand_computed_mix_with_the_ignore_rule(pad_policy):
    batch, tags = tagged_batch()
    index, lam = torch.tensor([1, 0, 3, 2]), torch.tensor([0.7, 0.7, 0.4, 0.4])
    plan = MixPlan.from_lam(index, lam, token_mask=batch["attention_mask"].bool(), pad_policy=pad_policy)
    targets = mix_dense_targets(tags, plan, num_classes=NUM_TAGS, label_smoothing=0.1, ignore_index=IGNORE)
    soft = targets.soft()
    real = batch["attention_mask"].bool()
    for i in range(4):
        j = int(index[i])
        for t in range(6):
            # the weight of the sample's own content here: λ, or (keep) 1 / 0 where only one partner is real
            w = float(lam[i])
            if pad_policy == "keep" and real[i, t] != real[j, t]:
                w = 1.0 if real[i, t] else 0.0
            own, other = int(tags[i, t]), int(tags[j, t])
            counts = not ((own == IGNORE and w > 0) or (other == IGNORE and w < 1))
            assert bool(targets.valid[i, t]) == counts, (i, t)
            if not counts:
                assert torch.equal(soft[i, t], torch.zeros(NUM_TAGS))
                continue
            expected = torch.full((NUM_TAGS,), 0.0)
            for label, share in ((own, w), (other, 1 - w)):
                if share > 0:
                    expected += share * (F.one_hot(torch.tensor(label), NUM_TAGS) * 0.9 + 0.1 / NUM_TAGS)
            torch.testing.assert_close(soft[i, t], expected)
    # the loss is the soft-target cross-entropy averaged over the positions that count
    logits = torch.randn(4, 6, NUM_TAGS)
    by_hand = -(soft * F.log_softmax(logits, -1)).sum(-1)[targets.valid].mean()
    torch.testing.assert_close(dense_soft_target_loss(logits, targets), by_hand)
    if pad_policy == "mix":  # labelled positions whose partner is padding there drop out by the rule
        assert 0 < int(targets.valid.sum()) < int((tags != IGNORE).sum())


def test_a_pasted_token_span_carries_its_tags():
    batch, tags = tagged_batch()
    mask = batch["attention_mask"].bool()
    sampler = PlanSampler(MixConfig(site="embeddings", mixup_alpha=0.0, cutmix_alpha=1.0, seed=3))
    plans = [sampler.sample(4, "cpu", token_mask=mask, grid=(1, 6), sequence_length=6) for _ in range(20)]
    spans = 0
    for plan in plans:
        targets = mix_dense_targets(tags, plan, num_classes=NUM_TAGS, ignore_index=IGNORE)
        inside = plan.weights == 0  # (B, T) positions whose content is the partner's
        spans += int(inside.any())
        partner_tags = tags[plan.index]
        expected = torch.where(inside, partner_tags, tags)
        expected = torch.where(targets.valid, expected, torch.full_like(expected, IGNORE))
        assert torch.equal(targets.hard(), expected)
        assert torch.equal(targets.weight, plan.weights) and set(plan.weights.unique().tolist()) <= {0.0, 1.0}
    assert spans > 10


def test_dense_labels_that_do_not_fit_the_plan_are_refused():
    _, tags = tagged_batch()
    plan = MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.5, token_mask=torch.ones(4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"dense labels with positions \(7,\) do not match the positions this plan"):
        mix_dense_targets(torch.zeros(4, 7, dtype=torch.long), plan, num_classes=NUM_TAGS)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 5\) or ignore_index=-100"):
        mix_dense_targets(torch.full((4, 6), 9), plan, num_classes=NUM_TAGS)
    with pytest.raises(ValueError, match=r"labels have shape \(3, 6\) but the plan mixed a batch of 4"):
        mix_dense_targets(tags[:3], plan, num_classes=NUM_TAGS)


# ---------------------------------------------------------------------------------------------- token classification
def test_a_token_classifier_mixes_in_training_and_is_bit_identical_in_eval():
    model = tagger()
    batch, tags = tagged_batch()
    mixer = HiddenMixer(model, MixConfig(site="hidden", mixup_alpha=1.0, seed=0))
    model.eval()
    with torch.no_grad():
        attached = model(**batch).logits
    with mixer.paused(), torch.no_grad():
        plain = model(**batch).logits
    assert torch.equal(attached, plain)
    model.train()
    logits = model(**batch).logits
    assert not torch.allclose(logits, plain)
    loss = mixer.loss(logits, tags)
    loss.backward()
    expected = dense_soft_target_loss(logits, mixer.targets(tags))
    torch.testing.assert_close(loss, expected)
    assert isinstance(mixer.targets(tags), DenseTargets)
    mixer.remove()


def token_dataset() -> Dataset:
    """8 sentences: 4 of length 6 then 4 of length 4 (padded to 6), partners (0, 1), (2, 3), ... alike in length and in
    where their tags are missing, so the mix leaves every tagged position a target; the halves count 12 and 4."""
    rows = []
    g = torch.Generator().manual_seed(3)
    for length in (6, 6, 6, 6, 4, 4, 4, 4):
        mask = [1] * length + [0] * (6 - length)
        ids = (torch.randint(5, 64, (6,), generator=g) * torch.tensor(mask)).tolist()
        tags = torch.randint(0, NUM_TAGS, (6,), generator=g).tolist()
        tags = [IGNORE if (t == 0 or t >= length - 1) else tag for t, tag in enumerate(tags)]  # [CLS], [SEP], pads
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": tags})
    return Dataset.from_list(rows)


def test_a_tagged_position_the_mix_leaves_without_a_target_is_out_of_the_trainers_mean_as_in_mixer_loss(tmp_path):
    model = tagger()
    batch, tags = tagged_batch()
    args = training_args(tmp_path, layers=[1], mixup_alpha=0.4)
    trainer = MixupTrainer(model=model, args=args, train_dataset=token_dataset())
    plan = MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.6, layer=1, token_mask=batch["attention_mask"].bool())
    model.train()
    with trainer.mixer.use_plan(plan):
        loss = trainer.compute_loss(model, {**batch, "labels": tags})
        logits = model(**batch).logits
    targets = trainer.mixer.targets(tags, plan)
    assert int(targets.valid.sum()) < int((tags != IGNORE).sum())  # the mix leaves some tagged positions no target
    torch.testing.assert_close(loss, trainer.mixer.loss(logits, tags, plan))


def test_token_classification_gradient_accumulation_2x4_equals_one_batch_of_8(tmp_path):
    # Micro-batches of different counted-token totals (12 and 4): a plain mean per micro-batch would weight their
    # tokens differently; weighting each by the tokens it counts does not. Partners pair within each half, as two
    # micro-batches would.
    pairs = torch.tensor([1, 0, 3, 2])
    mask = torch.tensor(token_dataset()["attention_mask"]).bool()
    runs = {}
    for name, batch, accumulation, plans in [
        ("one batch of 8", 8, 1, [MixPlan.from_lam(torch.cat([pairs, pairs + 4]), 0.6, layer=1, token_mask=mask)]),
        (
            "2 x 4",
            4,
            2,
            [
                MixPlan.from_lam(pairs, 0.6, layer=1, token_mask=mask[:4]),
                MixPlan.from_lam(pairs, 0.6, layer=1, token_mask=mask[4:]),
            ],
        ),
    ]:
        model = tagger()
        args = training_args(
            tmp_path / name,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=0.0,
            train_sampling_strategy="sequential",
            layers=[1],
            mixup_alpha=0.4,
        )
        trainer = MixupTrainer(model=model, args=args, train_dataset=token_dataset())
        forced = iter(plans)
        trainer.mixer.sampler.sample = lambda *a, plans=forced, **k: next(plans)  # each micro-batch's own plan
        trainer.train()
        runs[name] = (model.state_dict(), trainer.state.log_history[0]["loss"])
    (weights_a, loss_a), (weights_b, loss_b) = runs.values()
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert any(not torch.equal(tagger().state_dict()[k], weights_a[k]) for k in weights_a)
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=1e-5, atol=1e-6, msg=key)


# ---------------------------------------------------------------------------------------------- segmentation
def label_maps(batch: int = 6, size: int = 16) -> torch.Tensor:
    """Each map a different pattern of 4 classes, with an ignored (255) border on row 0."""
    g = torch.Generator().manual_seed(2)
    maps = torch.randint(0, 4, (batch, size // 4, size // 4), generator=g).repeat_interleave(4, 1)
    maps = maps.repeat_interleave(4, 2)
    maps[:, 0] = 255
    return maps


@pytest.mark.parametrize("cutmix_mask", ["box", "fmix"])
def test_cutmixed_label_maps_follow_the_pasted_pixels_exactly(cutmix_mask):
    images = torch.arange(1, 7, dtype=torch.float32)[:, None, None, None].expand(6, 1, 16, 16).clone()
    maps = label_maps()
    mix = MixupCutmix(
        MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_mask=cutmix_mask, num_classes=4, ignore_index=255, seed=0)
    )
    pasted = 0
    for _ in range(10):
        out = mix.mix(images, maps)
        source = out.pixel_values[:, 0].long() - 1  # (B, H, W): the sample each pixel came from
        expected = maps[source, torch.arange(16)[None, :, None], torch.arange(16)[None, None, :]]
        expected = torch.where(expected == 255, 255, expected)
        hard = out.targets.hard()
        assert torch.equal(hard, expected)  # every pixel's label is that of the image it came from; hard stays hard
        assert set(out.targets.weight.unique().tolist()) <= {0.0, 1.0}
        pasted += int((source != torch.arange(6)[:, None, None]).any())
    assert pasted >= 8


def test_mixup_gives_per_pixel_soft_targets_and_the_transform_returns_soft_maps():
    images, maps = torch.rand(6, 1, 16, 16), label_maps()
    mix = MixupCutmix(MixConfig(mixup_alpha=1.0, num_classes=4, ignore_index=255, seed=0))
    out = mix.mix(images, maps)
    lam, index = out.plan.lam, out.plan.index
    torch.testing.assert_close(out.targets.weight, lam[:, None, None].expand(6, 16, 16))
    soft = out.targets.soft(class_dim=1)  # (B, C, H, W)
    expected = lam[:, None, None, None] * F.one_hot(maps.clamp(max=3), 4).permute(0, 3, 1, 2) + (
        1 - lam[:, None, None, None]
    ) * F.one_hot(maps[index].clamp(max=3), 4).permute(0, 3, 1, 2)
    counted = out.targets.valid[:, None]
    torch.testing.assert_close(soft, expected * counted)
    assert not out.targets.valid[:, 0].any() and out.targets.valid[:, 1:].all()  # the ignored border row
    pixels, soft_maps = MixupCutmix(mix.config)(images, maps)
    assert soft_maps.shape == (6, 4, 16, 16) and torch.equal(soft_maps.sum(1)[:, 0], torch.zeros(6, 16))
    logits = torch.randn(6, 4, 8, 8)
    up = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    by_hand = -(soft_maps * F.log_softmax(up, 1)).sum(1)[:, 1:].mean()
    torch.testing.assert_close(soft_map_cross_entropy(logits, soft_maps), by_hand)


def test_the_collate_fn_mixes_label_maps_with_the_pixels():
    rows = [{"pixel_values": torch.rand(1, 16, 16), "labels": m} for m in label_maps()]
    collate = MixupCutmixCollate(MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=4, ignore_index=255, seed=1))
    batch = collate(rows)
    assert batch["pixel_values"].shape == (6, 1, 16, 16) and batch["labels"].shape == (6, 4, 16, 16)
    assert set(batch["labels"].sum(1).unique().tolist()) <= {0.0, 1.0}  # hard labels stay hard (and ignored: 0)


def test_a_segformer_trains_with_pixel_cutmix_and_evaluates_bit_identically(tmp_path):
    model = segmenter()
    images = torch.rand(6, 1, 16, 16)
    data = Dataset.from_dict({"pixel_values": images.tolist(), "labels": label_maps().tolist()})
    args = training_args(
        tmp_path,
        site="input",
        mixup_alpha=0.0,
        cutmix_alpha=1.0,
        ignore_index=255,
        per_device_train_batch_size=6,
        max_steps=2,
        remove_unused_columns=False,
    )
    trainer = MixupTrainer(model=model, args=args, train_dataset=data)
    batch = trainer.data_collator([data[i] for i in range(6)])
    model.train()
    loss = trainer.compute_loss(model, dict(batch))
    plan = trainer.last_plan
    assert plan.mixed and plan.boxes is not None
    with trainer.mixer.paused():
        logits = model(pixel_values=plan_mixed(batch["pixel_values"], plan)).logits  # (B, C, 8, 8)
    up = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    targets = trainer.mixer.targets(batch["labels"], plan)
    by_hand = -(targets.soft(class_dim=1) * F.log_softmax(up, 1)).sum(1)[targets.valid].sum()
    torch.testing.assert_close(loss, by_hand / (batch["labels"] != 255).sum())
    trainer.train()
    model.eval()
    with torch.no_grad():
        attached = model(pixel_values=images).logits
    trainer.mixer.remove()
    with torch.no_grad():
        assert torch.equal(model(pixel_values=images).logits, attached)


def plan_mixed(pixels, plan):
    from hiddenmix import mix_pixels

    return mix_pixels(pixels, plan)
