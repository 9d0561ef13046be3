"""The private torch APIs hiddenmix relies on, in one place.

Each is private because torch offers no public way to do the same thing without a host-device synchronisation
(or, for the gamma draw, without giving up a seeded generator). `tests/test_compat.py` checks each one's behaviour,
so a torch release that changes or removes one fails there, by name, rather than somewhere inside a forward.
"""

from __future__ import annotations

import torch
from torch import Tensor


def in_backward() -> bool:
    """True while autograd runs a backward pass, where gradient checkpointing may re-run layer forwards.

    `torch._C._current_graph_task_id()` is -1 outside a backward; there is no public equivalent.
    """
    return torch._C._current_graph_task_id() != -1


def standard_gamma(concentration: Tensor, generator: torch.Generator) -> Tensor:
    """Gamma(concentration, 1) draws from `generator`, on `concentration`'s device.

    `torch.distributions.Gamma` / `Beta` take no generator; `torch._standard_gamma` (their kernel) does.
    """
    return torch._standard_gamma(concentration, generator=generator)


def assert_on_device(condition: Tensor, message: str) -> None:
    """Fail the step with `message` where `condition` (a 0-dim bool tensor) is False, without waiting for it.

    `torch._assert_async` queues the check on the device: the host never reads the value, so there is no
    synchronisation; the error surfaces at the device's next synchronisation point.
    """
    torch._assert_async(condition, message)


def check_on_device(ok: Tensor, message: str) -> None:
    """Raise `ValueError(message)` unless every element of `ok` holds; without a host-device sync off the CPU.

    On the CPU reading the value is free and the error is a plain `ValueError`. Elsewhere reading it would stall the
    device queue, so the check is queued on the device (`assert_on_device`) and fails the step there.
    """
    if ok.device.type == "cpu":
        if not bool(ok.all()):
            raise ValueError(message)
    else:
        assert_on_device(ok.all(), message)


__all__ = ["assert_on_device", "check_on_device", "in_backward", "standard_gamma"]
