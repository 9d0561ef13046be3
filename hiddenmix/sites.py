"""Finding where to mix on a `transformers` model: its layer stack and how its layers take the attention mask.

Discovery tries, in order: the module path the user names; a small table by `model_type`; structural probing
(the `nn.ModuleList` whose length is `config.num_hidden_layers`). Parameter-shared stacks (ALBERT runs one layer
group N times) are addressed by call count, not by module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

# model_type -> path suffix of the layer stack, where probing would not find it (or would find the wrong one)
STACK_BY_MODEL_TYPE = {
    "albert": "encoder.albert_layer_groups",  # shared groups, called num_hidden_layers times
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


def find_layer_stack(model: nn.Module, path: str | None = None) -> LayerStack:
    """Find the layer stack of `model` (a `transformers` `PreTrainedModel`).

    Args:
        model: the model.
        path: dotted module path of the layer list; overrides discovery.

    Raises:
        SiteNotFoundError: nothing matched; the message lists what was tried and how to name the stack.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    expected = _num_hidden_layers(config) if config is not None else None
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
        tried.append(f"an nn.ModuleList of length config.num_hidden_layers={expected}")
        candidates = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.ModuleList) and expected is not None and len(module) == expected
        ]
        # prefer the usual names, then the shallowest (the encoder of an encoder-decoder comes first)
        candidates.sort(key=lambda nm: (nm[0].rsplit(".", 1)[-1] not in _STACK_NAMES, nm[0].count(".")))
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
    """True for decoder-only (causal) architectures such as GPT-2, Llama and Qwen2."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_decoder", False):
        return True
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
