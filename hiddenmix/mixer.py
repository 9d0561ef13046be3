"""`HiddenMixer`: Mixup, CutMix and manifold mixup inside a `transformers` model's own forward, through hooks.

One forward:
    model(**batch)
      entry pre-hook    draw ONE MixPlan (partners, λ, layer, boxes) on the batch's device; `input` site: mix pixels
      layer pre-hooks   `embeddings` site: mix the hidden states entering the first layer;
                        every layer after the mix: attention mask := mask OR mask[partner]
      layer hook        `hidden` site: mix the output of the drawn layer
    entry hook        the guard: a mixed plan that was never applied, or a later layer that never got the union of
                      the masks, is an error, never targets mixed over unmixed states
    logits -> mixer.loss(logits, labels): soft targets from the same plan

A model has at most one mixer. Nothing here reads a device value on the host: no `.item()`, no branch on a tensor.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._compat import check_on_device, in_backward
from .calls import TEXT_INPUTS, ForwardRecord, argument, base_model, read_call, unwrap_model
from .config import MixConfig
from .dense import DenseTargets, class_dim_of, is_dense
from .images import check_pixel_values
from .ops import mix_pixels
from .plan import MixPlan
from .sampler import PlanSampler
from .sites import MASK_ARGUMENTS, LayerStack, check_patch_cutmix, find_layer_stack, is_decoder_only, patch_grid
from .stack_hooks import StackHooks
from .targets import SoftTargets, mix_targets, mixup_loss

# every module of an attached mixer's model -> that mixer: a second mixer on the same model, on a part of it, or on a
# model that contains it would mix the same forward again
# (weak both ways: the hooks keep a mixer alive exactly as long as its model)
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()


def _attached_to(module: nn.Module) -> HiddenMixer | None:
    ref = _ATTACHED.get(module)
    return ref() if ref is not None else None


class MixingNotAppliedError(RuntimeError):
    """A training forward drew a mixed plan but did not apply it (or did not carry the union mask past it): the
    targets would be mixed over states that are not. The message names the model, the site and the layer path."""


class HiddenMixer:
    """Attach Mixup / CutMix / manifold mixup to a `transformers` model without editing it.

    ```python
    mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(2, 4, 6)))
    labels = batch.pop("labels")            # the model's own loss must never see soft labels
    logits = model(**batch).logits          # training forward: mixed inside the model
    loss = mixer.loss(logits, labels)       # soft targets from this forward's plan
    mixer.remove()                          # or use `with HiddenMixer(...) as mixer:`
    ```

    In eval mode (`model.training == False`), without gradients (`torch.no_grad()`, a validation loop that forgot
    `model.eval()`), with `config.enabled = False`, or inside `mixer.paused()`, a forward is exactly the plain
    forward. A model has one mixer at a time: attaching a second is an error that names the first
    (`HiddenMixer.of(model)` returns it).

    Args:
        model: a `transformers` model (`...ForSequenceClassification`, a bare encoder/decoder, an image model), or
            one wrapped by DDP, `torch.compile` or PEFT.
        config: the `MixConfig`; keyword `overrides` replace its fields.
    """

    def __init__(self, model: nn.Module, config: MixConfig | None = None, **overrides: Any) -> None:
        config = (config or MixConfig()).replace(**overrides) if overrides else (config or MixConfig())
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        entry = unwrap_model(model)
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
        self.last_forward = ForwardRecord()

        # Every check runs before the model is touched.
        self._is_text = any(name in self._entry_params for name in TEXT_INPUTS)
        self.decoder_only = self._is_text and is_decoder_only(base)
        model_config = getattr(base, "config", None)
        if getattr(model_config, "is_encoder_decoder", False) and config.site != "input":
            raise ValueError(
                f"{type(base).__name__} is an encoder-decoder: its decoder cross-attends to the encoder's states with "
                "each row's own padding mask, which the mixer does not reach, so mixed rows would hide the longer "
                "partner's content from the decoder. Mixing encoder-decoder models is not supported; use an "
                "encoder-only or decoder-only model."
            )
        attn = getattr(model_config, "_attn_implementation", None)
        if self._is_text and isinstance(attn, str) and "flash" in attn and config.site != "input":
            raise ValueError(
                f"{type(base).__name__} runs attn_implementation={attn!r}, which unpads the batch inside attention "
                "(and, in some models, between layers), so a per-row mix and the union of the padding masks cannot "
                "be carried through it. Load the model with attn_implementation='sdpa' or 'eager' to mix it."
            )
        self.stack: LayerStack | None = None
        self.layers: tuple[int, ...] = ()
        if config.site == "input":
            if "pixel_values" not in self._entry_params:
                raise ValueError(
                    f"MixConfig.site='input' mixes pixel_values, which {type(entry).__name__}.forward does not take. "
                    "Token ids are integers and are never interpolated; use site='embeddings' or site='hidden'."
                )
        else:
            self.stack = find_layer_stack(base, config.layer_stack, modality="text" if self._is_text else "image")
            self.layers = self.stack.resolve_layers(config.layers)
            self._stack_hooks = StackHooks(self.stack, self)
        self._check_cutmix_site(config)
        self.attach()

    # ------------------------------------------------------------------ public API
    @classmethod
    def of(cls, model: nn.Module) -> HiddenMixer | None:
        """The mixer attached to `model` (under any DDP / `torch.compile` / PEFT wrapper), or None."""
        return _attached_to(base_model(unwrap_model(model)))

    @property
    def plan(self) -> MixPlan | None:
        """The plan of the last training forward (None after an eval / paused forward)."""
        return self._plan

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def problem_type(self) -> str | None:
        """The problem type the targets are built for: the config's, else the model config's, else inferred."""
        return self.config.problem_type or getattr(getattr(self.model, "config", None), "problem_type", None)

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
        if not isinstance(plan, MixPlan):
            raise TypeError(f"use_plan takes a MixPlan; got {type(plan).__name__}.")
        if plan.site != self.config.site:
            raise ValueError(f"the plan is for site={plan.site!r} but this mixer mixes at site={self.config.site!r}.")
        if plan.site == "hidden" and plan.mixed and plan.layer not in self.layers:
            raise ValueError(
                f"the plan mixes after layer={plan.layer!r}, which is not one of this mixer's layers "
                f"{list(self.layers)}; build it with layer=<one of them>."
            )
        previous, self._forced = self._forced, plan
        try:
            yield
        finally:
            self._forced = previous

    def targets(self, labels: Tensor, plan: MixPlan | None = None) -> SoftTargets | DenseTargets:
        """Soft targets for `labels` under `plan` (default: the last training forward's plan); per-position
        `DenseTargets` for token tags `[B, T]` and label maps `[B, H, W]`."""
        plan = self._plan_for(labels, plan)
        return mix_targets(labels, plan, **self._target_kwargs(None, labels))

    def loss(self, logits: Tensor, labels: Tensor, plan: MixPlan | None = None) -> Tensor:
        """The soft-target loss of `logits` against `labels` mixed by `plan` (default: the last forward's).

        After an eval or paused forward (no plan) it is the plain loss: cross-entropy with label smoothing, BCE, or
        MSE, by `problem_type`. Dense labels (`[B, T]` tags with `[B, T, C]` logits, `[B, H, W]` label maps with
        `[B, C, h, w]` logits) get the per-position loss over the positions that count (`hiddenmix.dense`).
        """
        plan = self._plan_for(labels, plan)
        return mixup_loss(logits, labels, plan, **self._target_kwargs(logits, labels))

    def remove(self) -> None:
        """Remove every hook; the model is exactly as it was before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._plan = None
        for module in [m for m, ref in _ATTACHED.items() if ref() is self]:
            del _ATTACHED[module]

    def __enter__(self) -> HiddenMixer:
        return self

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
        cfg, model_cfg = self.config, getattr(self.model, "config", None)
        problem_type = self.problem_type()
        num_classes = cfg.num_classes
        if num_classes is None and problem_type != "regression":
            if logits is None:
                num_classes = getattr(model_cfg, "num_labels", None)
            else:
                num_classes = logits.shape[class_dim_of(logits, labels) if is_dense(labels) else -1]
        return dict(
            num_classes=num_classes,
            problem_type=problem_type,
            label_smoothing=cfg.label_smoothing,
            ignore_index=cfg.ignore_index,
        )

    def _plan_for(self, labels: Tensor, plan: MixPlan | None) -> MixPlan:
        plan = plan if plan is not None else self._plan
        if plan is None:
            return MixPlan.identity(labels.shape[0], labels.device, site=self.config.site)
        if plan is self._plan and plan.mixed and not self.last_forward.applied:
            raise MixingNotAppliedError(self._not_applied_message())
        return plan

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
            self._handles.append(self.entry.register_forward_hook(self._after_forward))
            self._handles.append(self.entry.register_forward_hook(self._end_forward, always_call=True))
            if self.stack is not None:
                self._handles.extend(self._stack_hooks.register())
        except Exception:
            self.remove()
            raise
        me = weakref.ref(self)
        for module in modules:
            _ATTACHED[module] = me

    # Drawing a plan uses generators torch.compile cannot trace: the entry hook runs eagerly, before the model's
    # forward, and the compiled layers only read the plan's tensors.
    @torch.compiler.disable
    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Entry pre-hook: draw this forward's plan (and mix pixels at the `input` site)."""
        self._plan = None
        self._active = False
        self.last_forward = ForwardRecord()
        if self.stack is not None:
            self._stack_hooks.reset()
        # a train-mode forward without gradients is not training (a validation loop that forgot model.eval())
        if self._paused or not self.config.enabled or not self.model.training or not torch.is_grad_enabled():
            return None
        cfg = self.config
        if cfg.site == "input":
            return self._mix_pixels(args, kwargs)
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
        elif plan.batch_size != call.batch:
            raise ValueError(
                f"the plan given to use_plan mixes a batch of {plan.batch_size}; this batch has {call.batch}."
            )
        self._plan = plan
        self._call_inputs = call
        self._active = True
        self.last_forward.mixed = plan.mixed
        return None

    # Eager like the pre-hook: it reads the record the compiled layers wrote, and raises.
    @torch.compiler.disable
    def _after_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Entry hook, after a forward that returned: the guard. A mixed plan must have been applied at its site,
        and every later layer that takes an attention mask must have received the union."""
        self._active = False
        record = self.last_forward
        if not record.mixed:
            return
        if not record.applied:
            raise MixingNotAppliedError(self._not_applied_message())
        token_mask = getattr(self._call_inputs, "token_mask", None)
        if record.calls_without_mask and token_mask is not None:
            # only a padded batch needs the union: the check is queued on the device, not read back
            check_on_device(
                token_mask.all(),
                f"{type(self.model).__name__}: {record.calls_without_mask} layer call(s) of {self.stack.path} after "
                "the mix take an attention mask but received none that hiddenmix could unite (it looks for "
                f"{list(MASK_ARGUMENTS)}), so the padding of mixed rows is not what the union should make it. "
                "Name the stack with MixConfig(layer_stack=...) if another list is the real one, or pass batches "
                "without padding.",
            )

    def _end_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._active = False  # also when the forward raised
        self._call_inputs = None  # the batch's masks are not kept past its forward
        if self.stack is not None:
            self._stack_hooks.reset()

    def layer_plan(self) -> MixPlan | None:
        """The plan the layer hooks apply: only inside the forward that drew it, or a backward recomputing it (so a
        direct call of a submodule, e.g. `model.bert(...)`, is never mixed by a stale plan)."""
        plan = self._plan
        if plan is None or not plan.mixed or not (self._active or in_backward()):
            return None
        return plan

    def _not_applied_message(self) -> str:
        where = {"input": "the pixel values", "embeddings": "the hidden states entering the first layer of"}
        if self.config.site == "hidden":
            what = f"the output of layer {self._plan.layer} of '{self.stack.path}'"
        else:
            what = where[self.config.site] + (f" '{self.stack.path}'" if self.stack is not None else "")
        return (
            f"HiddenMixer drew a mixed plan for a training forward of {type(self.model).__name__} (site="
            f"{self.config.site!r}) but never mixed {what}: that layer did not run as a module in this forward (its "
            "forward hooks never fired), so the targets would be mixed while the states are not. Name the layer "
            "list the model really calls with MixConfig(layer_stack='dotted.path'), or mix at another site."
        )

    def _mix_pixels(self, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixels = argument("pixel_values", self._entry_params, args, kwargs)
        if pixels is None:
            raise ValueError("MixConfig.site='input' needs pixel_values in the forward call.")
        check_pixel_values(pixels, num_channels=getattr(self.model.config, "num_channels", None))
        plan = self._forced or self.sampler.sample(pixels.shape[0], pixels.device, grid=tuple(pixels.shape[-2:]))
        if plan.batch_size != pixels.shape[0]:
            raise ValueError(
                f"the plan given to use_plan mixes a batch of {plan.batch_size}; this batch has {pixels.shape[0]}."
            )
        self._plan = plan
        if not plan.mixed:
            return None
        self._active = True
        mixed = mix_pixels(pixels, plan)
        self.last_forward = ForwardRecord(mixed=True, applied=True)
        if "pixel_values" in kwargs:
            return args, {**kwargs, "pixel_values": mixed}
        pos = self._entry_params.index("pixel_values")
        return (*args[:pos], mixed, *args[pos + 1 :]), kwargs
