"""No silent mixing: a plan drawn is applied or the forward fails, one mixer per model, no mixing without gradients,
and inputs the hooks cannot see (packed rows, flash-attention unpadding) refused with the reason."""

import pytest
import torch
from conftest import forward, padded_batch, tiny_model
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from hiddenmix import HiddenMixer, MixConfig, MixPlan
from hiddenmix.mixer import MixingNotAppliedError


class ToyConfig(PretrainedConfig):
    model_type = "toy-mixing-guard"

    def __init__(
        self, num_hidden_layers=3, hidden_size=8, vocab_size=20, num_labels=2, mask_name="attention_mask", **kwargs
    ):
        self.num_hidden_layers, self.hidden_size, self.vocab_size = num_hidden_layers, hidden_size, vocab_size
        self.mask_name = mask_name
        super().__init__(num_labels=num_labels, **kwargs)


class ToyLayer(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)

    def forward(self, hidden_states, attention_mask=None):
        if attention_mask is not None:  # a [B, T] mask: padded positions are zeroed
            hidden_states = hidden_states * attention_mask[..., None]
        return self.proj(hidden_states).tanh()


class ListOfListsModel(PreTrainedModel):
    """Its layer list holds lists of modules, which the forward iterates without calling them as modules."""

    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            nn.ModuleList([nn.Linear(config.hidden_size, config.hidden_size), nn.Tanh()])
            for _ in range(config.num_hidden_layers)
        )
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None):
        hidden = self.embed(input_ids)
        for linear, act in self.layers:
            hidden = act(linear(hidden))
        return self.head(hidden.mean(1))


class UnknownMaskNameModel(PreTrainedModel):
    """Its layers take `attention_mask`, but the model hands it over under another name (through **kwargs)."""

    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(ToyLayerWithKwargs(config.hidden_size) for _ in range(config.num_hidden_layers))
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None):
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, padding=attention_mask.float())
        return self.head(hidden.mean(1))


class ToyLayerWithKwargs(ToyLayer):
    def forward(self, hidden_states, attention_mask=None, **kwargs):
        return super().forward(hidden_states, kwargs.get("padding", attention_mask))


def toy_batch(padded: bool = True):
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0], [9, 10, 11, 0], [12, 13, 14, 15]])
    mask = (ids != 0).long() if padded else torch.ones_like(ids)
    return {"input_ids": ids, "attention_mask": mask}, torch.tensor([0, 1, 0, 1])


def test_a_layer_list_the_forward_never_calls_is_an_error_not_targets_mixed_over_unmixed_states():
    torch.manual_seed(0)
    model = ListOfListsModel(ToyConfig()).train()
    mixer = HiddenMixer(model, MixConfig(site="hidden", mixup_alpha=1.0, seed=0))
    assert mixer.stack.path == "layers"  # found, attached, and never run as modules by this forward
    batch, labels = toy_batch()
    with pytest.raises(
        MixingNotAppliedError,
        match=r"ListOfListsModel \(site='hidden'\) but never mixed the output "
        r"of layer \d of 'layers'.*layer_stack",
    ):
        model(**batch)
    # a caller that goes on anyway gets no mixed targets either
    with pytest.raises(MixingNotAppliedError, match="ListOfListsModel"):
        mixer.loss(torch.zeros(4, 2, requires_grad=True), labels)
    with mixer.paused():  # nothing drawn, nothing to apply: a plain forward
        assert model(**batch).shape == (4, 2)
    mixer.remove()


@pytest.mark.parametrize("site", ["embeddings", "hidden"])
def test_a_later_layer_that_never_receives_the_padding_mask_is_an_error(site):
    torch.manual_seed(0)
    model = UnknownMaskNameModel(ToyConfig()).train()
    mixer = HiddenMixer(model, MixConfig(site=site, layers=[0] if site == "hidden" else None, seed=0))
    batch, _ = toy_batch(padded=True)
    with pytest.raises(
        ValueError,
        match=r"layer call\(s\) of layers after the mix take an attention mask but "
        r"received none that hiddenmix could unite",
    ):
        model(**batch)
    record = mixer.last_forward
    assert record.applied and record.calls_without_mask == record.layer_calls_after_mix > 0
    # without padding there is nothing to unite: the same model mixes
    unpadded, _ = toy_batch(padded=False)
    model(**unpadded)
    assert mixer.last_forward.applied and mixer.plan.mixed
    mixer.remove()


def test_every_later_layer_of_a_transformers_model_receives_the_union():
    model = tiny_model("bert", "eager").train()
    batch, _ = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(site="hidden", layers=[0], seed=0))
    model(**batch)
    record = mixer.last_forward
    assert (record.mixed, record.applied, record.layer_calls_after_mix, record.masks_united) == (True, True, 2, 2)
    mixer.remove()


