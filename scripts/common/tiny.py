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

import dataclasses
import importlib.util
import inspect
import re
import time
from typing import Any

import torch
import transformers
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
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
if _missing("natten"):
    SKIPS["dinat"] = "needs the package natten (not installed) for its neighbourhood attention"
if _missing("detectron2"):
    SKIPS["layoutlmv2"] = "needs the package detectron2 (not installed) for its visual backbone"
if not torch.cuda.is_available() or _missing("kernels"):
    SKIPS["mra"] = (
        "its attention is a CUDA kernel fetched from the hub (kernels-community/mra); without it (CPU, offline, no "
        "`kernels` package) the attention silently returns zeros, so the model would run but not attend"
    )

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
    "rotary_dim": HEAD_DIM // 2,  # gptj: rotary part of each head
    "sliding_window": 4,  # smaller than the sample length, so windowed layers really mask
    "local_attention": 4,
    "attention_window": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH,
    # Multimodal consistency, should a user feed images: the vision tower's output width is the text width, its
    # position grid and the image-token count fit the 8x8 patch grid of a 32x32 image.
    "out_hidden_size": HIDDEN,
    "num_position_embeddings": (IMAGE_SIZE // PATCH) ** 2,
    "mm_tokens_per_image": 4,
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
    (re.compile(r"(?<!type_)vocab_size$"), VOCAB),  # vocab_size, entity_vocab_size, shape_vocab_size, not type
    (re.compile(r"embed_dims?$"), 16),  # roc_bert's pronunciation/shape embeddings; swin-like stems
    (re.compile(r"_layer_period$"), 2),  # jamba / zamba: one attention (or MoE) layer in every two
    (re.compile(r"_layer_offset$"), 1),
]

# Layer-pattern lists rebuilt by the config from the layer count (they must match it).
_LAYER_LISTS = ("layer_types", "mlp_layer_types", "layers_block_type", "no_rope_layers")


def _canonical_names(cls: type[PretrainedConfig]) -> dict[str, str]:
    """Field name -> standard name (gpt2's n_embd -> hidden_size), from the class's attribute_map. Only maps onto
    names the size table knows: xlm's attribute_map goes the other way (legacy n_words -> the field vocab_size)."""
    return {field: std for std, field in getattr(cls, "attribute_map", {}).items() if std in _SIZES}


