"""Finding where to mix on a `transformers` model: its layer stack, how its layers take the attention mask, and the
patch grid of ViT-family models (where patch-token CutMix draws its boxes).

Discovery tries, in order: the module path the user names; a small table by `model_type`; structural probing
(the `nn.ModuleList` whose length is `config.num_hidden_layers`). Parameter-shared stacks (ALBERT runs one layer
group N times) are addressed by call count, not by module.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .plan import MixPlan

# model_type -> path suffix of the layer stack, where probing would not find it (or would find the wrong one)
STACK_BY_MODEL_TYPE = {
    "albert": "encoder.albert_layer_groups",  # shared groups, called num_hidden_layers times
}
# model types whose layers cannot be mixed by a hook on their input or output, and why (refused at attach)
UNSUPPORTED_MODEL_TYPES = {
    "reformer": "its reversible layers carry two hidden streams (the attention output and the hidden states, "
    "concatenated at the end), so mixing what a layer takes or returns first would mix half of the representation",
}
# model types whose layers take a query x key outer-product mask m_q·m_k (see ops.union_attention_mask)
OUTER_PRODUCT_MASK_MODEL_TYPES = frozenset({"deberta", "deberta-v2", "sew-d"})
# names under which layers take an attention mask over the (mixed) sequence; cross-attention masks are excluded
MASK_ARGUMENTS = ("attention_mask", "attn_mask", "mask", "sliding_window_mask")
_STACK_NAMES = ("layer", "layers", "h", "block", "blocks")


class SiteNotFoundError(ValueError):
    """Raised when no layer stack can be found; the message lists what was tried and how to name it."""


@dataclass(frozen=True)
class LayerStack:
    """The layers a forward runs through, in order.

    Attributes:
        path: dotted path of the `nn.ModuleList`.
        modules: its elements.
        num_layers: layer calls per forward (`len(modules)`, or more for a shared stack).
        shared: True when modules are called more than once per forward (layers counted by call).
        hidden_argument: name of the hidden-state argument of the layers' `forward`.
        mask_positions: `{name: position}` of every attention-mask argument in the layers' `forward`.
        outer_mask: the masks are query x key outer products (DeBERTa).
    """

    path: str
    modules: tuple[nn.Module, ...]
    num_layers: int
    shared: bool
    hidden_argument: str
    mask_positions: dict[str, int]
    outer_mask: bool

    def resolve_layers(self, layers: tuple[int, ...] | None) -> tuple[int, ...]:
        """Config layer indices (negatives from the end) -> non-negative call indices, checked."""
        if layers is None:
            return tuple(range(self.num_layers))
        resolved = []
        for k in layers:
            if not -self.num_layers <= k < self.num_layers:
                raise ValueError(
                    f"MixConfig.layers={list(layers)} holds {k}, out of range for a model with {self.num_layers} "
                    f"layers; allowed: {-self.num_layers}..{self.num_layers - 1}."
                )
            resolved.append(k % self.num_layers)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"MixConfig.layers={list(layers)} names the same layer twice.")
        return tuple(sorted(resolved))


def _num_hidden_layers(config) -> int | None:
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _signature_info(layer: nn.Module) -> tuple[str, dict[str, int]]:
    params = [p for p in inspect.signature(layer.forward).parameters.values() if p.kind != p.VAR_KEYWORD]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    hidden = positional[0].name if positional else "hidden_states"
    masks = {p.name: i for i, p in enumerate(positional) if p.name in MASK_ARGUMENTS}
    for p in params:  # keyword-only mask arguments have no position
        if p.name in MASK_ARGUMENTS and p.name not in masks:
            masks[p.name] = -1
    return hidden, masks


# words in the module path of the layers of one modality of a multimodal model
_MODALITY_WORDS = {"text": ("language_model", "text_model", "text"), "image": ("vision", "visual", "image")}


def find_layer_stack(model: nn.Module, path: str | None = None, *, modality: str = "text") -> LayerStack:
    """Find the layer stack of `model` (a `transformers` `PreTrainedModel`).

    Args:
        model: the model.
        path: dotted module path of the layer list; overrides discovery.
        modality: `text` or `image`: what the mixed inputs are. A multimodal model's config keeps its layer counts in
            `text_config` / `vision_config`, and its towers are told apart by their module paths.

    Raises:
        SiteNotFoundError: nothing matched; the message lists what was tried and how to name the stack.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type in UNSUPPORTED_MODEL_TYPES:
        raise SiteNotFoundError(
            f"{type(model).__name__} cannot be mixed at a layer: {UNSUPPORTED_MODEL_TYPES[model_type]}."
        )
    expected = _num_hidden_layers(config) if config is not None else None
    if expected is None and config is not None:
        sub = getattr(config, "text_config" if modality == "text" else "vision_config", None)
        expected = _num_hidden_layers(sub) if sub is not None else None
    tried = []
    found: tuple[str, nn.Module] | None = None

    if path is not None:
        try:
            module = model.get_submodule(path)
        except AttributeError as err:
            raise SiteNotFoundError(
                f"MixConfig.layer_stack={path!r} is not a module of {type(model).__name__}: {err}"
            ) from err
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            raise SiteNotFoundError(
                f"MixConfig.layer_stack={path!r} is a {type(module).__name__}; it must name a non-empty nn.ModuleList."
            )
        found = (path, module)
    if found is None and model_type in STACK_BY_MODEL_TYPE:
        suffix = STACK_BY_MODEL_TYPE[model_type]
        tried.append(f"the table entry for model_type={model_type!r} ('...{suffix}')")
        for name, module in model.named_modules():
            if name.endswith(suffix) and isinstance(module, nn.ModuleList):
                found = (name, module)
                break
    if found is None:
        tried.append(f"an nn.ModuleList of length config.num_hidden_layers={expected} ({modality} layers)")
        candidates = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.ModuleList) and expected is not None and len(module) == expected
        ]
        other = _MODALITY_WORDS["image" if modality == "text" else "text"]

        def rank(item: tuple[str, nn.Module]) -> tuple:
            # not another modality's tower; the usual names; the shallowest (an encoder-decoder's encoder first)
            name = item[0]
            return (any(w in name for w in other), name.rsplit(".", 1)[-1] not in _STACK_NAMES, name.count("."))

        candidates.sort(key=rank)
        if candidates:
            found = candidates[0]
    if found is None:
        lists = [f"{name} (len {len(m)})" for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
        raise SiteNotFoundError(
            f"could not find the layer stack of {type(model).__name__} (model_type={model_type!r}). Tried: "
            f"{'; '.join(tried)}. nn.ModuleLists in the model: {lists or 'none'}. "
            "Name it with MixConfig(layer_stack='dotted.path.to.layers')."
        )

    name, module = found
    modules = tuple(module)
    num_layers = len(modules)
    shared = False
    if expected is not None and expected != num_layers and model_type in STACK_BY_MODEL_TYPE:
        num_layers, shared = expected, True
    hidden, masks = _signature_info(modules[0])
    return LayerStack(
        path=name,
        modules=modules,
        num_layers=num_layers,
        shared=shared,
        hidden_argument=hidden,
        mask_positions=masks,
        outer_mask=model_type in OUTER_PRODUCT_MASK_MODEL_TYPES,
    )


def is_decoder_only(model: nn.Module) -> bool:
    """True for decoder-only (causal) architectures such as GPT-2, Llama and Qwen2: their classifiers pool the last
    token. Encoder-decoders are not, even where their decoder alone has a causal-LM entry (BART, PLBart)."""
    from transformers.modeling_layers import GenericForSequenceClassification
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False) or isinstance(model, GenericForSequenceClassification):
        return True
    model_type = getattr(config, "model_type", None)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


