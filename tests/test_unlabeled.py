"""Unlabelled rows in the same plan (`MixupTrainer(..., unlabeled_dataset=...)`): guessed labels, the union mask
across labelled and unlabelled rows, accumulation, resume, evaluation, and the unlabelled stream."""

import pytest
import torch
import torch.nn.functional as F
from conftest import NUM_LABELS, SEQ, VOCAB, make_dataset, tiny_classifier, training_args
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hiddenmix import MixConfig, MixPlan, MixupTrainer
from hiddenmix.unlabeled import (
    UnlabeledStream,
    augment_ids,
    guess_labels,
    interior,
    pad_together,
    semi_supervised_loss,
    sharpen,
)


def unlabeled(n: int = 12, seed: int = 7) -> Dataset:
    """`n` token rows of lengths 3..SEQ (some shorter than any labelled row) and a label column to be ignored."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, SEQ + 1, (n,), generator=g)
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    ids = torch.randint(5, VOCAB, (n, SEQ), generator=g) * mask
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "label": [0] * n})


class Recording(MixupTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.records = [*getattr(self, "records", []), self.last_plan]
        return loss


# ------------------------------------------------------------------------------------------- the parts, by hand
def test_guessed_targets_and_both_losses_of_a_small_batch_equal_a_by_hand_computation():
    torch.manual_seed(0)
    model = tiny_classifier("single").train()  # no dropout: the views differ by their ids only
    ids = torch.randint(5, VOCAB, (2, 6))
    view = ids.clone()
    view[:, 2] = 4
    views = [{"input_ids": ids}, {"input_ids": view}]
    guessed = guess_labels(model, views, temperature=0.5)
    with torch.no_grad():
        mean = (model(input_ids=ids).logits.softmax(-1) + model(input_ids=view).logits.softmax(-1)) / 2
    by_hand = mean**2 / (mean**2).sum(-1, keepdim=True)
    torch.testing.assert_close(guessed, by_hand)
    assert not guessed.requires_grad

    # 2 labelled rows, then the 2 unlabelled rows and their one view: row 0 (labelled) mixes with row 3 (a view)
    logits = torch.randn(6, NUM_LABELS)
    labels = torch.tensor([1, 2])
    plan = MixPlan.from_lam(torch.tensor([3, 0, 1, 2, 5, 4]), 0.7, layer=0)
    own, other = semi_supervised_loss(logits, labels, guessed, plan, config=MixConfig(label_smoothing=0.1))
    rows = torch.cat([F.one_hot(labels, NUM_LABELS) * 0.9 + 0.1 / NUM_LABELS, guessed, guessed])
    mixed = 0.7 * rows + 0.3 * rows[plan.index]
    per_row = -(mixed * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(own, per_row[:2].mean())
    torch.testing.assert_close(other, per_row[2:].mean())


def test_sharpening_and_the_views_change_only_what_they_should():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    assert torch.equal(sharpen(probs, 1.0), probs)
    assert sharpen(probs, 0.5)[0, 0] > 0.6 and torch.allclose(sharpen(probs, 0.5).sum(), torch.tensor(1.0))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])  # right and left padding
    ids = torch.arange(10, 18).repeat(2, 1) * mask
    assert interior(mask).tolist() == [[0, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0]]
    g = torch.Generator().manual_seed(0)
    dropped = augment_ids(ids, mask, how="token_dropout", rate=1.0, mask_id=4, generator=g)
    assert torch.equal(dropped == 4, interior(mask))  # first, last and padding untouched
    swapped = augment_ids(ids, mask, how="swap", rate=0.5, mask_id=None, generator=g)
    assert torch.equal(swapped.sort(1).values, ids.sort(1).values)  # a reordering of each row
    outside = ~interior(mask) | ~torch.roll(interior(mask), -1, 1)
    assert torch.equal(swapped[:, -1], ids[:, -1]) and torch.equal(swapped[:, 0], ids[:, 0])
    assert torch.equal(swapped[~interior(mask)], ids[~interior(mask)]) and outside.any()


def test_the_stream_gives_each_process_its_own_rows_and_resumes_where_it_stood():
    data = unlabeled(20)

    def collate(rows):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows])}

    ranks = [UnlabeledStream(data, 3, collate, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].per_epoch == 3
    for _ in range(3):
        a, b = (r.next()["input_ids"] for r in ranks)
        assert not any(torch.equal(x, y) for x in a for y in b)  # disjoint rows at every step
    later = UnlabeledStream(data, 3, collate, seed=1, rank=0, world_size=2)
    later.load_state_dict(ranks[0].state_dict())
    assert torch.equal(later.next()["input_ids"], ranks[0].next()["input_ids"])  # the next epoch, as it would be
    with pytest.raises(
        ValueError, match=r"unlabeled_dataset has 20 rows, fewer than one batch of unlabeled_batch_siz"
    ):
        UnlabeledStream(data, 11, collate, seed=1, world_size=2)


def test_pad_together_pads_the_shorter_batch_on_its_side():
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.full((1, 5), 2), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    right = pad_together(a, b, pad_id=0, left=False)
    assert right["input_ids"].tolist()[0] == [1, 1, 1, 0, 0] and right["attention_mask"].shape == (3, 5)
    assert pad_together(a, b, pad_id=9, left=True)["input_ids"].tolist()[1] == [9, 9, 1, 1, 1]
    with pytest.raises(ValueError, match="tokenize both the same way"):
        pad_together({**a, "token_type_ids": a["input_ids"]}, b, pad_id=0, left=False)


# ------------------------------------------------------------------------------------------------- the trainer
def tokenizer():
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(5, VOCAB))]
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})


def trainer_for(tmp_path, model=None, data=None, cls=MixupTrainer, processing_class=None, **overrides):
    values = dict(unlabeled_batch_size=3, unlabeled_augment="swap", unlabeled_rampup=0.0, mixup_alpha=1.0)
    values.update(overrides)
    return cls(
        model=model if model is not None else tiny_classifier("single"),
        args=training_args(tmp_path, **values),
        train_dataset=data if data is not None else make_dataset(8),
        unlabeled_dataset=unlabeled(),
        processing_class=processing_class,
    )


def test_labelled_and_unlabelled_partners_get_the_union_of_their_masks(tmp_path):
    trainer = trainer_for(tmp_path, unlabeled_views=0, per_device_train_batch_size=2)
    model = trainer.model.train()
    seen = []
    layer = model.bert.encoder.layer[1]
    # after the mixer's own pre-hook (registered first): the mask as the layer receives it, by position here
    handle = layer.register_forward_pre_hook(
        lambda m, a, k: seen.append(k.get("attention_mask", a[1])), with_kwargs=True
    )
    batch = trainer.data_collator([make_dataset(2)[i] for i in range(2)])
    joined, _ = trainer.unlabeled.join(model, {k: v for k, v in batch.items() if k != "labels"})
    rows = joined["attention_mask"].bool()
    # labelled row 0 with unlabelled row 2, labelled row 1 with unlabelled row 4; row 3 alone
    plan = MixPlan.from_lam(torch.tensor([2, 4, 0, 3, 1]), 0.6, layer=0, token_mask=rows)
    with trainer.mixer.use_plan(plan):
        model(**joined)
    handle.remove()
    mask = seen[-1]  # [B, 1, T, T] as this layer takes it: True / 0 where a key may be attended
    keys = mask[:, 0, 0] if mask.dtype == torch.bool else mask[:, 0, 0] == 0
    assert torch.equal(keys, rows | rows[plan.index])
    assert not torch.equal(rows[0], rows[2])  # the two had different lengths: the union changed something


def test_two_by_four_accumulated_equals_one_batch_of_eight_with_unlabelled_rows(tmp_path):
    runs = []
    for batch, accumulation, unlabeled_rows in [(8, 1, 4), (4, 2, 2)]:
        model = tiny_classifier("single")
        trainer = trainer_for(
            tmp_path / str(batch), model=model, per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation, unlabeled_batch_size=unlabeled_rows, unlabeled_views=0,
            mixup_alpha=0.0, max_steps=1, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant",
            weight_decay=0.0, max_grad_norm=0.0, train_sampling_strategy="sequential", logging_steps=1,
        )  # fmt: skip
        trainer.train()
        runs.append((model.state_dict(), trainer.state.log_history[0]))
    (one, log_one), (two, log_two) = runs
    assert log_one["loss"] == pytest.approx(log_two["loss"], rel=1e-5)
    assert log_one["mix/loss_unlabeled"] == pytest.approx(log_two["mix/loss_unlabeled"], rel=1e-5)
    assert any(not torch.equal(one[k], tiny_classifier("single").state_dict()[k]) for k in one)
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    def run(folder, resume=None):
        trainer = trainer_for(
            folder, model=tiny_classifier("single", dropout=0.1), cls=Recording, unlabeled_augment="token_dropout",
            max_steps=4, save_strategy="steps", save_steps=2, per_device_train_batch_size=4, data=make_dataset(12),
            processing_class=tokenizer(),
        )  # fmt: skip
        assert trainer.unlabeled.mask_id == 4
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-2"))
    assert len(resumed.records) == 2
    for a, b in zip(full.records[2:], resumed.records):
        torch.testing.assert_close(a.lam_target, b.lam_target)
        assert torch.equal(a.index, b.index)
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(value, resumed.model.state_dict()[key], rtol=1e-5, atol=1e-6, msg=key)


def test_evaluation_is_that_of_a_plain_trainer(tmp_path):
    model = tiny_classifier("single")
    trainer = trainer_for(tmp_path / "mixup", model=model)
    trainer.train()
    evaluated = make_dataset(10, seed=5)
    mixed = trainer.evaluate(evaluated)
    plain = Trainer(model=model, args=TrainingArguments(str(tmp_path / "plain"), report_to=[], use_cpu=True))
    expected = plain.evaluate(evaluated)
    assert mixed["eval_loss"] == expected["eval_loss"]


@pytest.mark.parametrize(
    "kind,overrides,match",
    [
        ("single", dict(clean_loss_weight=1.0), "without a clean loss"),
        ("multi", dict(), "problem_type='multi_label_classification'"),
        ("single", dict(unlabeled_views=-1), r"unlabeled_views=-1 is not allowed; allowed: an integer >= 0"),
        ("single", dict(sharpen_temperature=0), r"sharpen_temperature=0 is not allowed; allowed: a number > 0"),
    ],
    ids=["clean-loss", "multi-label", "views", "temperature"],
)
def test_what_unlabelled_rows_cannot_do_is_refused(tmp_path, kind, overrides, match):
    with pytest.raises(ValueError, match=match):
        trainer_for(tmp_path, model=tiny_classifier(kind), **overrides)


def test_token_dropout_needs_a_tokenizer_with_a_mask_or_unknown_token(tmp_path):
    with pytest.raises(ValueError, match="pass processing_class=tokenizer, or use unlabeled_augment='swap'"):
        trainer_for(tmp_path, unlabeled_augment="token_dropout")


def test_unlabelled_options_without_unlabelled_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unlabelled-row options \{'unlabeled_views': 3\} but no unlabeled_data"):
        MixupTrainer(model=tiny_classifier("single"), args=training_args(tmp_path, unlabeled_views=3))