def _field_values(cls: type[PretrainedConfig]) -> dict[str, Any]:
    """The config class's fields with their defaults (configs are dataclasses in transformers 5)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shrink_one(name: str, value: Any, hierarchical: bool) -> Any:
    """The tiny value for one scalar field, or `value` when no rule applies (only ints are shrunk: None usually
    means "derived from the other sizes", and floats are ratios)."""
    if not _is_int(value):
        return value
    if name == "num_hidden_layers" and hierarchical:
        return value  # a stage count (convnext's num_stages), tied to the per-stage tuples
    if name == "vocab_size" and value <= 1000:
        return value  # already small and meaningful (byte-level perceiver, imagegpt's colour clusters)
    if name == "num_hidden_layers":
        return LAYERS  # exactly 3, also where the default has fewer (bloom's 2)
    if name in _SIZES:
        return min(value, _SIZES[name])
    for pattern, tiny in _PATTERNS:
        if pattern.search(name):
            return min(value, tiny)
    return value


def _per_stage(name: str, value: tuple | list) -> tuple | list | None:
    """Tiny per-stage tuples of hierarchical vision models: one block a stage, widths 16*(i+1), heads i+1 (so every
    stage has 16-wide heads); square sizes (image_size=(224, 224)) become the tiny square."""
    n = len(value)
    if not n or not all(_is_int(v) for v in value):
        return None
    if name in ("image_size", "patch_size"):
        return type(value)([_SIZES[name]] * n)
    if name in ("depths", "depth", "num_block_repeats", "stage_num_blocks", "n_attn_blocks", "block_sizes"):
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
    out: dict[str, Any] = {"num_labels": NUM_LABELS[task]}
    for name, value in values.items():
        std = canonical.get(name, name)
        if std in _LAYER_LISTS and isinstance(value, (list, tuple)):
            out[name] = None  # let the config rebuild it for the tiny layer count
        elif name in ("use_mamba_kernels", "use_mem_eff_path"):
            out[name] = False  # the CUDA kernels of mamba layers; the torch path runs anywhere
        elif isinstance(value, (tuple, list)):
            tiny = _per_stage(std, value)
            if tiny is not None and tiny != value:
                out[name] = tiny
        elif value is None and name in ("head_dim", "num_key_value_heads"):
            # Some configs leave these None without deriving them (nemotron's key/value heads, hunyuan's and
            # ministral's head_dim); set what llama-like configs derive: hidden // heads, and no grouping (esmc,
            # for one, refuses grouped-query attention).
            out[name] = HEAD_DIM if name == "head_dim" else HEADS
        else:
            tiny = _shrink_one(std, value, hierarchical)
            if tiny != value:
                out[name] = tiny
    if "kv_lora_rank" in values and "num_key_value_heads" in values:
        # Multi-head latent attention: keys and values come out of the shared latent with one head per query head,
        # so there are as many key/value heads as query heads (the kernels repeat nothing).
        out["num_key_value_heads"] = out.get("num_attention_heads", values.get("num_attention_heads"))
    return out


# ---------------------------------------------------------------------------------------------- per-type fixes

# Only where the generic rule fails; each entry says why. Keys: model type; values: kwargs of the top-level config
# (a nested dict for a sub-config, e.g. {"vision_config": {...}}).
_TEXT_FIXES: dict[str, dict[str, Any]] = {
    # Its default config cannot build a model: the rotary embedding wants one rope entry per layer type. Sliding and
    # full layers both, so the tiny model has what the full one has.
    "cohere_compass_text": dict(
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
    ),
    # The MoE router's top-k defaults to None here (every released checkpoint sets it).
    "deepseek_v2": dict(num_experts_per_tok=2),
    # The vocabulary is left to the tokenizer (None); ESM-2's has 33 tokens.
    "esm": dict(vocab_size=33),
    # attention_types lists (kinds, repeats) and must add up to the layer count: global, local, global.
    "gpt_neo": dict(attention_types=[[["global", "local"], 1], [["global"], 1]]),
    # Six layout embeddings (x0, y0, x1, y1, w, h) each take hidden_size // 6: the hidden size must divide by 6
    # (and by the channel shrink ratio 4 of the layout stream).
    "lilt": dict(hidden_size=48),
    # Six layout embeddings of coordinate_size (4 of them) and shape_size (2) make up the hidden size.
    "layoutlmv3": dict(hidden_size=48, coordinate_size=8, shape_size=8, input_size=IMAGE_SIZE, patch_size=8),
    # The xpath embeddings (max_depth x (tags + subscripts) x 32) would be 2M parameters alone; the pad ids must stay
    # inside the shrunk tables.
    "markuplm": dict(
        max_depth=8, max_xpath_tag_unit_embeddings=32, tag_pad_id=31, max_xpath_subs_unit_embeddings=64, subs_pad_id=63
    ),
    # Latent width, latent count and self-attention depth have perceiver-only names (272M parameters otherwise);
    # d_model is the width of the byte embeddings.
    "perceiver": dict(d_model=HIDDEN, d_latents=HIDDEN, num_latents=8, num_self_attends_per_block=LAYERS),
    # Axial position embeddings force a training sequence length of exactly prod(axial_pos_shape); plain ones keep
    # any length. Training lengths must still be a multiple of the chunk length (3 here; 9 and 12 are). Three
    # layers, local and LSH attention both.
    "reformer": dict(
        attn_layers=["local", "lsh", "local"],
        axial_pos_embds=False,
        local_attn_chunk_length=3,
        lsh_attn_chunk_length=3,
        num_buckets=2,
    ),
    # Its grouped 1x1 convolutions need the embedding width to be the hidden width.
    "squeezebert": dict(embedding_size=HIDDEN),
    # The decoder starts from the pad id in T5, but T5Config (unlike MT5Config) does not carry it.
    "t5": dict(decoder_start_token_id=0),
    # Adapters are per language; without lang_ids the forward needs a default language.
    "xmod": dict(default_language="en_XX"),
    # One shared transformer block is tied across the hybrid layers; with a single hybrid layer (what 3 layers give)
    # transformers' tied-weights check fails, and sharing is the point of the architecture.
    "zamba": dict(layers_block_type=["linear_attention", "hybrid", "hybrid"]),
    # The default layer pattern is a fixed 54-entry list, not derived from the layer count.
    "zamba2": dict(layers_block_type=["linear_attention", "hybrid", "hybrid"]),
}

# Swin-like: stage widths double, so heads double. The relative-position table is built for window_size, and a
# stage whose grid is smaller than the window shrinks its window and breaks it: two stages (8x8 and 4x4 patches)
# with 4x4 windows; two blocks in the first, so it has a shifted-window block too.
_SWIN = dict(embed_dim=16, depths=(2, 1), num_heads=(1, 2), window_size=4)

_IMAGE_FIXES: dict[str, dict[str, Any]] = {
    # Group norms of 32 groups; the tiny widths (bottlenecks of 4 channels) take 4.
    "bit": dict(num_groups=4),
    # Each stage's drop-path list is indexed by the stage number, so stage i needs more than i blocks.
    "cvt": dict(depth=(1, 2, 3)),
    "donut-swin": _SWIN,
    "swin": _SWIN,
    "swinv2": {**_SWIN, "pretrained_window_sizes": (0, 0)},
    # Widths scale with width_coefficient and the head must be as wide as the last conv (round_filters(1280)):
    # 0.05 gives 8-channel blocks and a 64-wide head, which is the generic hidden_dim.
    "efficientnet": dict(width_coefficient=0.05, depth_coefficient=1.0),
    # Per-stage channel lists with their own names; the classifier reads stage_out_channels[-1] as hidden_sizes[-1].
    "hgnet_v2": dict(
        stem_channels=(3, 8, 16),
        stage_in_channels=(16, 16, 32, 48),
        stage_mid_channels=(8, 8, 16, 16),
        stage_out_channels=(16, 32, 48, 64),
        hidden_sizes=(16, 32, 48, 64),
        stage_numb_of_layers=(2, 2, 2, 2),
    ),
    # Stage widths double (embed_dim_multiplier 2), so heads double; the 7x7 stride-4 patch embedding gives the
    # 8x8 token grid that one 8x8 mask unit covers.
    "hiera": dict(embed_dim=16, num_heads=(1, 2, 4, 8), patch_size=(7, 7)),
    # The patch embedding is four stride-2 convolutions whatever patch_size says, and the attention biases are
    # sized from image_size // patch_size: keep 16, and 64x64 images for a 4x4 grid that the stages halve twice.
    "levit": dict(patch_size=16, image_size=64),
    # Widths come from depth_multiplier.
    "mobilenet_v1": dict(depth_multiplier=0.25),
    "mobilenet_v2": dict(depth_multiplier=0.25),
    # The neck widths have their own list (640 channels before the classifier).
    "mobilevit": dict(neck_hidden_sizes=(8, 8, 16, 16, 24, 24, 64)),
    # Widths come from width_multiplier; its last stage unfolds 2x2 patches of a stride-32 map, so 64x64 images.
    "mobilevitv2": dict(width_multiplier=0.25, image_size=64),
    # Perceiver-only names for the latents (as for text); the learned image preprocessor has image_size**2
    # positions.
    "perceiver": dict(d_model=HIDDEN, d_latents=HIDDEN, num_latents=8, num_self_attends_per_block=LAYERS),
    # Channel widths come from `scale`.
    "pp_lcnet": dict(scale=0.25),
    # The yes/no logits are read at token ids the config does not carry (the model falls back to 10784 and 3771):
    # name them, so that the special-token pass moves them into the tiny vocab.
    "shieldgemma2": dict(yes_token_index=10_784, no_token_index=3_771),
    # hidden_sizes lists the stem's width first, and the stem has its own name for it.
    "textnet": dict(stem_out_channels=16),
    # Position embeddings for a sqrt(num_patches)-square grid: the 8x8 grid of a 32x32 image.
    "siglip2": dict(vision_config=dict(num_patches=(IMAGE_SIZE // PATCH) ** 2)),
}

# ---------------------------------------------------------------------------------------------- building


def _sub_config_names(cfg: PretrainedConfig) -> list[str]:
    return [
        k for k in getattr(type(cfg), "sub_configs", {}) or {} if isinstance(getattr(cfg, k, None), PretrainedConfig)
    ]


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
        sub_fix = fixes.get(sub, {})
        if isinstance(sub_fix, PretrainedConfig):
            kwargs[sub] = sub_fix  # a ready sub-config from the caller's overrides
            continue
        sub_default = getattr(default, sub)
        sub_base = sub_default.to_dict()
        for key in ("model_type", "transformers_version", "architectures", "_name_or_path", "id2label", "label2id"):
            sub_base.pop(key, None)
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
    for key, value in fixes.items():
        # A constructor drops some keys (generation settings such as decoder_start_token_id); set them anyway.
        if key not in subs and getattr(cfg, key, None) != value:
            setattr(cfg, key, value)
    return cfg


def _token_fields(cfg: PretrainedConfig) -> list[str]:
    return [k for k in vars(cfg) if re.search(r"_token_(id|index)$", k) and not k.startswith("_")]


def _configs(cfg: PretrainedConfig) -> list[PretrainedConfig]:
    """A config and all its nested sub-configs."""
    out = [cfg]
    for sub in _sub_config_names(cfg):
        out += _configs(getattr(cfg, sub))
    return out


def _fix_token_ids(cfg: PretrainedConfig, pad_at_zero: bool) -> None:
    """Special token ids inside the tiny vocab: pad at 0 if asked (what it swaps with takes pad's old id), ids past
    the vocab moved to the smallest free ids, the same old id to the same new one across sub-configs."""
    text = cfg.get_text_config()
    vocab = getattr(text, "vocab_size", None) or VOCAB
    everyone = _configs(cfg)
    if pad_at_zero:
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
            if _is_int(value) and value >= vocab:
                remap.setdefault(value, next(free))
                setattr(c, k, remap[value])
            elif isinstance(value, list) and any(v >= vocab for v in value):
                for v in value:
                    if v >= vocab:
                        remap.setdefault(v, next(free))
                setattr(c, k, [remap.get(v, v) for v in value])


def _as_list(value: Any) -> list[int]:
    if _is_int(value):
        return [value]
    if isinstance(value, list):
        return [v for v in value if _is_int(v)]
    return []


def tiny_config(model_type: str, task: str, **overrides: Any) -> PretrainedConfig:
    """A config of `model_type` for `task` ("text" or "image") shrunk to a model of at most ~1M parameters (hidden
    32, 3 layers, vocab 256, 32x32 images; 3 or 4 labels), dropout left at its default, pad_token_id 0 for text.
    `overrides` go last: config fields, or a dict for a sub-config (e.g. vision_config={...}) that updates it."""
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
    _fix_token_ids(cfg, pad_at_zero=task == "text" and "pad_token_id" not in overrides)
    # Where a mapping lists several heads (deit's with-teacher variant, perceiver's three image preprocessors), the
    # auto class reads `architectures` to choose and fails on None: name the first, the auto default.
    mapping = (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
        if task == "text"
        else MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    )
    names = mapping.get(model_type)
    if names:
        cfg.architectures = [names if isinstance(names, str) else names[0]]
    return cfg


def tiny_model(model_type: str, task: str, *, attn: str | None = None, **overrides: Any) -> torch.nn.Module:
    """A random-init classifier of `model_type` (seeded, so two calls give the same weights); `attn` picks the
    attention implementation (None: the library's default)."""
    cfg = tiny_config(model_type, task, **overrides)
    torch.manual_seed(0)
    auto = AutoModelForSequenceClassification if task == "text" else AutoModelForImageClassification
    return auto.from_config(cfg, attn_implementation=attn)


# ---------------------------------------------------------------------------------------------- inputs


# Decoder-only, but missing from MODEL_FOR_CAUSAL_LM_MAPPING_NAMES in this transformers (it has Mistral4ForCausalLM).
_CAUSAL_EXTRA = {"mistral4"}


def is_decoder_only(config: PretrainedConfig) -> bool:
    """Causal models are padded on the left, where their classifier reads the last real token. Encoder-decoders
    are not, although bigbird_pegasus and plbart also have a causal-LM entry (their decoder alone)."""
    mt = config.model_type
    causal = (
        mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or mt in _CAUSAL_EXTRA
    ) and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return (causal and not config.is_encoder_decoder) or bool(getattr(config, "is_decoder", False))


def _special_ids(config: PretrainedConfig) -> set[int]:
    return {v for c in _configs(config) for k in _token_fields(c) for v in _as_list(getattr(c, k))}


def sample_inputs(model: torch.nn.Module, task: str, batch: int = 4) -> dict[str, torch.Tensor]:
    """Inputs for one forward (no labels). Text: token ids and a mask of unequal lengths, left-padded for
    decoder-only models, plus what an architecture needs to run. Images: pixel values of the configured size (or
    what the architecture takes instead)."""
    gen = torch.Generator().manual_seed(0)
    if task == "image":
        return _image_inputs(model, batch, gen)
    return _text_inputs(model, batch, gen)


def _forward_params(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _token_ids(config: PretrainedConfig, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random ids in [3, vocab) that are no special token of the config (an image token in a text-only batch would
    ask for image features; an extra eos would move the eos-pooled classifiers)."""
    vocab = getattr(config.get_text_config(), "vocab_size", None) or VOCAB
    allowed = torch.tensor([i for i in range(3, vocab) if i not in _special_ids(config)])
    return allowed[torch.randint(len(allowed), shape, generator=gen)]


def _text_inputs(model: torch.nn.Module, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    config = model.config
    text = config.get_text_config()
    length = SEQ_LENGTHS[0]
    lengths = torch.tensor([SEQ_LENGTHS[i % len(SEQ_LENGTHS)] for i in range(batch)])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    if is_decoder_only(config):
        mask = mask.flip(1)
    real = mask.bool()
    ids = _token_ids(config, (batch, length), gen)
    eos = getattr(text, "eos_token_id", None)
    if config.is_encoder_decoder and _is_int(eos):
        # The encoder-decoders' classifiers (bart, t5 and kin) read the hidden state at each row's eos token, which
        # tokenizers append: put it after the last real token.
        ids[torch.arange(batch), lengths - 1] = eos
    pad = getattr(text, "pad_token_id", None)
    ids = torch.where(real, ids, torch.full_like(ids, pad if _is_int(pad) else 0))
    out = {"input_ids": ids, "attention_mask": mask}
    params = _forward_params(model)
    if "bbox" in params:
        # Layout models (layoutlm, lilt, layoutlmv3): one box per token, x0 <= x1 and y0 <= y1 on a 0..1000 page
        # (all zeros on padding, as their processors do).
        top = getattr(config, "max_2d_position_embeddings", 1024) - 1
        corners = torch.randint(0, top // 2, (batch, length, 2), generator=gen)
        sizes = torch.randint(1, top // 2, (batch, length, 2), generator=gen)
        out["bbox"] = torch.cat([corners, corners + sizes], dim=-1) * real[..., None]
    if "xpath_tags_seq" in params:
        # MarkupLM: the xpath of each token's html node (tag ids and sibling subscripts per depth), pad ids beyond.
        depth = (batch, length, config.max_depth)
        out["xpath_tags_seq"] = torch.randint(0, config.tag_pad_id, depth, generator=gen)
        out["xpath_subs_seq"] = torch.randint(0, config.subs_pad_id, depth, generator=gen)
        out["xpath_tags_seq"][~real] = config.tag_pad_id
        out["xpath_subs_seq"][~real] = config.subs_pad_id
    return out


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    return getattr(config, "vision_config", None) or config


def _image_inputs(model: torch.nn.Module, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    config = model.config
    vision = _vision_config(config)
    size = getattr(vision, "image_size", IMAGE_SIZE)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    channels = getattr(vision, "num_channels", 3)
    pixels = torch.randn(batch, channels, h, w, generator=gen)
    if config.model_type == "imagegpt":
        # ImageGPT classifies sequences of colour-cluster ids, one a pixel (its image processor makes them), on a
        # square grid of n_positions pixels; the last id (vocab_size - 1) is the start token, not a colour.
        return {"input_ids": torch.randint(0, config.vocab_size - 1, (batch, config.n_positions), generator=gen)}
    if config.model_type == "siglip2":
        # Siglip2 (NaFlex) takes images as sequences of flattened patches, with a mask of real patches and each
        # image's patch grid: here every image fills the whole grid.
        p = vision.patch_size
        grid = (h // p, w // p)
        patches = (
            pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 4, 5, 1).reshape(batch, grid[0] * grid[1], -1)
        )
        return {
            "pixel_values": patches,
            "pixel_attention_mask": torch.ones(batch, grid[0] * grid[1], dtype=torch.long),
            "spatial_shapes": torch.tensor([grid] * batch),
        }
    if config.model_type == "shieldgemma2":
        # ShieldGemma2 answers a prompt about the image: the prompt must hold the image's tokens (begin-of-image,
        # mm_tokens_per_image image tokens, end-of-image) where the vision features go.
        text = config.text_config
        image = [config.boi_token_index] + [config.image_token_index] * config.mm_tokens_per_image
        prompt = _token_ids(config, (batch, 4), gen)
        ids = torch.cat([torch.tensor([[text.bos_token_id] + image + [config.eoi_token_index]] * batch), prompt], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}
    return {"pixel_values": pixels}


def logits_of(output: Any) -> torch.Tensor:
    """The class scores of a forward: `logits`, except pp_lcnet, which returns them as `last_hidden_state`."""
    return output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state


# ---------------------------------------------------------------------------------------------- report


def padding_gap(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """Largest logit difference, in eval mode, between each padded row of a text batch and the same row run alone
    without padding: 0 (to float precision) where padding is masked everywhere and positions start at each row's
    first real token."""
    mask = inputs["attention_mask"].bool()
    batch, length = mask.shape
    gap = 0.0
    with torch.no_grad():
        together = logits_of(model(**inputs)).float()
        for i in range(batch):
            if mask[i].all():
                continue
            alone = {
                k: (v[i][mask[i]][None] if v.dim() >= 2 and v.shape[:2] == (batch, length) else v)
                for k, v in inputs.items()
            }
            gap = max(gap, (logits_of(model(**alone)).float()[0] - together[i]).abs().max().item())
    return gap


def _check(model_type: str, task: str, attn: str | None = None) -> tuple[int, str, float]:
    """Build, one train-mode forward+backward and one eval-mode forward, timed; then, for text, the padding probe
    (not timed). Returns (params, outcome, seconds)."""
    if model_type in SKIPS:
        return 0, f"skip: {SKIPS[model_type]}", 0.0
    params, seconds = 0, 0.0
    try:
        start = time.perf_counter()
        model = tiny_model(model_type, task, attn=attn)
        params = sum(p.numel() for p in model.parameters())
        inputs = sample_inputs(model, task)
        model.train()
        logits = logits_of(model(**inputs))
        labels = torch.arange(logits.shape[0]) % logits.shape[-1]
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        model.eval()
        with torch.no_grad():
            again = logits_of(model(**inputs))
        seconds = time.perf_counter() - start
        if not torch.isfinite(again).all():
            raise RuntimeError("non-finite logits in eval mode")
    except Exception as err:  # the report shows every failure, it does not stop at the first
        return params, f"FAIL: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300], seconds
    # Parameters a classification forward does not reach (vision towers of text-only batches, pooler layers the
    # head skips, entity embeddings without entities): worth knowing, not a failure.
    unused = sum(p.requires_grad and p.grad is None for p in model.parameters())
    notes = [f"{unused} parameter tensors without grad"] if unused else []
    if task == "text":
        try:
            notes.append(f"padding gap {padding_gap(model, inputs):.1e}")
        except Exception as err:  # a row alone can be too short for some (canine, funnel)
            notes.append(f"no padding probe: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
    return params, "ok" + (f" ({'; '.join(notes)})" if notes else ""), seconds


def build_report(
    types: list[tuple[str, str]] | None = None, attn: str | None = None
) -> list[tuple[str, str, int, str, float]]:
    """Every type of both mappings (or `types`): (type, task, params, outcome, seconds), one line printed each, then
    the counts per task."""
    transformers.logging.set_verbosity_error()
    todo = types or [(t, "text") for t in TEXT_TYPES] + [(t, "image") for t in IMAGE_TYPES]
    rows = []
    for model_type, task in todo:
        params, outcome, seconds = _check(model_type, task, attn)
        rows.append((model_type, task, params, outcome, seconds))
        print(f"{model_type:24s} {task:5s} {params:>9,d} {seconds:6.2f}s  {outcome}", flush=True)
    for task in NUM_LABELS:
        outcomes = [r[3].split(":")[0].split(" ")[0] for r in rows if r[1] == task]
        print(f"{task}: " + ", ".join(f"{k} {outcomes.count(k)}" for k in ("ok", "skip", "FAIL")))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build and run a tiny model of every classification architecture.")
    parser.add_argument("types", nargs="*", help="TYPE:TASK pairs (e.g. bert:text vit:image); all when none")
    parser.add_argument("--attn", default=None, help="attention implementation (eager, sdpa); the default when unset")
    args = parser.parse_args()
    build_report([tuple(arg.split(":", 1)) for arg in args.types] or None, attn=args.attn)
