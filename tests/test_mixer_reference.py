"""The mixed forward equals the model's layers run by hand with the union mask."""

import pytest
import torch
from conftest import padded_batch, tiny_model

from hiddenmix import HiddenMixer, MixConfig, MixPlan

INDEX = torch.tensor([2, 3, 1, 0])
LAM = torch.tensor([0.7, 0.4, 0.9, 0.55])
MIXED_LAYER = 0  # layers 1 and 2 run with the union mask


def key_union(mask2d):
    return torch.maximum(mask2d, mask2d[INDEX])


def test_bert_eager_hidden_mix_equals_layers_by_hand():
    model = tiny_model("bert", "eager", dropout=False).train()
    batch, _ = padded_batch("bert")
    mask2d = batch["attention_mask"]
    plan = MixPlan.from_lam(INDEX, LAM, site="hidden", layer=MIXED_LAYER, token_mask=mask2d.bool())
    with HiddenMixer(model, MixConfig(site="hidden")) as mixer, mixer.use_plan(plan):
        got = model(**batch).logits

    def additive(m):  # the eager form: 0 where attended, the dtype's minimum where masked, (B, 1, T, T)
        t = m.shape[1]
        return ((1.0 - m[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(-1, 1, t, t)

    with torch.no_grad():
        h = model.bert.embeddings(input_ids=batch["input_ids"])
        for i, layer in enumerate(model.bert.encoder.layer):
            h = layer(h, additive(mask2d) if i <= MIXED_LAYER else additive(key_union(mask2d)))
            if i == MIXED_LAYER:
                h = LAM[:, None, None] * h + (1 - LAM[:, None, None]) * h[INDEX]
        want = model.classifier(model.bert.pooler(h))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bert_union_mask_matters():
    # the same mix without the union (each sample keeps its own mask) gives a different output
    model = tiny_model("bert", "eager", dropout=False).train()
    batch, _ = padded_batch("bert")
    plan = MixPlan.from_lam(INDEX, LAM, site="hidden", layer=MIXED_LAYER, token_mask=batch["attention_mask"].bool())
    with HiddenMixer(model, MixConfig(site="hidden")) as mixer, mixer.use_plan(plan):
        union = model(**batch).logits
    with torch.no_grad():
        mask2d = batch["attention_mask"]
        t = mask2d.shape[1]
        own = ((1.0 - mask2d[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(-1, 1, t, t)
        h = model.bert.embeddings(input_ids=batch["input_ids"])
        for i, layer in enumerate(model.bert.encoder.layer):
            h = layer(h, own)
            if i == MIXED_LAYER:
                h = LAM[:, None, None] * h + (1 - LAM[:, None, None]) * h[INDEX]
        own_mask_only = model.classifier(model.bert.pooler(h))
    assert not torch.allclose(union, own_mask_only, atol=1e-4)


@pytest.mark.parametrize("site", ["hidden", "embeddings"])
def test_llama_sdpa_mix_equals_layers_by_hand(site):
    model = tiny_model("llama", "sdpa", dropout=False).train()
    batch, _ = padded_batch("llama")  # left padded
    mask2d = batch["attention_mask"]
    plan = MixPlan.from_lam(INDEX, LAM, site=site, layer=MIXED_LAYER, token_mask=mask2d.bool())
    with HiddenMixer(model, MixConfig(site=site)) as mixer, mixer.use_plan(plan):
        got = model(**batch).logits

    t = mask2d.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()

    def bool_mask(m):  # the sdpa form: True where attended, causal and padding, (B, 1, T, T)
        return causal[None, None] & m.bool()[:, None, None, :]

    mix = lambda h: LAM[:, None, None] * h + (1 - LAM[:, None, None]) * h[INDEX]  # noqa: E731
    with torch.no_grad():
        inner = model.model
        h = inner.embed_tokens(batch["input_ids"])
        position_ids = torch.arange(t)[None]
        rope = inner.rotary_emb(h, position_ids)
        first_union = 0 if site == "embeddings" else MIXED_LAYER + 1
        if site == "embeddings":
            h = mix(h)
        for i, layer in enumerate(inner.layers):
            m = bool_mask(key_union(mask2d)) if i >= first_union else bool_mask(mask2d)
            h = layer(h, attention_mask=m, position_ids=position_ids, position_embeddings=rope)
            if site == "hidden" and i == MIXED_LAYER:
                h = mix(h)
        h = inner.norm(h)
        want = model.score(h)[:, -1]  # left padding: the last position is the last real token of every row
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "llama", "deberta-v2"])
@pytest.mark.parametrize("site", ["hidden", "embeddings"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(model_type, site):
    batch, labels = padded_batch(model_type)
    plan = MixPlan.from_lam(INDEX, LAM, site=site, layer=1, token_mask=batch["attention_mask"].bool())
    results = []
    for checkpointing in (False, True):
        model = tiny_model(model_type, "eager", dropout=False).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with HiddenMixer(model, MixConfig(site=site)) as mixer, mixer.use_plan(plan):
            loss = mixer.loss(model(**batch).logits, labels)
            loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss0, grads0), (loss1, grads1) = results
    torch.testing.assert_close(loss0, loss1)
    assert len(grads0) == len(grads1)
    for g0, g1 in zip(grads0, grads1):
        torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)


def test_gradient_checkpointing_with_sampled_plans_and_dropout_is_consistent():
    # checkpointing re-runs layer forwards in backward; the plan is drawn once per forward, so the
    # recomputation mixes the same way and gradients match the uncheckpointed run
    batch, labels = padded_batch("bert")
    results = []
    for checkpointing in (False, True):
        model = tiny_model("bert", "eager").train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with HiddenMixer(model, MixConfig(site="hidden", seed=7)) as mixer:
            torch.manual_seed(0)
            loss = mixer.loss(model(**batch).logits, labels)
            loss.backward()
        results.append((loss.detach(), model.bert.embeddings.word_embeddings.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_hooks_rerun_inside_backward_recompute_the_same_mix():
    # Checkpoint the whole encoder, so the layer hooks themselves run again during backward, after the
    # forward that drew the plan has returned: the recomputation must still mix, and mix the same way.
    from torch.utils.checkpoint import checkpoint

    batch, labels = padded_batch("bert")
    plan = MixPlan.from_lam(INDEX, LAM, site="hidden", layer=1, token_mask=batch["attention_mask"].bool())
    results = []
    for wrap in (False, True):
        model = tiny_model("bert", "eager", dropout=False).train()
        if wrap:
            encoder = model.bert.encoder
            original = encoder.forward
            encoder.forward = lambda *a, _f=original, **k: checkpoint(_f, *a, use_reentrant=False, **k)
        with HiddenMixer(model, MixConfig(site="hidden")) as mixer, mixer.use_plan(plan):
            loss = mixer.loss(model(**batch).logits, labels)
            loss.backward()
        results.append((loss.detach(), model.bert.embeddings.word_embeddings.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_a_direct_submodule_call_is_never_mixed_by_a_stale_plan():
    model = tiny_model("bert", dropout=False).train()
    batch, _ = padded_batch("bert")
    with torch.no_grad():
        plain = model.bert(**batch).last_hidden_state
    with HiddenMixer(model, MixConfig(seed=0)) as mixer:
        model(**batch)
        assert mixer.plan.mixed
        with torch.no_grad():
            direct = model.bert(**batch).last_hidden_state
    assert torch.equal(direct, plain)


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_a_paused_forward_before_backward_does_not_change_checkpointed_gradients(model_type):
    # RegMixup runs a clean (paused) forward between the mixed forward and the backward. With transformers'
    # gradient checkpointing the layer hooks stay outside the recomputed region, so the recompute uses the
    # inputs the hooks produced: gradients must equal the uncheckpointed ones.
    batch, labels = padded_batch(model_type)
    plan = MixPlan.from_lam(INDEX, LAM, site="hidden", layer=0, token_mask=batch["attention_mask"].bool())
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(model_type, "eager", dropout=False).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with HiddenMixer(model, MixConfig(site="hidden")) as mixer:
            with mixer.use_plan(plan):
                mixed = mixer.loss(model(**batch).logits, labels)
            with mixer.paused():
                clean = mixer.loss(model(**batch).logits, labels)
            (mixed + clean).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)