# ---------------------------------------------------------------------------------------------- ViT patch grids
def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what}={value!r} must be an integer or a pair of integers.")


def patch_grid(model_config: Any, image_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """`(H // patch, W // patch)`: the patch grid a ViT-family model cuts an image of `image_shape` into.

    Args:
        model_config: the model's config; must have `patch_size` (ViT, DeiT, BEiT, Swin, ...).
        image_shape: `(H, W)` of the pixel values; default `config.image_size`.
    """
    patch = getattr(model_config, "patch_size", None)
    if patch is None:
        raise ValueError(
            f"{type(model_config).__name__} has no patch_size, so patch-token CutMix has no patch grid to draw "
            "boxes on; use CutMix at site='input' (pixels) or Mixup (cutmix_alpha=0) at this site."
        )
    ph, pw = _pair(patch, "config.patch_size")
    if image_shape is None:
        image_shape = _pair(getattr(model_config, "image_size", None), "config.image_size")
    height, width = image_shape
    if height < ph or width < pw:
        raise ValueError(f"images of size {(height, width)} are smaller than one patch {(ph, pw)}.")
    return height // ph, width // pw


def check_patch_cutmix(model_config: Any, site: str) -> None:
    """Raise before the model is touched when patch-token CutMix cannot work at `site` on this model.

    A box on the patch grid needs the mixed sequence to be that grid: true entering the first layer of every
    ViT-family model, and after every layer of a plain ViT / DeiT / BEiT, but not after a stage of a hierarchical
    model (Swin merges 2x2 patches between stages).
    """
    patch_grid(model_config)
    if site == "hidden" and getattr(model_config, "depths", None) is not None:
        raise ValueError(
            f"CutMix at site='hidden' on {type(model_config).__name__} (a hierarchical model with depths="
            f"{list(model_config.depths)}): its stages merge patches, so a box on the patch grid does not map to "
            "their output. Use Mixup (cutmix_alpha=0, cutmix_minmax=None) at site='hidden', or CutMix at "
            "site='embeddings' or site='input'."
        )


def patch_token_weights(plan: MixPlan, num_tokens: int) -> Tensor:
    """`[B, T]` weight of each sample's own token for patch-token CutMix / Mixup on a ViT sequence.

    The sequence is `P` prefix tokens (class, distillation) followed by the `gh·gw` patch tokens in row-major
    order (ViT, DeiT, BEiT; Swin has no prefix). Patch tokens inside a sample's box come from its partner (weight
    0), the others stay (weight 1); Mixup rows weigh every token by λ. Prefix tokens are mixed with the realised
    λ (`plan.lam_target`), so everything a prefix token stands for is weighted like the soft target. Entering the
    first layer the prefix tokens are the same learned vectors for every sample, so there this is exact identity.

    Args:
        plan: a plan whose `grid` is the patch grid `(gh, gw)`.
        num_tokens: T, the length of the sequence being mixed.
    """
    gh, gw = plan.grid
    prefix = num_tokens - gh * gw
    if prefix < 0:
        raise ValueError(
            f"patch-token CutMix drew boxes on a {gh}x{gw} patch grid ({gh * gw} tokens) but the sequence being "
            f"mixed has {num_tokens} tokens: this layer merges patches (e.g. Swin between stages). Use Mixup "
            "(cutmix_alpha=0) at site='hidden' for such models, or CutMix at site='embeddings' / 'input'."
        )
    patches = plan.own_weight((gh, gw)).flatten(1)  # (B, gh*gw)
    head = plan.lam_target.to(patches.dtype)[:, None].expand(-1, prefix)  # (B, P)
    return torch.cat([head, patches], dim=1)
