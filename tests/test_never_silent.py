"""Never silent in the user's own loop: the loss is bound to the forward that made the logits, `outputs.loss` of a
mixed forward is its soft-target loss, the loss function never changes under a run, a forgotten `model.train()` is
said, and a deep copy of an attached model is a plain model."""

import copy
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import NUM_LABELS, SEQ, VOCAB, forward, make_dataset, padded_batch, tiny_classifier, tiny_model
from transformers import AutoConfig, AutoModelForTokenClassification, Trainer, TrainingArguments

from hiddenmix import HiddenMixer, MixConfig, MixPlan, MixupTrainer, MixupTrainingArguments, mixup_loss

# every row mixed, λ far from 1: a loss over the wrong plan is far from the right one
PLAN = dict(site="hidden", layer=0)


def fixed_plan(batch: dict, lam: float = 0.3, layer: int = 0) -> MixPlan:
    rows = batch["input_ids"].shape[0]
    return MixPlan.from_lam(
        torch.roll(torch.arange(rows), 1), lam, site="hidden", layer=layer, token_mask=batch["attention_mask"].bool()
    )


# ------------------------------------------------------------------------- 1. outputs.loss of a mixed forward
def test_outputs_loss_of_a_mixed_forward_given_labels_is_the_soft_target_loss_of_its_plan():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0))
    plan = fixed_plan(batch)
    with mixer.use_plan(plan):
        out = model(**batch, labels=labels)
    expected = mixup_loss(out.logits, labels, plan)
    assert torch.allclose(out.loss, expected)
    assert not torch.allclose(out.loss, F.cross_entropy(out.logits, labels))  # not the hard-label loss
    assert out[0] is out.loss and list(out.keys())[0] == "loss"  # where a model given labels puts it
    out.loss.backward()


def test_outputs_loss_of_a_tuple_output_comes_first_and_eval_keeps_the_models_own_loss():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0))
    plan = fixed_plan(batch)
    with mixer.use_plan(plan):
        loss, logits = model(**batch, labels=labels, return_dict=False)
    assert torch.allclose(loss, mixup_loss(logits, labels, plan))
    model.eval()
    with torch.no_grad():
        attached = model(**batch, labels=labels)
        mixer.remove()
        plain = model(**batch, labels=labels)
    assert torch.equal(attached.loss, plain.loss) and torch.equal(attached.logits, plain.logits)


def test_a_model_never_sees_float_labels_of_a_mixed_forward():
    model = tiny_classifier("single").train()
    assert model.config.problem_type is None
    HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    rows = torch.softmax(torch.randn(4, NUM_LABELS), -1)
    ids = torch.randint(5, VOCAB, (4, SEQ))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=rows)
    assert model.config.problem_type is None  # the model's BCE switch never ran
    assert torch.isfinite(out.loss)


# ------------------------------------------------------------------------------- 2. the loss follows the logits
def test_mixer_loss_after_a_paused_and_an_eval_forward_uses_the_plan_of_the_logits():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    mixed = model(**batch).logits
    plan = mixer.plan
    with mixer.paused():
        clean = model(**batch).logits
    model.eval()
    with torch.no_grad():
        model(**batch)  # an eval forward to log accuracy
    model.train()
    assert plan.mixed
    assert torch.allclose(mixer.loss(mixed, labels), mixup_loss(mixed, labels, plan))
    assert not torch.allclose(mixer.loss(mixed, labels), F.cross_entropy(mixed, labels))
    assert torch.allclose(mixer.loss(clean, labels), F.cross_entropy(clean, labels))
    assert torch.allclose(mixer.loss(mixed[:, :], labels), mixup_loss(mixed, labels, plan))  # a view of them too


def test_logits_the_mixer_cannot_place_after_several_forwards_are_an_error_that_names_plan():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    head = torch.nn.Linear(NUM_LABELS, NUM_LABELS)
    own = head(model(**batch).logits)  # logits of a head of one's own: one forward since the last loss
    plan = mixer.plan
    assert torch.allclose(mixer.loss(own, labels), mixup_loss(own, labels, plan))
    own = head(model(**batch).logits)
    with mixer.paused():
        model(**batch)
    with pytest.raises(ValueError, match=r"cannot tell which forward.*2 forwards.*mixed, plain.*plan=plan"):
        mixer.loss(own, labels)
    assert torch.isfinite(mixer.loss(own, labels, plan=mixer.forwards.forwards[-2].plan))


