"""The hooks on a model's layer stack: mix the hidden states entering the first layer (`embeddings` site) or leaving
the drawn layer (`hidden` site), and hand every layer after the mix the union of the two partners' attention masks.

The hooks only read the mixer's plan; they write what they did into the mixer's `ForwardRecord`, which the mixer's
guard checks when the forward returns. Parameter-shared stacks (ALBERT) are addressed by call count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .calls import ForwardRecord
from .ops import mix_sequence, union_attention_mask
from .plan import MixPlan
from .sites import MASK_ARGUMENTS, LayerStack, patch_token_weights

if TYPE_CHECKING:
    from .mixer import HiddenMixer


class StackHooks:
    """The pre-hook and hook of every layer of `stack`, driven by `mixer` (its plan, config and record).

    Args:
        stack: the layer stack.
        mixer: the mixer whose plan the hooks apply.
    """

    def __init__(self, stack: LayerStack, mixer: HiddenMixer) -> None:
        self.stack = stack
        self.mixer = mixer
        self._call = 0  # layer calls so far in this forward (shared stacks count calls, not modules)
        self._union_cache: tuple[Tensor, Tensor | None] | None = None  # (mask, its union) of this forward

    def register(self) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for i, layer in enumerate(self.stack.modules):
            handles.append(layer.register_forward_pre_hook(self._make_pre_hook(i), with_kwargs=True))
            handles.append(layer.register_forward_hook(self._make_hook(i)))
        return handles

    def reset(self) -> None:
        """Called at the start of every forward of the model."""
        self._call = 0
        self._union_cache = None

    def _record(self) -> ForwardRecord:
        # a recompute inside backward (gradient checkpointing) mixes again but is not counted again
        return self.mixer.last_forward if self.mixer.active else ForwardRecord()

    def _call_index(self, module_index: int, advance: bool) -> int:
        if not self.stack.shared:
            return module_index
        call = self._call
        if advance:
            self._call += 1
        return call

    def _union(self, mask: Tensor | None, plan: MixPlan) -> Tensor | None:
        if not torch.is_tensor(mask):
            return mask
        # Layers usually all receive the same mask object: unite it once per forward.
        cached = self._union_cache
        if cached is not None and cached[0] is mask:
            return cached[1]
        union = union_attention_mask(mask, plan.index, outer=self.stack.outer_mask)
        self._union_cache = (mask, union)
        return union

    def _mix_hidden(self, hidden: Tensor, plan: MixPlan) -> Tensor:
        weights = plan.weights
        pastes = plan.boxes is not None or plan.masks is not None
        if weights is None and pastes:
            if self.mixer._is_text:
                raise ValueError(
                    "the plan pastes token spans but carries no per-token weights; draw it with sequence_length= "
                    "(as the mixer does), or build it with MixPlan.from_lam for Mixup."
                )
            weights = patch_token_weights(plan, hidden.shape[1])  # ViT-family: a box / FMix mask on the patch grid
        if weights is None:  # plan without per-token weights (given by hand): per-sample λ
            weights = plan.lam[:, None].expand(hidden.shape[0], hidden.shape[1])
        if hidden.dim() < 3 or tuple(hidden.shape[:2]) != tuple(weights.shape):
            raise ValueError(
                f"layer output of shape {tuple(hidden.shape)} does not match the plan's [batch, tokens] = "
                f"{tuple(weights.shape)}: this layer changes the sequence length or batch layout, so the union "
                "mask cannot be carried past it. Choose other layers (MixConfig.layers)."
            )
        return mix_sequence(hidden, plan.index, weights, plan.token_mask, self.mixer.config.pad_policy)

    def _make_pre_hook(self, module_index: int):
        stack = self.stack

        def pre_hook(module: nn.Module, args: tuple, kwargs: dict):
            plan = self.mixer.layer_plan()
            if plan is None:
                if stack.shared:
                    self._call += 1
                return None
            call = self._call_index(module_index, advance=True)
            embeddings = plan.site == "embeddings"
            first_mixed = 0 if embeddings else plan.layer + 1
            if call < first_mixed:
                return None
            args, kwargs = list(args), dict(kwargs)
            record = self._record()
            if embeddings and call == 0:
                name = stack.hidden_argument
                if name in kwargs:
                    kwargs[name] = self._mix_hidden(kwargs[name], plan)
                else:
                    args[0] = self._mix_hidden(args[0], plan)
                record.applied = True
            record.layer_calls_after_mix += 1
            united = False
            for name in MASK_ARGUMENTS:  # by keyword, also through **kwargs; by position where the signature says
                pos = stack.mask_positions.get(name, -1)
                if torch.is_tensor(kwargs.get(name)):
                    kwargs[name] = self._union(kwargs[name], plan)
                    united = True
                elif 0 <= pos < len(args) and torch.is_tensor(args[pos]):
                    args[pos] = self._union(args[pos], plan)
                    united = True
            if united:
                record.masks_united += 1
            elif stack.mask_positions:
                record.calls_without_mask += 1
            return tuple(args), kwargs

        return pre_hook

    def _make_hook(self, module_index: int):
        stack = self.stack

        def hook(module: nn.Module, args: tuple, output: Any):
            plan = self.mixer.layer_plan()
            if plan is None or plan.site != "hidden":
                return None
            call = module_index if not stack.shared else self._call - 1
            if call != plan.layer:
                return None
            if self.mixer.active:
                self.mixer.last_forward.applied = True
            if torch.is_tensor(output):
                return self._mix_hidden(output, plan)
            if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
                items = [self._mix_hidden(output[0], plan), *output[1:]]
                return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)  # namedtuples too
            raise TypeError(
                f"{type(module).__name__} returned {type(output).__name__}; hiddenmix mixes a layer output that is a "
                "tensor or a tuple starting with the hidden states."
            )

        return hook
