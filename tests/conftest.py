"""What the tests share: the offline environment, and one table of tiny random-init models (text and vision), built
from configs after `torch.manual_seed(0)` (nothing is downloaded), with inputs that have real padding.

Tests import the builders (`from conftest import tiny_model, padded_batch, vit, ...`): the parametrize tables need
them at collection time, where fixtures are not available.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    BeitConfig,
    BeitForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    SwinConfig,
    SwinForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hiddenmix import MixupTrainingArguments  # noqa: E402

transformers.logging.set_verbosity_error()

# ---------------------------------------------------------------------------------------------- text
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


VOCAB, SEQ, NUM_LABELS = 64, 12, 3
PROBLEM = {"single": None, "multi": "multi_label_classification", "regression": "regression"}


def tiny_classifier(kind: str = "single", *, dropout: float = 0.0, seed: int = 0):
    """A 2-layer BERT classifier for single-label (3 classes), multi-label or regression training."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        "bert",
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=1 if kind == "regression" else NUM_LABELS,
        problem_type=PROBLEM[kind],
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return AutoModelForSequenceClassification.from_config(config)


def make_dataset(n: int, kind: str = "single", *, seed: int = 1, ignore_rows: tuple[int, ...] = ()) -> Dataset:
    """`n` rows of real padding (lengths 4..SEQ); class ids, multi-label rows or regression values."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, SEQ + 1, (n,), generator=g)
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    ids = torch.randint(5, VOCAB, (n, SEQ), generator=g) * mask
    if kind == "single":
        labels = torch.randint(0, NUM_LABELS, (n,), generator=g)
        labels[list(ignore_rows)] = -100
    elif kind == "multi":
        labels = (torch.rand(n, NUM_LABELS, generator=g) < 0.5).float()
    else:
        labels = torch.randn(n, generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()})


def training_args(output_dir, **overrides) -> MixupTrainingArguments:
    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    values.update(overrides)
    return MixupTrainingArguments(**values)


# ---------------------------------------------------------------------------------------------- vision
VIT_KW = dict(
    image_size=8, patch_size=2, num_channels=1, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, num_labels=10,
)  # fmt: skip


def vit(**overrides):
    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(**{**VIT_KW, **overrides}))


def deit():
    torch.manual_seed(0)
    return DeiTForImageClassificationWithTeacher(DeiTConfig(**VIT_KW))


def beit():
    torch.manual_seed(0)
    return BeitForImageClassification(BeitConfig(**VIT_KW, drop_path_rate=0.0))  # no stochastic depth: comparable


def swin():
    torch.manual_seed(0)
    cfg = SwinConfig(
        image_size=8, patch_size=2, num_channels=1, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=2,
        num_labels=10, drop_path_rate=0.0,
    )  # fmt: skip
    return SwinForImageClassification(cfg)


MODELS = {"vit": vit, "deit": deit, "beit": beit, "swin": swin}
