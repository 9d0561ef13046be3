"""Which forward made these logits: the loss follows the logits, not the clock.

A hand-written loop often runs more than one forward before it computes a loss: RegMixup's clean forward after the
mixed one, an eval forward to log accuracy, a teacher. Scoring mixed logits against the plan of "the last forward"
would then mix the targets of one forward with the logits of another, silently. So the mixer keeps a short log of
the forwards it saw, each with its plan (none for a plain forward) and the storages of its output tensors, and
`mixer.loss(logits, labels)` takes the plan of the forward whose output `logits` are (or are a view of). Logits that
are no forward's output (a head of your own on the hidden states) get the plan of the one forward run since the last
loss; after several, which one made them cannot be known, and that is an error that says how to pass `plan=`.

The same module lets a mixed forward that was given `labels` return the soft-target loss in `outputs.loss`: the
labels are taken out of the call before the model sees them (its own loss would be the hard-label loss over mixed
states, and float labels switch a `...ForSequenceClassification` to BCE and persist `config.problem_type`), and the
loss of the forward's own plan is put in their place.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .calls import argument, replace_argument
from .plan import MixPlan

# forwards remembered; a loss is computed within a few forwards of the one it scores
_LOG_LENGTH = 8


@dataclass(frozen=True)
class LoggedForward:
    """One forward the mixer saw.

    Attributes:
        plan: the plan it was mixed by; None for a plain forward (eval, paused, without gradients, mixing off).
        kind: `mixed`, `training` (a training forward whose plan mixed nothing) or `plain`, for messages.
        outputs: weak references to its output tensors and the address of each one's storage. Logits are placed by
            that address (a view of an output shares it) while the output itself is alive: its storage cannot be
            freed and reused before, and the log keeps no tensor, nor the memory of one, alive.
    """

    plan: MixPlan | None
    kind: str
    outputs: tuple[tuple[weakref.ref, int], ...]

    def made(self, logits: Tensor) -> bool:
        pointer = _storage(logits)
        return any(ref() is not None and address == pointer for ref, address in self.outputs)


def _storage(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()  # host-side metadata: no device read


class ForwardLog:
    """The last few forwards of a mixed model, and the rule that finds the plan of a loss's logits."""

    def __init__(self) -> None:
        self.forwards: deque[LoggedForward] = deque(maxlen=_LOG_LENGTH)
        self.since_loss = 0  # forwards since the last loss or targets call

    def add(self, plan: MixPlan | None, output: Any) -> None:
        kind = "plain" if plan is None else ("mixed" if plan.mixed else "training")
        tensors = tuple((weakref.ref(t), _storage(t)) for t in output_tensors(output) if t.numel() > 0)
        self.forwards.append(LoggedForward(plan, kind, tensors))
        self.since_loss += 1

    def loss_computed(self) -> None:
        """A loss or targets were computed (for a forward found here, or for a plan given by hand)."""
        self.since_loss = 0

    def clear(self) -> None:
        self.forwards.clear()
        self.since_loss = 0

    def forward_of(self, logits: Tensor | None) -> LoggedForward | None:
        """The forward `logits` come from (None: no forward was seen, so nothing was mixed).

        Raises:
            ValueError: `logits` are no logged forward's output and several forwards ran since the last loss.
        """
        since, self.since_loss = self.since_loss, 0
        if torch.is_tensor(logits):
            for forward in reversed(self.forwards):
                if forward.made(logits):
                    return forward
        if not self.forwards:
            return None
        if since <= 1:
            return self.forwards[-1]
        self.since_loss = since  # nothing was resolved
        kinds = ", ".join(f.kind for f in list(self.forwards)[-since:])
        raise ValueError(
            f"HiddenMixer cannot tell which forward made these logits: they are not the output (or a view of it) of "
            f"a forward it saw, and {since} forwards ran since the last loss ({kinds}), so scoring them against one "
            "of their plans could pair mixed logits with unmixed targets. Pass the model's output tensor itself "
            "(outputs.logits), or take the plan right after the forward that made them and pass it: "
            "`plan = mixer.plan` then `mixer.loss(logits, labels, plan=plan)`."
        )


def output_tensors(output: Any) -> list[Tensor]:
    """The tensors a forward returned: `logits` if it has them, else every top-level tensor."""
    if torch.is_tensor(output):
        return [output]
    logits = output_logits(output)
    if logits is not None:
        return [logits]
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return [v for v in values if torch.is_tensor(v)]


def output_logits(output: Any) -> Tensor | None:
    """`output.logits` (a `ModelOutput` or dict), the first tensor of a tuple, or None."""
    if isinstance(output, dict):
        return output.get("logits")
    logits = getattr(output, "logits", None)
    if torch.is_tensor(logits):
        return logits
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    return None


def with_loss(output: Any, loss: Tensor) -> Any:
    """`output` with `loss` first, where a `transformers` model given labels puts it (`outputs.loss`, `outputs[0]`)."""
    if isinstance(output, dict):  # ModelOutput: rebuilt so that `loss` is its first field, as the model would make it
        return type(output)(**{"loss": loss, **{k: v for k, v in output.items() if k != "loss"}})
    if isinstance(output, tuple):
        return (loss, *output)
    raise TypeError(f"cannot put a loss into a model output of type {type(output).__name__}.")


def take_labels(params: list[str], args: tuple, kwargs: dict) -> tuple[tuple, dict, Any]:
    """`(args, kwargs, labels)` with `labels` taken out of the call (by keyword, or by position)."""
    labels = argument("labels", params, args, kwargs)
    if labels is None:
        return args, kwargs, None
    if "labels" in kwargs:
        return args, {k: v for k, v in kwargs.items() if k != "labels"}, labels
    args, kwargs = replace_argument("labels", params, args, kwargs, None)
    return args, kwargs, labels


__all__ = ["ForwardLog", "LoggedForward", "output_logits", "output_tensors", "take_labels", "with_loss"]
