"""Reading one forward call of a model: what a mix needs from it, checked, and the record of what the forward did.

A mix must see every sequence of the batch as one row of `[B, T, D]` hidden states with a `[B, T]` padding mask.
Calls where that is not so are refused, never mixed: packed rows (several sequences in one row, as
`DataCollatorWithFlattening` makes them) would mix unrelated sequences, and a decoder-only model padded on the right
pools a last token that cannot see both partners' content. Checks on tensor values run on the device without a
host-device sync (`check_on_device`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._compat import check_on_device
from .images import check_pixel_values

TEXT_INPUTS = ("input_ids", "inputs_embeds")
# keyword arguments that only packed batches carry (DataCollatorWithFlattening's flash-attention kwargs)
PACKED_ARGUMENTS = ("cu_seq_lens_q", "cu_seq_lens_k", "cu_seqlens", "max_length_q", "max_length_k")


@dataclass(frozen=True)
class CallInputs:
    """What a mix reads from one forward call.

    Attributes:
        batch: B.
        device: the batch's device (where the plan is drawn).
        token_mask: `[B, T]` bool real-token mask of a text batch, or None (no mask given, or an image batch).
        sequence_length: T of a text batch; None for images.
        image_shape: `(H, W)` of an image batch; None for text.
    """

    batch: int
    device: torch.device
    token_mask: Tensor | None = None
    sequence_length: int | None = None
    image_shape: tuple[int, int] | None = None


@dataclass
class ForwardRecord:
    """What the last training forward did: the mixer's runtime guard reads it, and so can a user who debugs.

    Attributes:
        mixed: a mixed plan was drawn for this forward.
        applied: the plan was applied at its site (pixels, the first layer's input, or the drawn layer's output).
        layer_calls_after_mix: layer calls after the mix (each needs the union mask).
        masks_united: of those, the calls whose attention mask was replaced by the union.
        calls_without_mask: of those, the calls of layers that take an attention mask but received none.
    """

    mixed: bool = False
    applied: bool = False
    layer_calls_after_mix: int = 0
    masks_united: int = 0
    calls_without_mask: int = 0


def argument(name: str, params: list[str], args: tuple, kwargs: dict) -> Any:
    """The value of the forward argument `name`, given by keyword or by position (None when absent)."""
    if name in kwargs:
        return kwargs[name]
    if name in params:
        pos = params.index(name)
        if pos < len(args):
            return args[pos]
    return None


def replace_argument(name: str, params: list[str], args: tuple, kwargs: dict, value: Any) -> tuple[tuple, dict]:
    """`(args, kwargs)` of a call with the argument `name` (given by keyword or by position) replaced by `value`."""
    if name not in kwargs and name in params and params.index(name) < len(args):
        pos = params.index(name)
        return (*args[:pos], value, *args[pos + 1 :]), kwargs
    return args, {**kwargs, name: value}


def read_call(
    model_name: str,
    params: list[str],
    args: tuple,
    kwargs: dict,
    *,
    is_text: bool,
    decoder_only: bool,
    num_channels: int | None,
) -> CallInputs:
    """Read and check the inputs of a training forward that is to be mixed.

    Raises:
        ValueError: a packed batch, a call without the inputs that size the plan, a mask of the wrong shape, or
            (on CPU; queued on the device elsewhere) packed position ids or a right-padded decoder-only batch.
    """
    packed = [name for name in PACKED_ARGUMENTS if kwargs.get(name) is not None]
    if packed:
        raise ValueError(
            f"{model_name} was called with {packed}: a packed batch holds several sequences in one row, which a "
            "per-row mix would blend with unrelated sequences and whose per-row targets are undefined. Mix padded "
            "batches (DataCollatorWithPadding, not DataCollatorWithFlattening)."
        )
    ids, embeds = argument("input_ids", params, args, kwargs), argument("inputs_embeds", params, args, kwargs)
    reference = ids if ids is not None else embeds
    if reference is None:
        reference = argument("pixel_values", params, args, kwargs)
    if reference is None:
        raise ValueError(
            f"{model_name} was called without input_ids, inputs_embeds or pixel_values; hiddenmix needs one of them "
            "to size the plan."
        )
    if is_text and reference is not None and (ids is not None or embeds is not None) and reference.dim() < 2:
        name = "input_ids" if ids is not None else "inputs_embeds"
        raise ValueError(
            f"{model_name} was called with {name} of shape {tuple(reference.shape)}; a mix needs a batch: "
            f"allowed: [B, T]{' (or [B, T, D] embeddings)' if name == 'inputs_embeds' else ''}."
        )
    if not is_text:
        check_pixel_values(reference, num_channels=num_channels)
        return CallInputs(reference.shape[0], reference.device, image_shape=tuple(reference.shape[-2:]))
    batch, length = reference.shape[:2]
    mask = argument("attention_mask", params, args, kwargs)
    positions = argument("position_ids", params, args, kwargs)
    if mask is None and torch.is_tensor(positions) and positions.dim() == 2 and positions.shape[-1] > 1:
        # rows of DataCollatorWithFlattening: position ids restart at 0 where each packed sequence begins
        check_on_device(
            (positions[:, 1:] != 0).all(),
            f"{model_name} was called with position_ids that restart at 0 inside a row and no attention_mask: a "
            "packed batch, which a per-row mix would blend with unrelated sequences. Mix padded batches with an "
            "attention_mask.",
        )
    if mask is None:
        return CallInputs(batch, reference.device, sequence_length=length)
    if mask.dim() != 2 or tuple(mask.shape) != (batch, length):
        raise ValueError(
            f"hiddenmix needs a 2D attention_mask of shape {(batch, length)}; got {tuple(mask.shape)} for "
            f"{model_name}."
        )
    token_mask = mask.bool()
    if decoder_only:
        check_on_device(
            token_mask[:, -1],
            f"{model_name} pools the last token, which must see both partners' content: pad on the left "
            "(tokenizer.padding_side = 'left') so every sequence ends at the last position.",
        )
    return CallInputs(batch, reference.device, token_mask=token_mask, sequence_length=length)


__all__ = [
    "CallInputs",
    "ForwardRecord",
    "PACKED_ARGUMENTS",
    "TEXT_INPUTS",
    "argument",
    "read_call",
    "replace_argument",
]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module the user's call reaches: strips DDP / DataParallel / `torch.compile` wrappers."""
    return wrappers_of(model)[-1]


def wrappers_of(model: nn.Module) -> list[nn.Module]:
    """`model`, each DDP / DataParallel / `torch.compile` wrapper inside it, and last the module they wrap."""
    chain = [model]
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return chain
        chain.append(model)


def base_model(entry: nn.Module) -> nn.Module:
    """The `transformers` model under a PEFT wrapper (or the entry itself)."""
    get_base = getattr(entry, "get_base_model", None)
    return get_base() if callable(get_base) else entry