def test_a_second_mixer_on_the_same_model_is_refused_and_named():
    model = tiny_model("bert").train()
    first = HiddenMixer(model, MixConfig(site="hidden", seed=0))
    with pytest.raises(
        ValueError,
        match=r"BertForSequenceClassification already has HiddenMixer\(BertFor.*hidden @ "
        r"bert.encoder.layer.*HiddenMixer.of\(model\).remove\(\)",
    ):
        HiddenMixer(model, MixConfig(site="embeddings"))
    # nor on a part of the model, whose layers the first one already mixes
    with pytest.raises(ValueError, match=r"BertModel already has HiddenMixer\(BertForSequenceClassification"):
        HiddenMixer(model.bert, MixConfig())
    assert HiddenMixer.of(model) is first and HiddenMixer.of(model.bert) is first
    first.remove()
    assert HiddenMixer.of(model) is None
    second = HiddenMixer(model, MixConfig(site="embeddings"))
    assert HiddenMixer.of(model) is second
    with pytest.raises(ValueError, match="already has"):
        first.attach()  # re-attaching the first while the second is on is refused too
    second.remove()
    # a mixer on a part, then one on the whole model
    inner = HiddenMixer(model.bert, MixConfig())
    with pytest.raises(ValueError, match=r"BertForSequenceClassification already has HiddenMixer\(BertModel"):
        HiddenMixer(model, MixConfig())
    inner.remove()


def test_a_train_mode_forward_without_gradients_is_not_mixed():
    model = tiny_model("bert").train()
    batch, labels = padded_batch("bert")
    mixer = HiddenMixer(model, MixConfig(site="hidden", mixup_alpha=1.0, seed=0))
    with mixer.paused(), torch.no_grad():
        plain = forward(model, batch)
    with torch.no_grad():  # a validation loop that forgot model.eval()
        unmixed = forward(model, batch)
    assert torch.equal(unmixed, plain) and mixer.plan is None
    assert torch.equal(
        mixer.loss(unmixed, labels), torch.nn.functional.cross_entropy(unmixed, labels)
    )  # the plain loss, no mixed targets
    with torch.inference_mode():
        assert torch.equal(forward(model, batch), plain)
    mixed = forward(model, batch)  # with gradients: mixed
    assert not torch.allclose(mixed, plain) and mixer.plan.mixed
    mixer.remove()


def test_packed_batches_are_refused():
    model = tiny_model("llama", "sdpa").train()
    mixer = HiddenMixer(model, MixConfig(site="hidden", seed=0))
    ids = torch.randint(3, 99, (1, 10))
    lengths = torch.tensor([0, 4, 10], dtype=torch.int32)
    with pytest.raises(
        ValueError,
        match=r"was called with \['cu_seq_lens_q', 'cu_seq_lens_k', 'max_length_q', 'max_length_k'\]: a packed",
    ):
        model(input_ids=ids, cu_seq_lens_q=lengths, cu_seq_lens_k=lengths, max_length_q=6, max_length_k=6)
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    with pytest.raises(ValueError, match="position_ids that restart at 0 inside a row and no attention_mask"):
        model(input_ids=torch.randint(3, 99, (2, 10)), position_ids=positions)
    # position ids that do not restart, and the same packed call in eval mode, are fine
    model(input_ids=torch.randint(3, 99, (2, 10)), position_ids=torch.arange(10).expand(2, 10))
    model.eval()
    model(input_ids=torch.randint(3, 99, (2, 10)), position_ids=positions)
    mixer.remove()


def test_a_model_that_unpads_with_flash_attention_is_refused_at_attach():
    model = tiny_model("llama", "sdpa")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(
        ValueError,
        match=r"LlamaForSequenceClassification runs attn_implementation="
        r"'flash_attention_2'.*'sdpa' or 'eager'",
    ):
        HiddenMixer(model, MixConfig(site="hidden"))
    assert HiddenMixer.of(model) is None  # refused before anything was attached


def test_use_plan_mixes_are_checked_the_same_way():
    torch.manual_seed(0)
    model = ListOfListsModel(ToyConfig()).train()
    mixer = HiddenMixer(model, MixConfig(site="hidden"))
    batch, _ = toy_batch()
    with (
        mixer.use_plan(MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.5, layer=1)),
        pytest.raises(MixingNotAppliedError),
    ):
        model(**batch)
    mixer.remove()


def test_a_model_with_a_mixer_attached_is_freed_when_nothing_else_holds_it():
    import gc
    import weakref

    model = tiny_model("bert")
    HiddenMixer(model, MixConfig())  # attached, never removed, not kept
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_a_one_dimensional_input_ids_is_refused_by_its_name():
    model = tiny_model("bert").train()
    mixer = HiddenMixer(model, MixConfig(seed=0))
    with pytest.raises(
        ValueError, match=r"called with input_ids of shape \(9,\); a mix needs a batch: allowed: \[B, T\]"
    ):
        model(input_ids=torch.randint(3, 99, (9,)))
    mixer.remove()
