"""The mixer's guard: a mixed plan that a training forward did not apply is an error, never silent.

After each training forward that drew a mixed plan, the mixer checks the `ForwardRecord` its hooks wrote: the plan
was applied at its site, and every later layer that takes an attention mask received the union of the partners'
masks. Either failing would leave targets mixed over states that are not (or padding the union should have opened).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._compat import check_on_device
from .calls import ForwardRecord
from .plan import MixPlan
from .sites import MASK_ARGUMENTS


class MixingNotAppliedError(RuntimeError):
    """A training forward drew a mixed plan but did not apply it (or did not carry the union mask past it): the
    targets would be mixed over states that are not. The message names the model, the site and the layer path."""


def not_applied_message(model_name: str, site: str, layer: int | None, stack_path: str | None) -> str:
    where = {"input": "the pixel values", "embeddings": "the hidden states entering the first layer of"}
    if site == "hidden":
        what = f"the output of layer {layer} of '{stack_path}'"
    else:
        what = where[site] + (f" '{stack_path}'" if stack_path is not None else "")
    return (
        f"HiddenMixer drew a mixed plan for a training forward of {model_name} (site={site!r}) but never mixed "
        f"{what}: that layer did not run as a module in this forward (its forward hooks never fired), so the targets "
        "would be mixed while the states are not. Name the layer list the model really calls with "
        "MixConfig(layer_stack='dotted.path'), or mix at another site."
    )


def check_forward(
    record: ForwardRecord, token_mask: Tensor | None, *, model_name: str, site: str, layer: int | None,
    stack_path: str | None,
) -> None:  # fmt: skip
    """Raise if the forward `record` describes drew a mixed plan and did not apply it, or (queued on the device, for a
    padded batch) left later layers that take an attention mask without the union."""
    if not record.mixed:
        return
    if not record.applied:
        raise MixingNotAppliedError(not_applied_message(model_name, site, layer, stack_path))
    if record.calls_without_mask and token_mask is not None:
        # only a padded batch needs the union: the check is queued on the device, not read back
        check_on_device(
            token_mask.all(),
            f"{model_name}: {record.calls_without_mask} layer call(s) of {stack_path} after the mix take an attention "
            "mask but received none that hiddenmix could unite (it looks for "
            f"{list(MASK_ARGUMENTS)}), so the padding of mixed rows is not what the union should make it. Name the "
            "stack with MixConfig(layer_stack=...) if another list is the real one, or pass batches without padding.",
        )


def check_model(model: nn.Module, site: str, *, is_text: bool, entry_params: list[str]) -> None:
    """Refuse, before any hook is attached, a model that the mix at `site` cannot reach correctly."""
    if site == "input" and "pixel_values" not in entry_params:
        raise ValueError(
            f"MixConfig.site='input' mixes pixel_values, which {type(model).__name__}.forward does not take. "
            "Token ids are integers and are never interpolated; use site='embeddings' or site='hidden'."
        )
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and site != "input":
        raise ValueError(
            f"{type(model).__name__} is an encoder-decoder: its decoder cross-attends to the encoder's states with "
            "each row's own padding mask, which the mixer does not reach, so mixed rows would hide the longer "
            "partner's content from the decoder. Mixing encoder-decoder models is not supported; use an "
            "encoder-only or decoder-only model."
        )
    attn = getattr(config, "_attn_implementation", None)
    if is_text and isinstance(attn, str) and "flash" in attn and site != "input":
        raise ValueError(
            f"{type(model).__name__} runs attn_implementation={attn!r}, which unpads the batch inside attention "
            "(and, in some models, between layers), so a per-row mix and the union of the padding masks cannot "
            "be carried through it. Load the model with attn_implementation='sdpa' or 'eager' to mix it."
        )


def check_given_plan(plan: MixPlan, site: str, layers: tuple[int, ...]) -> None:
    """A plan given to `use_plan` must be for the mixer's site and, at the `hidden` site, name one of its layers."""
    if not isinstance(plan, MixPlan):
        raise TypeError(f"use_plan takes a MixPlan; got {type(plan).__name__}.")
    if plan.site != site:
        raise ValueError(f"the plan is for site={plan.site!r} but this mixer mixes at site={site!r}.")
    if plan.site == "hidden" and plan.mixed and plan.layer not in layers:
        raise ValueError(
            f"the plan mixes after layer={plan.layer!r}, which is not one of this mixer's layers {list(layers)}; "
            "build it with layer=<one of them>."
        )


def check_batch(plan: MixPlan, batch: int) -> MixPlan:
    """`plan`, if it mixes a batch of `batch` rows (a plan given to `use_plan` is checked at each forward)."""
    if plan.batch_size != batch:
        raise ValueError(f"the plan given to use_plan mixes a batch of {plan.batch_size}; this batch has {batch}.")
    return plan


def eval_mode_warning(model_name: str) -> str:
    return (
        f"HiddenMixer: {model_name} is in eval mode, so a forward with gradients was not mixed (nor will any be until "
        "model.train() is called; from_pretrained returns models in eval mode). Call model.train() before training. "
        "(Shown once per mixer; forwards under torch.no_grad() stay quiet.)"
    )


__all__ = [
    "MixingNotAppliedError",
    "check_batch",
    "check_forward",
    "check_given_plan",
    "check_model",
    "eval_mode_warning",
    "not_applied_message",
]