def test_a_loop_on_outputs_loss_can_still_ask_for_targets_and_the_log_holds_no_tensor_alive():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    for _ in range(3):  # each step: outputs.loss, then the targets of the same forward (e.g. to log them)
        out = model(**batch, labels=labels)
        out.loss.backward()
        assert torch.equal(mixer.targets(labels).target, mixer.targets(labels, plan=mixer.plan).target)
    (ref, _), *_ = mixer.forwards.forwards[-1].outputs
    assert ref() is out.logits
    del out
    assert ref() is None  # the log keeps no output (nor its memory) alive


# ---------------------------------------------------------------------- 3. the loss function never changes in a run
def test_the_loss_function_does_not_change_when_evaluation_writes_problem_type_into_the_config():
    model = tiny_classifier("single").train()
    mixer = HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    ids = torch.randint(5, VOCAB, (4, SEQ))
    rows = torch.softmax(torch.randn(4, NUM_LABELS), -1)  # probability rows: a documented single-label form
    logits = model(input_ids=ids).logits
    before = mixer.loss(logits, rows)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids, labels=rows)  # the model's own eval loss: float labels switch it to multi-label
    assert model.config.problem_type == "multi_label_classification"
    assert mixer.problem_type() is None
    assert torch.equal(mixer.loss(logits, rows), before)


def test_probability_rows_stored_in_bf16_are_still_probability_rows():
    logits = torch.randn(4, 3)
    rows = torch.full((4, 3), 1 / 3).bfloat16()  # 0.333984375 each: the row sums to 1.00195
    assert (rows.float().sum(-1) - 1).abs().max() > 1e-3
    loss = mixup_loss(logits, rows, MixPlan.identity(4, torch.device("cpu")))
    assert torch.isfinite(loss)


def test_multi_hot_rows_without_a_declared_problem_type_are_refused_naming_problem_type():
    model = tiny_classifier("single").train()
    mixer = HiddenMixer(model, MixConfig(seed=0))
    ids = torch.randint(5, VOCAB, (4, SEQ))
    logits = model(input_ids=ids).logits
    multi_hot = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="problem_type='multi_label_classification'"):
        mixer.loss(logits, multi_hot)
    declared = HiddenMixer(tiny_classifier("multi").train(), MixConfig(seed=0))
    assert declared.problem_type() == "multi_label_classification"


