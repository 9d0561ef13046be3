import pytest
import torch
from conftest import ARCHITECTURES, forward, padded_batch, tiny_model

from hiddenmix import HiddenMixer, MixConfig, MixPlan

SITES = ["embeddings", "hidden"]
IDS = [f"{mt}-{impl}" for mt, impl in ARCHITECTURES]


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("model_type,attn", ARCHITECTURES, ids=IDS)
def test_training_forward_mixes_and_backward_runs(model_type, attn, site):
    model = tiny_model(model_type, attn).train()
    batch, labels = padded_batch(model_type)
    plain = forward(model, batch)
    with HiddenMixer(model, MixConfig(site=site, seed=0)) as mixer:
        mixed = forward(model, batch)
        assert mixer.plan is not None and mixer.plan.mixed
        loss = mixer.loss(mixed, labels)
        loss.backward()
    assert not torch.allclose(mixed, plain)
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:3]) and any(g.abs().sum() > 0 for g in grads if g is not None)


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("model_type,attn", ARCHITECTURES, ids=IDS)
def test_eval_output_is_bit_identical(model_type, attn, site):
    model = tiny_model(model_type, attn).eval()
    batch, _ = padded_batch(model_type)
    with torch.no_grad():
        plain = model(**batch).logits
        with HiddenMixer(model, MixConfig(site=site, seed=0)) as mixer:
            out = model(**batch).logits
            assert mixer.plan is None
    assert torch.equal(out, plain)


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("model_type,attn", ARCHITECTURES, ids=IDS)
def test_lam_one_reproduces_the_plain_training_forward(model_type, attn, site):
    model = tiny_model(model_type, attn).train()
    batch, _ = padded_batch(model_type)
    plain = forward(model, batch)
    mixer = HiddenMixer(model, MixConfig(site=site, seed=0))
    plan = MixPlan.from_lam(
        torch.tensor([1, 2, 3, 0]), 1.0, site=site, layer=1, token_mask=batch["attention_mask"].bool()
    )
    with mixer.use_plan(plan):
        out = forward(model, batch)
    mixer.remove()
    assert plan.mixed and torch.equal(out, plain)


def test_disabled_and_paused_are_plain_training_forwards():
    model = tiny_model("bert").train()
    batch, _ = padded_batch("bert")
    plain = forward(model, batch)
    with HiddenMixer(model, MixConfig(enabled=False)) as mixer:
        assert torch.equal(forward(model, batch), plain) and mixer.plan is None
    with HiddenMixer(model, MixConfig(seed=0)) as mixer:
        with mixer.paused():
            assert torch.equal(forward(model, batch), plain) and mixer.plan is None
        assert not torch.equal(forward(model, batch), plain)


def test_alpha_zero_or_prob_zero_never_mixes():
    model = tiny_model("bert").train()
    batch, _ = padded_batch("bert")
    plain = forward(model, batch)
    for cfg in (MixConfig(mixup_alpha=0.0), MixConfig(prob=0.0)):
        with HiddenMixer(model, cfg) as mixer:
            assert torch.equal(forward(model, batch), plain)
            assert not mixer.plan.mixed


def test_the_callers_tensors_are_not_changed():
    model = tiny_model("bert").train()
    batch, _ = padded_batch("bert")
    before = {k: v.clone() for k, v in batch.items()}
    with HiddenMixer(model, MixConfig(site="embeddings", seed=0)):
        model(**batch)
    assert all(torch.equal(batch[k], before[k]) for k in batch)


def test_batch_of_one_and_odd_batches():
    model = tiny_model("bert").train()
    with HiddenMixer(model, MixConfig(seed=0)) as mixer:
        batch, labels = padded_batch("bert", batch=1)
        mixer.loss(model(**batch).logits, labels).backward()
        assert mixer.plan.mixed is False
        batch, labels = padded_batch("bert", batch=5)
        mixer.loss(model(**batch).logits, labels).backward()
        assert mixer.plan.mixed and mixer.plan.batch_size == 5
