"""Tiny random-init models built from configs (no download) and padded batches of unequal lengths."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

BASE = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=37,
    vocab_size=99,
    max_position_embeddings=64,
    pad_token_id=0,
    num_labels=3,
)
EXTRA = {
    "bert": {},
    "roberta": {},
    "distilbert": dict(dim=32, n_layers=3, n_heads=2, hidden_dim=37),
    "albert": dict(embedding_size=16),
    "electra": dict(embedding_size=16),
    "deberta-v2": {},
    "xlm-roberta": {},
    "modernbert": dict(bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2),
    "gpt2": dict(n_embd=32, n_layer=3, n_head=2, bos_token_id=1, eos_token_id=2),
    "llama": dict(num_key_value_heads=2, bos_token_id=1, eos_token_id=2),
    "qwen2": dict(num_key_value_heads=2, bos_token_id=1, eos_token_id=2),
}
DECODERS = {"gpt2", "llama", "qwen2"}
EAGER_ONLY = {"deberta-v2"}
ARCHITECTURES = [(mt, impl) for mt in EXTRA for impl in ("eager", "sdpa") if not (impl == "sdpa" and mt in EAGER_ONLY)]
NO_DROPOUT = dict(
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    dropout=0.0,
    attention_dropout=0.0,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    classifier_dropout=0.0,
    embedding_dropout=0.0,
    mlp_dropout=0.0,
    seq_classif_dropout=0.0,
    classifier_dropout_prob=0.0,
)


def tiny_model(model_type: str, attn: str = "eager", dropout: bool = True, **overrides):
    kwargs = {**BASE, **EXTRA[model_type], **({} if dropout else NO_DROPOUT), **overrides}
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation=attn)


def padded_batch(model_type: str, batch: int = 4, length: int = 9, seed: int = 0):
    """Token ids and mask with unequal lengths; decoders are padded on the left, encoders on the right."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 2, 5, length - 1, 3, 7, 4, 6][:batch])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    if model_type in DECODERS:
        mask = mask.flip(1)
    ids = torch.randint(3, 99, (batch, length), generator=gen) * mask
    labels = torch.randint(0, 3, (batch,), generator=gen)
    return {"input_ids": ids, "attention_mask": mask}, labels


def forward(model, batch, seed: int = 123):
    """Logits of one forward with fixed dropout masks, so two runs differ only by what they mix."""
    torch.manual_seed(seed)
    return model(**batch).logits
