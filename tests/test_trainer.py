"""MixupTrainer: soft-target loss, gradient accumulation, evaluation, schedules, logging, checkpoints, processes."""

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import NUM_LABELS, PROBLEM, make_dataset, training_args
from conftest import tiny_classifier as tiny_model
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
from transformers.trainer_utils import EvalPrediction

from hiddenmix import HiddenMixer, MixConfig, MixPlan
from hiddenmix.metrics import classification_metrics, load_metric
from hiddenmix.schedule import MixSchedule, MixScheduleCallback
from hiddenmix.trainer import MIXER_STATE_NAME, MixupTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecordingTrainer(MixupTrainer):
    """Keeps, for every training forward, what the loss was computed from."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"].clone()
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if model.training:
            if not hasattr(self, "records"):
                self.records = []
            self.records.append(
                dict(
                    labels=labels,
                    logits=outputs.logits.detach().clone(),
                    plan=self.last_plan,
                    loss=loss.detach().clone(),
                    num_items=num_items_in_batch,
                )
            )
        return (loss, outputs) if return_outputs else loss


def by_hand_loss(kind: str, logits, labels, plan: MixPlan, smoothing: float = 0.0) -> torch.Tensor:
    """The soft-target loss written out: mixed targets, per-row loss, sum over counted rows / counted rows."""
    lam, index = plan.lam_target, plan.index
    if kind == "single":
        ignored = labels == -100
        one_hot = F.one_hot(labels.clamp_min(0), NUM_LABELS).float()
        smooth = one_hot * (1 - smoothing) + smoothing / NUM_LABELS
        target = lam[:, None] * smooth + (1 - lam[:, None]) * smooth[index]
        per_row = -(target * F.log_softmax(logits, -1)).sum(-1)
        valid = ~ignored & ~(ignored[index] & (lam < 1))
        return (per_row * valid).sum() / valid.sum()  # the mean over the rows that have a target
    if kind == "multi":
        target = lam[:, None] * labels + (1 - lam[:, None]) * labels[index]
        p = torch.sigmoid(logits)
        per_row = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean(-1)
        return per_row.mean()
    target = lam * labels + (1 - lam) * labels[index]
    return (logits.squeeze(-1) - target).pow(2).mean()


# ------------------------------------------------------------------------------------------------ loss values
@pytest.mark.parametrize(
    "kind, smoothing, ignore_rows",
    [("single", 0.1, (3,)), ("multi", 0.0, ()), ("regression", 0.0, ())],
    ids=["single-label+smoothing+ignore_index", "multi-label", "regression"],
)
def test_training_loss_is_the_soft_target_loss_of_each_forwards_plan(tmp_path, kind, smoothing, ignore_rows):
    model = tiny_model(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = RecordingTrainer(
        model=model,
        args=training_args(tmp_path, mixup_alpha=1.0, label_smoothing_factor=smoothing),
        train_dataset=make_dataset(16, kind, ignore_rows=ignore_rows),
    )
    trainer.train()
    assert len(trainer.records) == 2
    for record in trainer.records:
        plan = record["plan"]
        assert plan is not None and plan.mixed and bool((plan.lam_target < 1).any())
        expected = by_hand_loss(kind, record["logits"], record["labels"], plan, smoothing)
        torch.testing.assert_close(record["loss"], expected, rtol=1e-5, atol=1e-6)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    torch.testing.assert_close(torch.tensor(logged), torch.stack([r["loss"] for r in trainer.records]))
    # the model's own loss never saw the labels: its problem_type is what it was built with
    assert model.config.problem_type == PROBLEM[kind]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mixing_statistics_are_logged_from_the_plans(tmp_path):
    trainer = RecordingTrainer(
        model=tiny_model(),
        args=training_args(tmp_path, max_steps=3, mixup_alpha=0.4, prob=0.5, mode="elem", seed=3),
        train_dataset=make_dataset(24),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for log, record in zip(logs, trainer.records):
        lam = record["plan"].lam_target
        mixed = lam < 1
        assert log["mix/samples_mixed"] == pytest.approx(mixed.float().mean().item())
        assert log["mix/lam_mean"] == pytest.approx(lam[mixed].mean().item(), rel=1e-6)
        assert log["mix/batches_mixed"] == 1.0
        layer_shares = [log[f"mix/layer_{k}"] for k in (0, 1)]
        assert layer_shares == [float(record["plan"].layer == 0), float(record["plan"].layer == 1)]


def test_regmixup_adds_the_weighted_clean_loss(tmp_path):
    model = tiny_model()
    trainer = MixupTrainer(
        model=model,
        args=training_args(tmp_path, label_smoothing_factor=0.1, clean_loss_weight=0.5),
        train_dataset=make_dataset(8),
    )
    batch = trainer.data_collator([make_dataset(4)[i] for i in range(4)])
    plan = MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), torch.tensor([0.7, 0.7, 0.2, 0.2]), layer=0)
    model.train()
    with trainer.mixer.use_plan(plan):
        loss = trainer.compute_loss(model, dict(batch))
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        mixed_logits = model(**inputs).logits
    with trainer.mixer.paused():
        clean_logits = model(**inputs).logits
    labels = batch["labels"]
    clean = F.cross_entropy(clean_logits, labels, label_smoothing=0.1)
    expected = by_hand_loss("single", mixed_logits, labels, plan, 0.1) + 0.5 * clean
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(mixed_logits, clean_logits)  # the two forwards really differ


# ------------------------------------------------------------------------------------------------ accumulation
def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    # Samples 0 and 1 (partners, in the first micro-batch only) are ignored: the halves count 2 and 4 rows. A plain
    # mean per micro-batch would weight their rows 1/2 and 1/4 and miss the one-batch gradient; weighting each
    # micro-batch by the rows it counts, over the count of the whole accumulated batch, does not.
    data = make_dataset(8, ignore_rows=(0, 1))
    pairs = torch.tensor([1, 0, 3, 2])
    runs = {}
    for name, batch, accumulation, plan in [
        ("one batch of 8", 8, 1, MixPlan.from_lam(torch.cat([pairs, pairs + 4]), 0.6, layer=0)),
        ("2 x 4 accumulated", 4, 2, MixPlan.from_lam(pairs, 0.6, layer=0)),
    ]:
        model = tiny_model()
        trainer = MixupTrainer(
            model=model,
            args=training_args(
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
                mixup_alpha=0.4,
            ),
            train_dataset=data,
        )
        with trainer.mixer.use_plan(plan):
            trainer.train()
        runs[name] = (model.state_dict(), trainer.state.log_history[0]["loss"])
    (weights_a, loss_a), (weights_b, loss_b) = runs.values()
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    initial = tiny_model().state_dict()
    assert any(not torch.equal(initial[k], weights_a[k]) for k in initial)
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=1e-5, atol=1e-6, msg=key)


# ------------------------------------------------------------------------------------------------ evaluation
def test_a_row_whose_partner_has_no_label_is_left_out_of_the_mean_as_in_mixer_loss(tmp_path):
    model = tiny_model()
    trainer = MixupTrainer(model=model, args=training_args(tmp_path), train_dataset=make_dataset(8))
    batch = trainer.data_collator([make_dataset(4, ignore_rows=(1,))[i] for i in range(4)])
    plan = MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.6, layer=0)  # row 0's partner is the ignored row 1
    model.train()
    with trainer.mixer.use_plan(plan):
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    expected = trainer.mixer.loss(logits, batch["labels"], plan)  # rows 2 and 3 only: the ones with a target
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss, by_hand_loss("single", logits, batch["labels"], plan))


def test_whole_number_multi_hot_labels_count_rows_not_label_elements(tmp_path):
    losses = []
    for dtype in (torch.float32, torch.long):
        model = tiny_model("multi")
        trainer = MixupTrainer(model=model, args=training_args(tmp_path / str(dtype)), train_dataset=make_dataset(8))
        batch = trainer.data_collator([make_dataset(4, "multi")[i] for i in range(4)])
        batch["labels"] = batch["labels"].to(dtype)
        model.train()
        with trainer.mixer.use_plan(MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.6, layer=0)):
            losses.append(trainer.compute_loss(model, dict(batch)))
    torch.testing.assert_close(losses[0], losses[1])


def test_evaluation_equals_a_plain_trainer_on_the_same_weights(tmp_path):
    model = tiny_model()
    trainer = MixupTrainer(
        model=model,
        args=training_args(tmp_path / "mix", mixup_alpha=1.0, label_smoothing_factor=0.1),
        train_dataset=make_dataset(16),
        eval_dataset=make_dataset(20, seed=5),
        compute_metrics=classification_metrics(),
    )
    trainer.train()
    mixed_metrics = trainer.evaluate()

    plain_model = tiny_model(seed=1)
    plain_model.load_state_dict(model.state_dict())
    plain = Trainer(
        model=plain_model,
        args=TrainingArguments(
            output_dir=str(tmp_path / "plain"),
            per_device_eval_batch_size=8,
            report_to=[],
            use_cpu=True,
            seed=0,
            label_smoothing_factor=0.1,
        ),
        eval_dataset=make_dataset(20, seed=5),
        compute_metrics=classification_metrics(),
    )
    plain_metrics = plain.evaluate()
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "eval_ece"):
        assert mixed_metrics[key] == pytest.approx(plain_metrics[key], rel=1e-6, abs=1e-9), key
    # the eval loss is the parent's: the model's own cross-entropy, smoothed by label_smoothing_factor as any Trainer's
    batch = plain.data_collator([make_dataset(20, seed=5)[i] for i in range(20)])
    plain_model.eval()
    with torch.no_grad():
        logits = plain_model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    expected = F.cross_entropy(logits, batch["labels"], label_smoothing=0.1).item()
    assert mixed_metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------------------ schedules
def test_schedule_values_by_step_and_epoch():
    base = MixConfig(mixup_alpha=0.4, prob=1.0)
    by_step = MixSchedule(unit="step", mixup_alpha=((0, 0.0), (10, 1.0)), off_for_last=0.2)
    assert by_step.config_at(base, step=0, epoch=0, max_steps=10).mixup_alpha == 0.0
    assert by_step.config_at(base, step=5, epoch=0, max_steps=10).mixup_alpha == pytest.approx(0.5)
    assert by_step.config_at(base, step=7, epoch=0, max_steps=10).active
    assert not by_step.config_at(base, step=8, epoch=0, max_steps=10).active  # the last 20 %: steps 8 and 9
    by_epoch = MixSchedule(prob=((0, 0.2), (2, 1.0)), off_epoch=3)
    assert by_epoch.config_at(base, step=0, epoch=1.0, max_steps=100).prob == pytest.approx(0.6)
    assert by_epoch.config_at(base, step=0, epoch=2.9, max_steps=100).active
    assert not by_epoch.config_at(base, step=0, epoch=3.0, max_steps=100).active
    assert by_epoch.config_at(base, step=0, epoch=3.0, max_steps=100).enabled  # still the mixer's loss: prob 0


@pytest.mark.parametrize(
    "off, callbacks",
    [({"mix_off_for_last": 0.5}, None), ({"mix_off_epoch": 0.5}, None), ({}, [MixScheduleCallback(off_for_last=0.5)])],
    ids=["mix_off_for_last", "mix_off_epoch", "callback"],
)
def test_mixing_is_off_for_the_last_share_of_training(tmp_path, off, callbacks):
    trainer = RecordingTrainer(
        model=tiny_model(),
        args=training_args(tmp_path, max_steps=4, per_device_train_batch_size=4, mixup_alpha=1.0, **off),
        train_dataset=make_dataset(16),
        callbacks=callbacks,
    )
    base = trainer.mixer.config
    trainer.train()
    assert [r["plan"] is not None and r["plan"].mixed for r in trainer.records] == [True, True, False, False]
    logs = [entry["mix/batches_mixed"] for entry in trainer.state.log_history if "loss" in entry]
    assert logs == [1.0, 1.0, 0.0, 0.0]
    # unmixed steps use the plain soft-target loss
    last = trainer.records[-1]
    torch.testing.assert_close(last["loss"], F.cross_entropy(last["logits"], last["labels"]))
    assert trainer.mixer.config == base


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(unit="epochs"), "unit='epochs'"),
        (dict(mixup_alpha=((1, 0.4), (0, 0.2))), "strictly increasing"),
        (dict(prob=((0, 1.5),)), "probabilities must be in"),
        (dict(off_for_last=1.5), "off_for_last=1.5"),
        (dict(mixup_alpha=0.4), "mixup_alpha=0.4"),
    ],
    ids=["unit", "order", "prob", "off_for_last", "not-points"],
)
def test_bad_schedules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixSchedule(**kwargs)


# ------------------------------------------------------------------------------------------------ arguments
def test_bad_trainer_arguments_are_refused(tmp_path):
    model = tiny_model()
    args = training_args(tmp_path)
    with pytest.raises(ValueError, match="compute_loss_func must be None"):
        MixupTrainer(model=model, args=args, compute_loss_func=lambda *a, **k: 0)
    with pytest.raises(TypeError, match="args must be MixupTrainingArguments"):
        MixupTrainer(model=model, args={"output_dir": str(tmp_path)})
    with pytest.raises(ValueError, match=r"MixupTrainingArguments.clean_loss_weight=-1 is not allowed"):
        training_args(tmp_path, clean_loss_weight=-1)
    with pytest.raises(ValueError, match=r"MixupTrainingArguments.site='pixels' is not allowed; choose one of"):
        training_args(tmp_path, site="pixels")
    with pytest.raises(ValueError, match="mixer= must be a HiddenMixer attached to the model"):
        MixupTrainer(model=model, args=args, mixer=HiddenMixer(tiny_model()))
    trainer = MixupTrainer(model=model, args=training_args(tmp_path, label_smoothing_factor=0.1))
    assert trainer.mixer.config.label_smoothing == 0.1 and trainer.mixer.config.seed == 0


def test_a_mixer_with_plain_training_arguments_mixes_as_the_mixer_says_not_as_a_recipe(tmp_path):
    model = tiny_model()
    mixer = HiddenMixer(model, MixConfig(mixup_alpha=0.2, layers=[1], seed=5))
    plain = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = MixupTrainer(model=model, args=plain, mixer=mixer)
    assert trainer.mixer is mixer and mixer.config.mixup_alpha == 0.2
    assert trainer.args.clean_loss_weight == 0.0  # no recipe's clean forward the user never asked for


def test_training_arguments_with_fields_the_trainer_does_not_know_are_refused_by_name(tmp_path):
    from transformers import Seq2SeqTrainingArguments

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match=r"Seq2SeqTrainingArguments adds fields it does not know: \[.*'predict_with_"):
        MixupTrainer(model=tiny_model(), args=args)


def test_a_mixer_built_by_hand_is_used_and_args_that_contradict_it_are_refused(tmp_path):
    model = tiny_model()
    mixer = HiddenMixer(model, MixConfig(mixup_alpha=0.2, layers=[1], seed=5))
    with pytest.raises(ValueError, match=r"mixup_alpha=0.7 \(the mixer has 0.2\)"):
        MixupTrainer(model=model, args=training_args(tmp_path, mixup_alpha=0.7), mixer=mixer)
    with pytest.raises(ValueError, match=r"label_smoothing_factor=0.1 \(the mixer has label_smoothing=0.2\)"):
        other = tiny_model()
        MixupTrainer(
            model=other,
            args=training_args(tmp_path, label_smoothing_factor=0.1),
            mixer=HiddenMixer(other, MixConfig(label_smoothing=0.2)),
        )
    trainer = MixupTrainer(model=model, args=training_args(tmp_path, layers=[1], mixup_alpha=0.2), mixer=mixer)
    assert trainer.mixer is mixer and mixer.config.mixup_alpha == 0.2 and mixer.config.seed == 5


# ------------------------------------------------------------------------------------------------ checkpoints
def _resume_args(output_dir, **overrides):
    # 12 rows / batch 4 = 3 steps an epoch, so the checkpoint at step 2 is mid-epoch (data skipping and RNG sync)
    return training_args(
        output_dir, per_device_train_batch_size=4, max_steps=6, save_strategy="steps", save_steps=2, **overrides
    )


def _run(output_dir, resume=None, **overrides):
    trainer = RecordingTrainer(
        model=tiny_model(dropout=0.1),
        args=_resume_args(output_dir, mixup_alpha=1.0, **overrides),  # the mixing stream is seeded by `seed`
        train_dataset=make_dataset(12),
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_resumed_run_equals_uninterrupted_run_and_checkpoints_load_in_plain_transformers(tmp_path):
    full = _run(tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / MIXER_STATE_NAME.format(rank=0)).is_file()
    resumed = _run(tmp_path / "resumed", resume=str(checkpoint))

    full_lams = [r["plan"].lam_target for r in full.records[2:]]
    resumed_lams = [r["plan"].lam_target for r in resumed.records]
    assert len(resumed_lams) == 4
    for a, b in zip(full_lams, resumed_lams):
        torch.testing.assert_close(a, b)
    assert [r["plan"].layer for r in full.records[2:]] == [r["plan"].layer for r in resumed.records]
    final_full, final_resumed = full.model.state_dict(), resumed.model.state_dict()
    for key in final_full:
        torch.testing.assert_close(final_full[key], final_resumed[key], rtol=1e-5, atol=1e-6, msg=key)

    # Without the saved stream, the plans would not be those of the uninterrupted run: the state is what matters.
    stripped = tmp_path / "stripped-checkpoint"
    shutil.copytree(checkpoint, stripped)
    os.remove(stripped / MIXER_STATE_NAME.format(rank=0))
    fresh = _run(tmp_path / "fresh", resume=str(stripped))
    assert not all(torch.equal(a, r["plan"].lam_target) for a, r in zip(full_lams, fresh.records))

    # The checkpoint is a plain transformers checkpoint: same keys as a model that never met hiddenmix.
    final = tmp_path / "full" / "checkpoint-6"
    loaded = AutoModelForSequenceClassification.from_pretrained(final)
    assert set(load_file(final / "model.safetensors")) <= set(tiny_model().state_dict())
    assert set(loaded.state_dict()) == set(tiny_model().state_dict())
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, final_full[key], msg=key)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in loaded.modules())
    assert loaded.config.problem_type is None  # never switched by soft labels


# ------------------------------------------------------------------------------------------------ metrics
def test_ece_equals_a_by_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 4, 200)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels)
    expected = 0.0
    edges = np.linspace(0, 1, 16)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    ece = load_metric("ece").compute(predictions=probs, references=labels)["ece"]
    assert ece == pytest.approx(expected, rel=1e-9)
    assert 0.05 < ece < 1  # random logits scaled by 2 are overconfident: a real, non-trivial gap
    perfectly_calibrated = np.tile([[0.75, 0.25]], (4, 1))
    assert load_metric("ece").compute(predictions=perfectly_calibrated, references=[0, 0, 0, 1])["ece"] == 0.0


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(60, 5)), rng.integers(0, 5, 60)
    labels[:3] = -100
    metrics = classification_metrics()(EvalPrediction(predictions=logits, label_ids=labels))
    keep = labels != -100
    predictions = logits.argmax(-1)[keep]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels[keep], predictions))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels[keep], predictions, average="macro"))
    assert set(metrics) == {"accuracy", "macro_f1", "ece", "nll"}
    log_probs = torch.log_softmax(torch.tensor(logits[keep]), -1)
    nll = torch.nn.functional.nll_loss(log_probs, torch.tensor(labels[keep])).item()
    assert metrics["nll"] == pytest.approx(nll, rel=1e-9)


# ------------------------------------------------------------------------------------------------ processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("unlabeled", [False, True], ids=["clean-loss", "unlabeled-rows"])
def test_two_process_accelerate_launch_draws_different_plans_and_keeps_weights_in_sync(tmp_path, unlabeled):
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        os.path.join(ROOT, "configs", "accelerate", "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        os.path.join(ROOT, "tests", "multiprocess_train.py"),
        "--output_dir",
        str(tmp_path),
        *(["--unlabeled"] if unlabeled else []),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    files = [tmp_path / f"rank{r}.pt" for r in (0, 1)]
    # The script leaves with os._exit(0) after a barrier so that gloo's intermittent abort at interpreter exit cannot
    # happen (see the script). Should that abort still strike during the teardown, the exit code says nothing about
    # the run: then, and only then, the complete result files (written whole before the barrier) are the verdict,
    # and every assertion below still has to hold.
    gloo_exit_abort = "terminate called without an active exception" in result.stderr and all(
        f.is_file() for f in files
    )
    assert result.returncode == 0 or gloo_exit_abort, result.stdout[-3000:] + result.stderr[-5000:]
    ranks = [torch.load(f) for f in files]
    assert [r["world_size"] for r in ranks] == [2, 2]  # really two processes, not two lone trainers
    assert all(r["done"] for r in ranks)
    gathered = ranks[0]["gathered_lams"]  # [2, steps, batch]: every rank's λ, gathered on rank 0
    assert gathered.shape[0] == 2
    torch.testing.assert_close(gathered[1], ranks[1]["lams"])
    assert not torch.equal(gathered[0], gathered[1])  # the ranks drew different plans
    assert not torch.equal(ranks[0]["indices"], ranks[1]["indices"])
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key  # gradients were synchronised: identical weights
    assert any(not torch.equal(value, ranks[0]["initial"][key]) for key, value in ranks[0]["weights"].items())
    if unlabeled:  # each rank its own unlabelled rows: 3 per micro-batch, 2 micro-batches a step
        drawn = [r["unlabeled_rows"] for r in ranks]
        assert len(drawn[0]) == len(drawn[1]) == 6 and all(len(rows) == 3 for rows in drawn[0])
        assert all(not set(a) & set(b) for a, b in zip(*drawn))
        assert all("mix/loss_unlabeled" in entry for entry in ranks[0]["logs"] if "loss" in entry)
