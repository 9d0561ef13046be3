"""Tiny random-init models for every architecture of transformers' sequence- and image-classification auto
mappings, built from configs alone (nothing is downloaded), and inputs for one forward with real padding.

Why: hiddenmix hooks whatever an architecture's layers return, so a check is only as good as the architectures it
covers. A tiny copy of each (hidden 32, 3 layers, vocab 256, 32x32 images) builds and runs in well under a second on
a CPU, so one loop can cover all of them.

How a config is shrunk: generically first (a table of standard size names, resolved through each config's
`attribute_map`, plus name patterns for the model-specific ones), then a small per-type table where the generic rule
cannot know what an architecture needs. Every per-type entry says why.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402
from transformers.models.auto.modeling_auto import (  # noqa: E402
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

TEXT_TYPES: list[str] = sorted(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)
IMAGE_TYPES: list[str] = sorted(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)

NUM_LABELS = {"text": 3, "image": 4}
HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 3, 4, 2, 8
FFN, MOE_FFN, VOCAB, MAX_POSITIONS = 64, 32, 256, 64
IMAGE_SIZE, PATCH = 32, 4
SEQ_LENGTHS = (9, 2, 5, 8, 3, 7, 4, 6)  # real padding: unequal lengths in a length-9 batch

# ---------------------------------------------------------------------------------------------- skips


def _missing(package: str) -> bool:
    return importlib.util.find_spec(package) is None


SKIPS: dict[str, str] = {}
if _missing("timm"):
    SKIPS["timm_wrapper"] = "needs the package timm (not installed): the whole model is a timm model"
if _missing("detectron2"):
    SKIPS["layoutlmv2"] = "needs the package detectron2 (not installed) for its visual backbone"

# ---------------------------------------------------------------------------------------------- generic shrink

# Standard size names, keyed by the canonical name (a config's `attribute_map` maps e.g. gpt2's n_embd onto
# hidden_size). A value is only replaced where the config gives an int (None means "derived from the others").
_SIZES: dict[str, int] = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM,
    "intermediate_size": FFN,
    "max_position_embeddings": MAX_POSITIONS,
    "max_seq_len": MAX_POSITIONS,
    "embedding_size": 16,  # albert / electra factorized embeddings; the stem width of bit / resnet / regnet
    "kv_lora_rank": 16,  # multi-head latent attention (deepseek-like)
    "q_lora_rank": 16,
    "qk_rope_head_dim": HEAD_DIM,
    "qk_nope_head_dim": HEAD_DIM,
    "v_head_dim": HEAD_DIM,
    "index_head_dim": HEAD_DIM,  # the sparse-attention indexer of axk2
    "index_topk": 4,
    "projection_dim": 16,
    "entity_emb_size": 16,
    "input_embedding_size": 16,
    "output_embedding_size": HIDDEN,
    "intra_bottleneck_size": 16,
    "prediction_head_size": HIDDEN,
    "num_hash_buckets": VOCAB,
    "adapter_rank": 8,
    "auxiliary_channels": 16,
    "decoder_hidden_size": HIDDEN,
    "class_expand": FFN,
    "sliding_window": 4,  # smaller than the sample length, so windowed layers really mask
    "local_attention": 4,
    "attention_window": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH,
}

# Name patterns for model-specific size names, tried in order on the canonical name; int values only.
_PATTERNS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"(key_value|kv)_heads$|linear_num_key_heads$"), KV_HEADS),
    (re.compile(r"heads$"), HEADS),  # encoder_attention_heads, n_head, num_heads, linear_num_value_heads, ...
    (re.compile(r"^(num_|n_)?(routed_|local_)?experts$"), 4),  # num_experts, n_routed_experts, num_local_experts
    (re.compile(r"^num_experts_per_tok$|^moe_topk$"), 2),
    (re.compile(r"^n_group$|^topk_group$"), 1),
    (re.compile(r"^first_k_dense_replace$"), 1),  # keep MoE layers in a 3-layer model
    (re.compile(r"(moe|expert)_intermediate_size$"), MOE_FFN),
    (re.compile(r"intermediate_size$|ffn_dim$|^d_ff$|^d_inner$|^dff$|^hidden_dim$|^feed_forward_size$"), FFN),
    (re.compile(r"(^|_)layers$"), LAYERS),  # encoder_layers, decoder_layers, num_decoder_layers, max_window_layers
    (re.compile(r"head_dim$|^d_head$|^d_kv$|^kv_channels$|^attention_head_(size|dim)$"), HEAD_DIM),
    (re.compile(r"(?<!type_)vocab_sizes?$"), VOCAB),  # vocab_size, entity_vocab_size, shape_vocab_size, not type
    (re.compile(r"embed_dims?$"), 16),  # roc_bert's pronunciation/shape embeddings; swin-like stems
    (re.compile(r"_layer_period$"), 2),  # jamba / zamba: one attention (or MoE) layer in every two
    (re.compile(r"_layer_offset$"), 1),
]

# Layer-pattern lists rebuilt by the config from the layer count (they must match it).
_LAYER_LISTS = ("layer_types", "mlp_layer_types", "layers_block_type", "no_rope_layers", "attention_types")


def _canonical_names(cls: type[PretrainedConfig]) -> dict[str, str]:
    """Field name -> standard name (gpt2's n_embd -> hidden_size), from the class's attribute_map."""
    return {field: std for std, field in getattr(cls, "attribute_map", {}).items()}


def _field_values(cls: type[PretrainedConfig]) -> dict[str, Any]:
    """The config class's fields with their defaults (configs are dataclasses in transformers 5)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _shrink_one(name: str, value: Any, task: str, hierarchical: bool) -> Any:
    """The tiny value for one field, or `value` when no rule applies."""
    if isinstance(value, bool):
        return value
    if name == "num_labels":
        return NUM_LABELS[task]
    if name in ("image_size", "patch_size") and isinstance(value, (tuple, list)):
        return type(value)([_SIZES[name]] * len(value))
    if not isinstance(value, int):
        return value
    if name == "num_hidden_layers" and hierarchical:
        return value  # a stage count (convnext's num_stages), tied to the per-stage tuples
    if name == "vocab_size" and value <= 1000:
        return value  # already small and meaningful (byte-level perceiver, imagegpt's colour clusters)
    if name in _SIZES:
        return min(value, _SIZES[name])
    for pattern, tiny in _PATTERNS:
        if pattern.search(name):
            return min(value, tiny) if tiny > 1 else tiny
    return value


def _per_stage(name: str, value: tuple | list) -> tuple | list | None:
    """Tiny per-stage tuples of hierarchical vision models: one block a stage, widths 16*(i+1), heads i+1."""
    n = len(value)
    if not n or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    if name in ("depths", "depth", "num_block_repeats", "stage_num_blocks", "n_attn_blocks"):
        return type(value)([1] * n)
    if name in ("hidden_sizes", "embed_dims", "embed_dim", "base_attn_unit_dims"):
        return type(value)([16 * (i + 1) for i in range(n)])
    if name in ("num_heads", "num_attention_heads"):
        return type(value)([i + 1 for i in range(n)])
    return None


def _generic_overrides(cls: type[PretrainedConfig], values: dict[str, Any], task: str) -> dict[str, Any]:
    """The generic shrink of one config level: every field whose name a rule knows."""
    canonical = _canonical_names(cls)
    hierarchical = any(isinstance(values.get(k), (tuple, list)) for k in ("depths", "depth"))
    out: dict[str, Any] = {}
    for name, value in values.items():
        std = canonical.get(name, name)
        if std in _LAYER_LISTS and isinstance(value, (list, tuple)):
            out[name] = None  # let the config rebuild it for the tiny layer count
            continue
        if name in ("use_mamba_kernels", "use_mem_eff_path"):
            out[name] = False  # the CUDA kernels of mamba layers; the torch path runs anywhere
            continue
        if isinstance(value, (tuple, list)):
            tiny = _per_stage(std, value)
        else:
            tiny = _shrink_one(std, value, task, hierarchical)
        if tiny is not None and tiny != value:
            out[name] = tiny
    out["num_labels"] = NUM_LABELS[task]
    return out


# ---------------------------------------------------------------------------------------------- per-type fixes

# Only where the generic rule fails; each entry says why. Keys: model type; values: kwargs of the top-level config
# (a nested dict for a sub-config, e.g. {"vision_config": {...}}).
_TEXT_FIXES: dict[str, dict[str, Any]] = {}
_IMAGE_FIXES: dict[str, dict[str, Any]] = {}

# ---------------------------------------------------------------------------------------------- building


def _sub_config_names(cfg: PretrainedConfig) -> list[str]:
    return [k for k in getattr(type(cfg), "sub_configs", {}) or {} if isinstance(getattr(cfg, k, None), PretrainedConfig)]


def _layer_count(cfg: PretrainedConfig) -> int | None:
    n = getattr(cfg, "num_hidden_layers", None)
    return n if isinstance(n, int) else None


def _build(
    cls: type[PretrainedConfig],
    base: dict[str, Any],
    values: dict[str, Any],
    default: PretrainedConfig,
    task: str,
    fixes: dict[str, Any],
) -> PretrainedConfig:
    """One config level: `base` (nothing at the top; what a composite config put in a sub-config) plus the generic
    shrink of `values` (the sizes the full model has), then the per-type fixes; sub-configs built the same way."""
    kwargs = {**base, **_generic_overrides(cls, values, task)}
    subs = _sub_config_names(default)
    for sub in subs:
        sub_default = getattr(default, sub)
        sub_base = sub_default.to_dict()
        for key in ("model_type", "transformers_version", "architectures", "_name_or_path"):
            sub_base.pop(key, None)
        sub_fix = fixes.get(sub, {})
        kwargs[sub] = _build(type(sub_default), sub_base, sub_base, sub_default, task, sub_fix)
    kwargs.update({k: v for k, v in fixes.items() if k not in subs})
    cfg = cls(**kwargs)
    # Layer-pattern lists: the config rebuilt them for 3 layers; keep every kind the full-size model has (a 3-layer
    # qwen3_next would otherwise have only linear-attention layers, a 3-layer gemma3 only sliding ones).
    refit = {}
    for name in _LAYER_LISTS:
        tiny, full = getattr(cfg, name, None), getattr(default, name, None)
        if not (isinstance(tiny, list) and isinstance(full, list)) or name in fixes:
            continue
        kinds = [k for i, k in enumerate(full) if k not in full[:i]]
        missing = [k for k in kinds if k not in tiny]
        if missing and len(tiny) > len(missing):
            refit[name] = tiny[: len(tiny) - len(missing)] + missing
    if refit:
        cfg = cls(**{**kwargs, **refit})
    return cfg


def _token_fields(cfg: PretrainedConfig) -> list[str]:
    return [k for k in vars(cfg) if re.search(r"_token_(id|index)$", k) and not k.startswith("_")]


def _configs(cfg: PretrainedConfig) -> list[PretrainedConfig]:
    """A config and all its nested sub-configs."""
    out = [cfg]
    for sub in _sub_config_names(cfg):
        out += _configs(getattr(cfg, sub))
    return out


def _fix_token_ids(cfg: PretrainedConfig, task: str) -> None:
    """Special token ids inside the tiny vocab: pad at 0 for text (what it swaps with takes pad's old id), ids past
    the vocab moved to the smallest free ids, the same old id to the same new one across sub-configs."""
    text = cfg.get_text_config()
    vocab = getattr(text, "vocab_size", None) or VOCAB
    everyone = _configs(cfg)
    if task == "text":
        for c in everyone:
            if "pad_token_id" in vars(c) or hasattr(type(c), "pad_token_id"):
                old = getattr(c, "pad_token_id", None)
                for k in _token_fields(c):
                    if k != "pad_token_id" and getattr(c, k) == 0:
                        setattr(c, k, old if isinstance(old, int) and 0 < old < vocab else vocab + 1_000_000)
                c.pad_token_id = 0
    used = {v for c in everyone for k in _token_fields(c) for v in _as_list(getattr(c, k)) if 0 <= v < vocab}
    remap: dict[int, int] = {}
    free = (i for i in range(vocab) if i not in used)
    for c in everyone:
        for k in _token_fields(c):
            value = getattr(c, k)
            if isinstance(value, int) and not isinstance(value, bool) and value >= vocab:
                remap.setdefault(value, next(free))
                setattr(c, k, remap[value])
            elif isinstance(value, list) and any(v >= vocab for v in value):
                for v in value:
                    if v >= vocab:
                        remap.setdefault(v, next(free))
                setattr(c, k, [remap.get(v, v) for v in value])


def _as_list(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def tiny_config(model_type: str, task: str, **overrides: Any) -> PretrainedConfig:
    """A config of `model_type` shrunk to a ~1M-parameter model (hidden 32, 3 layers, vocab 256, 32x32 images),
    dropout left at its default; `overrides` go last (a dict value for a sub-config updates that sub-config)."""
    if task not in NUM_LABELS:
        raise ValueError(f"task must be 'text' or 'image', not {task!r}")
    cls = CONFIG_MAPPING[model_type]
    default = cls()
    fixes = {**(_TEXT_FIXES if task == "text" else _IMAGE_FIXES).get(model_type, {})}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(fixes.get(key), dict):
            fixes[key] = {**fixes[key], **value}
        else:
            fixes[key] = value
    cfg = _build(cls, {}, _field_values(cls), default, task, fixes)
    _fix_token_ids(cfg, task)
    return cfg


def tiny_model(model_type: str, task: str, *, attn: str | None = None, **overrides: Any) -> torch.nn.Module:
    """A random-init classifier of `model_type` (seeded, so two calls give the same weights); `attn` picks the
    attention implementation (None: the library's default)."""
    cfg = tiny_config(model_type, task, **overrides)
    torch.manual_seed(0)
    auto = AutoModelForSequenceClassification if task == "text" else AutoModelForImageClassification
    return auto.from_config(cfg, attn_implementation=attn)


# ---------------------------------------------------------------------------------------------- inputs


def is_decoder_only(config: PretrainedConfig) -> bool:
    """Causal models are padded on the left, where their classifier reads the last real token."""
    mt = config.model_type
    causal = mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return causal or bool(getattr(config, "is_decoder", False))


def _special_ids(config: PretrainedConfig) -> set[int]:
    return {v for c in _configs(config) for k in _token_fields(c) for v in _as_list(getattr(c, k))}


def sample_inputs(model: torch.nn.Module, task: str, batch: int = 4) -> dict[str, torch.Tensor]:
    """Inputs for one forward: for text, token ids and a mask of unequal lengths (left-padded for decoder-only
    models) plus what an architecture requires; for images, pixel values of the configured size."""
    config = model.config
    gen = torch.Generator().manual_seed(0)
    if task == "image":
        return _image_inputs(config, batch, gen)
    return _text_inputs(config, batch, gen)


def _text_inputs(config: PretrainedConfig, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    text = config.get_text_config()
    vocab = getattr(text, "vocab_size", None) or VOCAB
    length = SEQ_LENGTHS[0]
    lengths = torch.tensor([SEQ_LENGTHS[i % len(SEQ_LENGTHS)] for i in range(batch)])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    left = is_decoder_only(config)
    if left:
        mask = mask.flip(1)
    allowed = torch.tensor([i for i in range(3, vocab) if i not in _special_ids(config)])
    ids = allowed[torch.randint(len(allowed), (batch, length), generator=gen)]
    pad = getattr(text, "pad_token_id", None)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad if isinstance(pad, int) else 0))
    return {"input_ids": ids, "attention_mask": mask}


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    return getattr(config, "vision_config", None) or config


def _image_inputs(config: PretrainedConfig, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    vision = _vision_config(config)
    size = getattr(vision, "image_size", IMAGE_SIZE)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    channels = getattr(vision, "num_channels", 3)
    return {"pixel_values": torch.randn(batch, channels, h, w, generator=gen)}


# ---------------------------------------------------------------------------------------------- report


def _check(model_type: str, task: str) -> tuple[int, str, float]:
    """Build, one train-mode forward+backward and one eval-mode forward: (params, outcome, seconds)."""
    start = time.perf_counter()
    if model_type in SKIPS:
        return 0, f"skip: {SKIPS[model_type]}", 0.0
    params = 0
    try:
        model = tiny_model(model_type, task)
        params = sum(p.numel() for p in model.parameters())
        inputs = sample_inputs(model, task)
        model.train()
        logits = model(**inputs).logits
        labels = torch.arange(logits.shape[0]) % logits.shape[-1]
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        model.eval()
        with torch.no_grad():
            again = model(**inputs).logits
        if not torch.isfinite(again).all():
            raise RuntimeError("non-finite logits in eval mode")
        outcome = "ok" + (f" ({len(missing)} params without grad)" if missing else "")
    except Exception as err:  # noqa: BLE001 - the report shows every failure, it does not stop at the first
        outcome = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    return params, outcome, time.perf_counter() - start


def build_report(types: list[tuple[str, str]] | None = None) -> list[tuple[str, str, int, str, float]]:
    """Every type of both mappings (or `types`): (type, task, params, outcome, seconds), one line printed each."""
    transformers.logging.set_verbosity_error()
    todo = types or [(t, "text") for t in TEXT_TYPES] + [(t, "image") for t in IMAGE_TYPES]
    rows = []
    for model_type, task in todo:
        params, outcome, seconds = _check(model_type, task)
        rows.append((model_type, task, params, outcome, seconds))
        print(f"{model_type:24s} {task:5s} {params:>9,d} {seconds:6.2f}s  {outcome}", flush=True)
    for task in NUM_LABELS:
        outcomes = [r[3].split(":")[0].split(" ")[0] for r in rows if r[1] == task]
        print(f"{task}: " + ", ".join(f"{k} {outcomes.count(k)}" for k in ("ok", "skip", "FAIL")))
    return rows


if __name__ == "__main__":
    import sys

    build_report([(t, task) for arg in sys.argv[1:] for t, task in [arg.split(":")]] or None)
