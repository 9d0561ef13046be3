"""What a deep copy or a pickle of a model with a mixer attached gets.

The rule: **a deep copy of an attached model is a plain model**, with none of the mixer's hooks and no mixer
(`HiddenMixer.of(copy) is None`); attach a new mixer to the copy if it is to mix. EMA weights and mean teachers are
made with `copy.deepcopy(model)`, and neither should mix on its own: a teacher that must see the student's mix is
given the student's plan, not a second draw. Without this rule the copy's hooks would still be the original mixer's:
mixing the copy's forward with the original's plan, or failing inside it, and beyond the reach of `remove()`.

Pickling an attached model (`pickle.dumps(model)`, `torch.save(model)`) is refused with a message that says to
`remove()` the mixer first or to save the `state_dict()`: a mixer holds random generators and the hooks of one live
model, which have no meaning in another process.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator

from torch import nn

PICKLE_MESSAGE = (
    "a model with a HiddenMixer attached cannot be pickled: the mixer's hooks and random streams belong to this "
    "process's model. Call mixer.remove() first (or HiddenMixer.of(model).remove()), or save model.state_dict() / "
    "model.save_pretrained(...), which hold nothing of the mixer."
)
MIXER_COPY_MESSAGE = (
    "a HiddenMixer belongs to the one model it is attached to and is not copied: copy.deepcopy(model) gives a plain "
    "model; attach a new mixer to the copy (HiddenMixer(copy, mixer.config))."
)
# every dict of a module in which `register_forward_pre_hook` / `register_forward_hook` keep a hook or its flags
_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


class CopyWithoutHooks:
    """Set as `__deepcopy__` on each module a mixer hooks, so that `copy.deepcopy` of it (or of anything that holds
    it) copies it without the mixer's hooks.

    Args:
        module: the hooked module.
        hooked: returns every module the mixer hooks and the ids of its hook handles.
    """

    def __init__(self, module: nn.Module, hooked: Callable[[], tuple[list[nn.Module], set[int]]]) -> None:
        self._module = weakref.ref(module)
        self._hooked = hooked

    def __call__(self, memo: dict) -> nn.Module:
        modules, ids = self._hooked()
        with _hooks_set_aside(modules, ids):
            return copy.deepcopy(self._module(), memo)

    def __reduce__(self):
        raise TypeError(PICKLE_MESSAGE)


@contextlib.contextmanager
def _hooks_set_aside(modules: list[nn.Module], ids: set[int]) -> Iterator[None]:
    """Inside the block, `modules` hold none of the hooks `ids` and no `__deepcopy__` of their own; afterwards every
    hook dict is restored in its original order (other libraries' hooks keep their places)."""
    saved = []
    for module in modules:
        dicts = {name: getattr(module, name) for name in _HOOK_DICTS}
        copier = module.__dict__.get("__deepcopy__")
        saved.append((module, {name: list(d.items()) for name, d in dicts.items()}, copier))
        for d in dicts.values():
            for key in ids & d.keys():
                del d[key]
        module.__dict__.pop("__deepcopy__", None)
    try:
        yield
    finally:
        for module, items, copier in saved:
            for name, pairs in items.items():
                d = getattr(module, name)
                d.clear()
                d.update(pairs)
            if copier is not None:
                module.__dict__["__deepcopy__"] = copier


def mark_hooked(modules: list[nn.Module], hooked: Callable[[], tuple[list[nn.Module], set[int]]]) -> None:
    for module in modules:
        module.__dict__["__deepcopy__"] = CopyWithoutHooks(module, hooked)


def unmark(modules: list[nn.Module]) -> None:
    for module in modules:
        if isinstance(module.__dict__.get("__deepcopy__"), CopyWithoutHooks):
            del module.__dict__["__deepcopy__"]


__all__ = ["MIXER_COPY_MESSAGE", "PICKLE_MESSAGE", "CopyWithoutHooks", "mark_hooked", "unmark"]
