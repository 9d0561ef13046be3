"""`HiddenMixer`: Mixup, CutMix and manifold mixup inside a `transformers` model's own forward, through hooks.

One forward:
    model(**batch)
      entry pre-hook    draw ONE MixPlan (partners, λ, layer, boxes) on the batch's device; `input` site: mix pixels
      layer pre-hooks   `embeddings` site: mix the hidden states entering the first layer;
                        every layer after the mix: attention mask := mask OR mask[partner]
      layer hook        `hidden` site: mix the output of the drawn layer
    entry hook        the guard: a mixed plan that was never applied, or a later layer that never got the union of
                      the masks, is an error, never targets mixed over unmixed states; the forward is logged with
                      its plan, and labels given to the call (taken out before the model saw them) give outputs.loss
    logits -> mixer.loss(logits, labels): soft targets from the plan of the forward that made these logits

A model has at most one mixer. Nothing here reads a device value on the host: no `.item()`, no branch on a tensor.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._compat import in_backward
from .calls import TEXT_INPUTS, ForwardRecord, argument, base_model, read_call, replace_argument, wrappers_of
from .config import MixConfig
from .copies import MIXER_COPY_MESSAGE, PICKLE_MESSAGE, mark_hooked, unmark
from .dense import DenseTargets
from .forwards import ForwardLog, output_logits, take_labels, with_loss
from .guard import (
    MixingNotAppliedError,
    check_batch,
    check_forward,
    check_given_plan,
    check_model,
    eval_mode_warning,
)
from .images import check_pixel_values
from .ops import mix_pixels
from .plan import MixPlan
from .sampler import PlanSampler
from .sites import LayerStack, check_patch_cutmix, find_layer_stack, is_decoder_only, patch_grid
from .stack_hooks import StackHooks
from .targets import SoftTargets, counted_labels, mix_targets, mixup_loss, target_options

# every module of an attached mixer's model -> that mixer: a second mixer on the same model, on a part of it, or on a
# model that contains it would mix the same forward again
# (weak both ways: the hooks keep a mixer alive exactly as long as its model)
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()


def _attached_to(module: nn.Module) -> HiddenMixer | None:
    ref = _ATTACHED.get(module)
    return ref() if ref is not None else None


class HiddenMixer:
    """Attach Mixup / CutMix / manifold mixup to a `transformers` model without editing it.

    ```python
    mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(2, 4, 6)))
    outputs = model(**batch)                # training forward, mixed inside the model; batch holds "labels"
    outputs.loss.backward()                 # the soft-target loss of this forward's plan
    # or: labels = batch.pop("labels"); loss = mixer.loss(model(**batch).logits, labels)
    mixer.remove()                          # or use `with HiddenMixer(...) as mixer:`
    ```

    The loss follows the logits: `mixer.loss(logits, labels)` uses the plan of the forward that made `logits`,
    whatever ran in between (`hiddenmix.forwards`); a training forward given `labels` returns it as `outputs.loss`.
    The problem type is the one declared in `MixConfig.problem_type` or the model's config when the mixer is
    attached, else read from the labels' form; the mixer never re-reads the model's config.

    In eval mode (`model.training == False`), without gradients (`torch.no_grad()`, a validation loop that forgot
    `model.eval()`), with `config.enabled = False`, or inside `mixer.paused()`, a forward is exactly the plain
    forward. A forward with gradients in eval mode (`from_pretrained` returns the model in eval mode: a forgotten
    `model.train()`) warns once per mixer that nothing was mixed. A model has one mixer at a time: attaching a
    second is an error that names the first (`HiddenMixer.of(model)` returns it). `copy.deepcopy` of an attached
    model gives a plain model (`hiddenmix.copies`); pickling one is refused.

    Args:
        model: a `transformers` model (`...ForSequenceClassification`, a bare encoder/decoder, an image model), or
            one wrapped by DDP, `torch.compile` or PEFT.
        config: the `MixConfig`; keyword `overrides` replace its fields.
    """

    def __init__(self, model: nn.Module, config: MixConfig | None = None, **overrides: Any) -> None:
        config = (config or MixConfig()).replace(**overrides) if overrides else (config or MixConfig())
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        *self._wrappers, entry = wrappers_of(model)  # a deep copy of a wrapper is marked too (`hiddenmix.copies`)
        base = base_model(entry)
        self.config = config
        self.entry = entry
        self.model = base
        self.sampler = PlanSampler(config)
        self._entry_params = list(inspect.signature(entry.forward).parameters)
        self._plan: MixPlan | None = None
        self._forced: MixPlan | None = None
        self._paused = False
        self._active = False  # True from the entry pre-hook to the end of that forward
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._call_inputs = None  # what the forward that drew the plan was called with
        self._labels: tuple[Tensor, Any] | None = None  # labels taken out of this forward's call, num_items_in_batch
        self._warned_eval = False
        self.forwards = ForwardLog()
        self.last_forward = ForwardRecord()

        # Every check runs before the model is touched.
        self._is_text = any(name in self._entry_params for name in TEXT_INPUTS)
        self.decoder_only = self._is_text and is_decoder_only(base)
        model_config = getattr(base, "config", None)
        # decided once, from what the user declared: a model's own loss in evaluation writes `problem_type` into its
        # config (float labels), which must not switch the training loss in the middle of a run
        self._declared_problem_type = config.problem_type or getattr(model_config, "problem_type", None)
        check_model(base, config.site, is_text=self._is_text, entry_params=self._entry_params)
        self.stack: LayerStack | None = None
        self.layers: tuple[int, ...] = ()
        if config.site != "input":
            self.stack = find_layer_stack(base, config.layer_stack, modality="text" if self._is_text else "image")
            self.layers = self.stack.resolve_layers(config.layers)
            self._stack_hooks = StackHooks(self.stack, self)
        self._check_cutmix_site(config)
        self.attach()

    # ------------------------------------------------------------------ public API
    @classmethod
    def of(cls, model: nn.Module) -> HiddenMixer | None:
        """The mixer attached to `model` (under any DDP / `torch.compile` / PEFT wrapper), or None."""
        return _attached_to(base_model(wrappers_of(model)[-1]))

    @property
    def plan(self) -> MixPlan | None:
        """The plan of the last training forward (None after an eval / paused forward)."""
        return self._plan

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def problem_type(self) -> str | None:
        """The declared problem type (`MixConfig`'s, else the model config's at attach); None: each batch's labels'
        form says (class ids or probability rows: single-label; float values: regression)."""
        return self._declared_problem_type

    @property
    def active(self) -> bool:
        """True inside a training forward that drew a mixed plan (from its entry pre-hook to its end)."""
        return self._active

    def set_config(self, config: MixConfig) -> None:
        """Swap the config (e.g. a schedule); the site and layers must stay those the hooks were built for."""
        if config.site != self.config.site or config.layers != self.config.layers:
            raise ValueError(
                f"set_config cannot move the site ({self.config.site!r}, layers={self.config.layers}) to "
                f"({config.site!r}, layers={config.layers}); remove this mixer and attach a new one."
            )
        self._check_cutmix_site(config)
        if config.problem_type != self.config.problem_type:
            self._declared_problem_type = config.problem_type or self._declared_problem_type
        self.config = config
        self.sampler.config = config

    def _check_cutmix_site(self, config: MixConfig) -> None:
        # ViT-family CutMix draws boxes on the patch grid; checked when it can mix (a disabled no-mix baseline
        # on, say, Swin is not refused for a CutMix it never does)
        if config.enabled and config.cutmix_on and not self._is_text and config.site != "input":
            check_patch_cutmix(getattr(self.model, "config", None), config.site)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Forwards inside the block are plain forwards (no plan drawn, nothing mixed)."""
        previous, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = previous

    @contextlib.contextmanager
    def use_plan(self, plan: MixPlan) -> Iterator[None]:
        """Training forwards inside the block use `plan` instead of drawing one (tests, hand-made mixes).

        The plan must be for this mixer's site (and, at the `hidden` site, name one of its layers); its batch size
        is checked at each forward.
        """
        check_given_plan(plan, self.config.site, self.layers)
        previous, self._forced = self._forced, plan
        try:
            yield
        finally:
            self._forced = previous

    def targets(self, labels: Tensor, plan: MixPlan | None = None) -> SoftTargets | DenseTargets:
        """Soft targets for `labels` under `plan` (default: the plan of the one forward run since the last loss);
        per-position `DenseTargets` for token tags `[B, T]` and label maps `[B, H, W]`."""
        plan = self._plan_for(labels, plan, None)
        return mix_targets(labels, plan, **self._target_kwargs(None, labels))

    def loss(self, logits: Tensor, labels: Tensor, plan: MixPlan | None = None) -> Tensor:
        """The soft-target loss of `logits` against `labels` mixed by `plan` (default: the plan of the forward that
        made `logits`; see `hiddenmix.forwards`).

        Logits of a plain forward (eval, paused, no gradients, mixing off) get the plain loss: cross-entropy with
        label smoothing, BCE, or MSE, by problem type. Dense labels (`[B, T]` tags with `[B, T, C]` logits,
        `[B, H, W]` label maps with `[B, C, h, w]` logits) get the per-position loss over the positions that count
        (`hiddenmix.dense`). `MixupTrainer` and `outputs.loss` compute their losses with this method.

        Raises:
            ValueError: `logits` are no output of a forward the mixer saw and several forwards ran since the last
                loss (pass `plan=`); labels that do not fit the logits or the problem type.
        """
        plan = self._plan_for(labels, plan, logits)
        return mixup_loss(logits, labels, plan, **self._target_kwargs(logits, labels))

    def remove(self) -> None:
        """Remove every hook; the model is exactly as it was before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        unmark(self._hooked_modules())
        self.forwards.clear()
        self._plan = None
        for module in [m for m, ref in _ATTACHED.items() if ref() is self]:
            del _ATTACHED[module]

    def __enter__(self) -> HiddenMixer:
        return self

    def __reduce__(self):
        raise TypeError(PICKLE_MESSAGE)

    def __deepcopy__(self, memo: dict) -> HiddenMixer:
        raise TypeError(MIXER_COPY_MESSAGE)

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def state_dict(self) -> dict:
        """The mixing random streams, for resuming training with the same sequence of plans."""
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def __repr__(self) -> str:
        where = self.config.site
        if self.stack is not None:
            where += f" @ {self.stack.path}, layers={list(self.layers)}"
        return f"HiddenMixer({type(self.model).__name__}, {where}, attached={self.attached})"

    # ------------------------------------------------------------------ internals
    def _target_kwargs(self, logits: Tensor | None, labels: Tensor) -> dict:
        return target_options(
            self.config,
            self.problem_type(),
            logits,
            labels,
            getattr(getattr(self.model, "config", None), "num_labels", None),
        )

    def _plan_for(self, labels: Tensor, plan: MixPlan | None, logits: Tensor | None) -> MixPlan:
        if plan is None:
            forward = self.forwards.forward_of(logits)
            plan = forward.plan if forward is not None else None
        self.forwards.loss_computed()
        if plan is None:
            return MixPlan.identity(labels.shape[0], labels.device, site=self.config.site)
        if plan is self._plan and plan.mixed and not self.last_forward.applied:
            self._check_applied()  # raises MixingNotAppliedError
        return plan

    def _hooked_modules(self) -> list[nn.Module]:
        return [*self._wrappers, self.entry, *(self.stack.modules if self.stack is not None else ())]

    def _hooked(self) -> tuple[list[nn.Module], set[int]]:
        return self._hooked_modules(), {handle.id for handle in self._handles}

    def attach(self) -> None:
        """Register the hooks (done by the constructor; call again after `remove()` to re-attach)."""
        if self._handles:
            return
        modules = list(self.entry.modules())
        other = next((m for m in map(_attached_to, modules) if m is not None and m is not self), None)
        if other is not None:
            raise ValueError(
                f"{type(self.model).__name__} already has {other!r} (on it, or on a part of it): a second mixer would "
                "mix the same forward again with other partners and λ, and each one's targets would miss the other's "
                "mix. Remove it first (HiddenMixer.of(model).remove()), or change it with set_config()."
            )
        try:
            self._handles.append(self.entry.register_forward_pre_hook(self._on_forward, with_kwargs=True))
            self._handles.append(self.entry.register_forward_hook(self._after_forward, with_kwargs=True))
            self._handles.append(self.entry.register_forward_hook(self._end_forward, always_call=True))
            if self.stack is not None:
                self._handles.extend(self._stack_hooks.register())
        except Exception:
            self.remove()
            raise
        me = weakref.ref(self)
        for module in modules:
            _ATTACHED[module] = me
        mark_hooked(self._hooked_modules(), lambda: me()._hooked())

    # Drawing a plan uses generators torch.compile cannot trace: the entry hook runs eagerly, before the model's
    # forward, and the compiled layers only read the plan's tensors.
    @torch.compiler.disable
    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Entry pre-hook: draw this forward's plan (and mix pixels at the `input` site)."""
        self._plan = None
        self._active = False
        self._labels = None
        self.last_forward = ForwardRecord()
        if self.stack is not None:
            self._stack_hooks.reset()
        # a train-mode forward without gradients is not training (a validation loop that forgot model.eval())
        if self._paused or not self.config.enabled or not self.model.training or not torch.is_grad_enabled():
            if not self.model.training and torch.is_grad_enabled() and not self._paused and self.config.active:
                self._warn_eval_mode()
            return None
        cfg = self.config
        if cfg.site == "input":
            args, kwargs = self._mix_pixels(args, kwargs)
            return self._take_labels(args, kwargs)
        name = type(self.model).__name__
        call = read_call(
            name, self._entry_params, args, kwargs, is_text=self._is_text, decoder_only=self.decoder_only,
            num_channels=getattr(self.model.config, "num_channels", None),
        )  # fmt: skip
        plan = self._forced
        if plan is None:
            grid = (1, call.sequence_length) if (cfg.cutmix_on and call.sequence_length is not None) else None
            if cfg.cutmix_on and not self._is_text:  # patch-token CutMix: boxes on the patch grid of this batch
                grid = patch_grid(self.model.config, call.image_shape)
            plan = self.sampler.sample(
                call.batch, call.device, layers=self.layers, token_mask=call.token_mask, grid=grid,
                sequence_length=call.sequence_length,
            )  # fmt: skip
        self._plan = check_batch(plan, call.batch)
        self._call_inputs = call
        self._active = True
        self.last_forward.mixed = plan.mixed
        return self._take_labels(args, kwargs)

    def _take_labels(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # The model must not compute its own loss of a mixed forward: the hard-label loss over mixed states (and, for
        # float labels, a switch to BCE that it writes into its config). `_after_forward` puts this plan's loss there.
        args, kwargs, labels = take_labels(self._entry_params, args, kwargs)
        if torch.is_tensor(labels):
            self._labels = (labels, kwargs.get("num_items_in_batch"))
        return args, kwargs

    def _warn_eval_mode(self) -> None:
        if not self._warned_eval:
            self._warned_eval = True
            warnings.warn(eval_mode_warning(type(self.model).__name__), stacklevel=3)

    # Eager like the pre-hook: it reads the record the compiled layers wrote, and raises.
    @torch.compiler.disable
    def _after_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        """Entry hook, after a forward that returned: the guard (a mixed plan must have been applied at its site, and
        every later layer that takes an attention mask must have received the union), then the forward is logged
        for the loss of its logits and, if the call had labels, its soft-target loss becomes `outputs.loss`."""
        self._active = False
        self.forwards.add(self._plan, output)  # first: a caller that goes on after the guard's error is refused too
        self._check_applied()
        if self._labels is None:
            return None
        (labels, num_items), self._labels = self._labels, None
        logits = output_logits(output)
        if logits is None:
            raise ValueError(
                f"{type(self.model).__name__} was given labels in a mixed training forward, but its output holds no "
                "logits for hiddenmix to compute the soft-target loss from. Call it without labels and compute the "
                "loss with mixer.loss(<the output to score>, labels)."
            )
        loss = self.loss(logits, labels, plan=self._plan)
        if num_items is not None:  # `Trainer` normalises by the labelled items of the whole accumulated batch
            loss = loss * counted_labels(labels, self.config.ignore_index) / num_items
        return with_loss(output, loss)

    def _check_applied(self) -> None:
        check_forward(
            self.last_forward, getattr(self._call_inputs, "token_mask", None), model_name=type(self.model).__name__,
            site=self.config.site, layer=getattr(self._plan, "layer", None),
            stack_path=self.stack.path if self.stack is not None else None,
        )  # fmt: skip

    def _end_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._active = False  # also when the forward raised
        self._call_inputs = self._labels = None  # the batch's masks and labels are not kept past its forward
        if self.stack is not None:
            self._stack_hooks.reset()

    def layer_plan(self) -> MixPlan | None:
        """The plan the layer hooks apply: only inside the forward that drew it, or a backward recomputing it (so a
        direct call of a submodule, e.g. `model.bert(...)`, is never mixed by a stale plan)."""
        plan = self._plan
        if plan is None or not plan.mixed or not (self._active or in_backward()):
            return None
        return plan

    def _mix_pixels(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        pixels = argument("pixel_values", self._entry_params, args, kwargs)
        if pixels is None:
            raise ValueError("MixConfig.site='input' needs pixel_values in the forward call.")
        check_pixel_values(pixels, num_channels=getattr(self.model.config, "num_channels", None))
        plan = self._forced or self.sampler.sample(pixels.shape[0], pixels.device, grid=tuple(pixels.shape[-2:]))
        self._plan = check_batch(plan, pixels.shape[0])
        if not plan.mixed:
            return args, kwargs
        self._active = True
        self.last_forward = ForwardRecord(mixed=True, applied=True)
        return replace_argument("pixel_values", self._entry_params, args, kwargs, mix_pixels(pixels, plan))


__all__ = ["HiddenMixer", "MixingNotAppliedError"]