# ------------------------------------------------------------------------------- 4. a forgotten model.train()
def test_a_forward_with_gradients_in_eval_mode_warns_once_and_no_grad_stays_quiet():
    model = tiny_model("bert").eval()  # as from_pretrained returns it
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(seed=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            model(**batch)
        assert caught == []
        model(**batch)
        model(**batch)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "eval mode" in messages[0] and "model.train()" in messages[0]
    assert mixer.plan is None


# ---------------------------------------------------------------------------------- 5. copies of an attached model
def _hook_counts(model: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_a_deep_copy_of_an_attached_model_is_a_plain_model_and_the_original_still_mixes():
    model = tiny_model("bert", dropout=False).train()
    batch, labels = padded_batch("bert")
    plain = forward(model, batch)
    mixer = HiddenMixer(model, MixConfig(seed=0, mixup_alpha=1.0))
    twin = copy.deepcopy(model)
    assert _hook_counts(twin) == 0 and HiddenMixer.of(twin) is None
    assert "__deepcopy__" not in twin.__dict__
    assert torch.equal(forward(twin, batch), plain)  # the copy's training forward is the plain forward
    assert HiddenMixer.of(model) is mixer and not torch.allclose(forward(model, batch), plain)
    with HiddenMixer(twin, MixConfig(seed=0, mixup_alpha=1.0)) as own:
        forward(twin, batch)
        assert own.plan.mixed
    mixer.remove()
    assert _hook_counts(model) == 0 and "__deepcopy__" not in model.__dict__


def test_a_deep_copy_of_a_compiled_attached_model_is_a_compiled_plain_model():
    model = tiny_model("bert", dropout=False).train()
    compiled = torch.compile(model)  # nothing is compiled until a forward runs
    mixer = HiddenMixer(compiled, MixConfig(seed=0))
    twin = copy.deepcopy(compiled)
    assert type(twin) is type(compiled) and twin._orig_mod is not model
    assert _hook_counts(twin._orig_mod) == 0 and HiddenMixer.of(twin) is None
    assert "__deepcopy__" not in twin.__dict__ and "__deepcopy__" not in twin._orig_mod.__dict__
    mixer.remove()
    assert "__deepcopy__" not in compiled.__dict__ and _hook_counts(model) == 0


def test_pickling_an_attached_model_says_to_remove_the_mixer_first():
    model = tiny_model("bert").train()
    mixer = HiddenMixer(model, MixConfig(seed=0))
    with pytest.raises(TypeError, match=r"remove\(\)"):
        pickle.dumps(model)
    with pytest.raises(TypeError, match="deepcopy"):
        copy.deepcopy(mixer)
    mixer.remove()
    assert pickle.loads(pickle.dumps(model)) is not None


# ------------------------------------------------------------- a plain Trainer trains on MixupTrainer's loss
def _tagger():
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "bert", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32, num_labels=NUM_LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return AutoModelForTokenClassification.from_config(config)


def _batch(kind: str) -> dict:
    if kind == "tags":
        rows = make_dataset(6, "single", seed=3)[:]
        mask = torch.tensor(rows["attention_mask"])
        tags = torch.randint(0, NUM_LABELS, mask.shape, generator=torch.Generator().manual_seed(0))
        return {
            "input_ids": torch.tensor(rows["input_ids"]),
            "attention_mask": mask,
            "labels": tags.masked_fill(mask == 0, -100),
        }
    rows = make_dataset(6, kind, seed=3)[:]
    return {k: torch.tensor(v) for k, v in rows.items()}


@pytest.mark.parametrize("kind", ["single", "multi", "regression", "tags"])
def test_a_plain_trainer_with_a_mixer_attached_trains_on_the_same_loss_as_mixup_trainer(kind, tmp_path):
    model = (_tagger() if kind == "tags" else tiny_classifier(kind)).train()
    batch = _batch(kind)
    mixer = HiddenMixer(model, MixConfig(seed=0, layers=[0, 1]))
    plan = fixed_plan(batch, lam=0.35, layer=1)
    common = dict(report_to=[], use_cpu=True, per_device_train_batch_size=6, disable_tqdm=True)
    plain = Trainer(model=model, args=TrainingArguments(str(tmp_path / "plain"), **common))
    mixup = MixupTrainer(model=model, args=MixupTrainingArguments(str(tmp_path / "mixup"), **common), mixer=mixer)
    losses = []
    for trainer in (plain, mixup):
        _, count = trainer.get_batch_samples(iter([dict(batch)]), 1, torch.device("cpu"))
        with mixer.use_plan(plan):
            losses.append(trainer.compute_loss(model, dict(batch), num_items_in_batch=count))
    with mixer.use_plan(plan):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    assert torch.allclose(losses[1], mixer.loss(logits, batch["labels"], plan=plan), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------- defaults and what is said
def _trainer_log(make) -> str:
    from transformers.testing_utils import CaptureLogger

    from hiddenmix import trainer as trainer_module

    with CaptureLogger(trainer_module.logger) as captured:
        make()
    return captured.out


def test_plain_arguments_take_a_one_forward_recipe_said_at_warning_level(tmp_path):
    from hiddenmix.trainer import logger

    assert logger.getEffectiveLevel() <= 30  # transformers' default level shows warnings
    model = tiny_classifier("single")
    args = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True)
    holder = {}
    out = _trainer_log(lambda: holder.setdefault("t", MixupTrainer(model=model, args=args)))
    assert "'few-labels' recipe" in out and "one forward per step" in out
    assert holder["t"].args.clean_loss_weight == 0.0


@pytest.mark.parametrize(
    "options,said",
    [
        (dict(clean_loss_weight=1.0), "second (clean) forward and backward every step: 2.1-2.25x"),
        (dict(mixup_alpha=0.0), "nothing is mixed in this run (mixup_alpha=0 and cutmix_alpha=0)"),
        (dict(enabled=False), "nothing is mixed in this run (enabled=False)"),
    ],
    ids=["clean-loss", "alpha-0", "disabled"],
)
def test_a_setting_that_adds_a_forward_or_mixes_nothing_is_said_when_training_starts(options, said, tmp_path):
    from conftest import training_args

    trainer = MixupTrainer(
        model=tiny_classifier("single"), args=training_args(tmp_path, max_steps=1, **options),
        train_dataset=make_dataset(8),
    )  # fmt: skip
    out = _trainer_log(trainer.train)
    assert said in out
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(("mix/lam_mean" in entry) == trainer.mixer.config.active for entry in logged)
