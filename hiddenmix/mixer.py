"""`HiddenMixer`: Mixup, CutMix and manifold mixup inside a `transformers` model's own forward, through hooks.

One forward:
    model(**batch)
      entry pre-hook    draw ONE MixPlan (partners, λ, layer, boxes) on the batch's device; `input` site: mix pixels
      layer pre-hooks   `embeddings` site: mix the hidden states entering the first layer;
                        every layer after the mix: attention mask := mask OR mask[partner]
      layer hook        `hidden` site: mix the output of the drawn layer
    logits -> mixer.loss(logits, labels): soft targets from the same plan

Nothing here reads a device value on the host: no `.item()`, no branch on a tensor.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._compat import check_on_device, in_backward
from .config import MixConfig
from .images import check_pixel_values
from .ops import mix_pixels, mix_sequence, union_attention_mask
from .plan import MixPlan
from .sampler import PlanSampler
from .sites import LayerStack, check_patch_cutmix, find_layer_stack, is_decoder_only, patch_grid, patch_token_weights
from .targets import SoftTargets, mix_targets, mixup_loss

_TEXT_INPUTS = ("input_ids", "inputs_embeds")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module the user's call reaches: strips DDP / DataParallel / `torch.compile` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _base_model(entry: nn.Module) -> nn.Module:
    """The `transformers` model under a PEFT wrapper (or the entry itself)."""
    get_base = getattr(entry, "get_base_model", None)
    return get_base() if callable(get_base) else entry


class HiddenMixer:
    """Attach Mixup / CutMix / manifold mixup to a `transformers` model without editing it.

    ```python
    mixer = HiddenMixer(model, MixConfig(site="hidden", layers=(2, 4, 6)))
    labels = batch.pop("labels")            # the model's own loss must never see soft labels
    logits = model(**batch).logits          # training forward: mixed inside the model
    loss = mixer.loss(logits, labels)       # soft targets from this forward's plan
    mixer.remove()                          # or use `with HiddenMixer(...) as mixer:`
    ```

    In eval mode (`model.training == False`), with `config.enabled = False`, or inside `mixer.paused()`, a forward
    is exactly the plain forward.

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
        base = _base_model(entry)
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
        self._call = 0
        self._union_cache: tuple[Tensor, Tensor | None] | None = None  # (mask, its union) of this forward

        # Every check runs before the model is touched.
        self._is_text = self._takes_text(entry)
        self.decoder_only = self._is_text and is_decoder_only(base)
        self.stack: LayerStack | None = None
        self.layers: tuple[int, ...] = ()
        if config.site == "input":
            if "pixel_values" not in self._entry_params:
                raise ValueError(
                    f"MixConfig.site='input' mixes pixel_values, which {type(entry).__name__}.forward does not take. "
                    "Token ids are integers and are never interpolated; use site='embeddings' or site='hidden'."
                )
        else:
            self.stack = find_layer_stack(base, config.layer_stack)
            self.layers = self.stack.resolve_layers(config.layers)
        self._check_cutmix_site(config)
        self.attach()

    # ------------------------------------------------------------------ public API
    @property
    def plan(self) -> MixPlan | None:
        """The plan of the last training forward (None after an eval / paused forward)."""
        return self._plan

    @property
    def attached(self) -> bool:
        return bool(self._handles)

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

    def targets(self, labels: Tensor, plan: MixPlan | None = None) -> SoftTargets:
        """Soft targets for `labels` under `plan` (default: the last training forward's plan)."""
        plan = self._plan_for(labels, plan)
        return mix_targets(labels, plan, **self._target_kwargs(None))

    def loss(self, logits: Tensor, labels: Tensor, plan: MixPlan | None = None) -> Tensor:
        """The soft-target loss of `logits` against `labels` mixed by `plan` (default: the last forward's).

        After an eval or paused forward (no plan) it is the plain loss: cross-entropy with label smoothing, BCE, or
        MSE, by `problem_type`.
        """
        plan = self._plan_for(labels, plan)
        return mixup_loss(logits, labels, plan, **self._target_kwargs(logits))

    def remove(self) -> None:
        """Remove every hook; the model is exactly as it was before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._plan = None
        self._union_cache = None

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
    @staticmethod
    def _takes_text(entry: nn.Module) -> bool:
        params = inspect.signature(entry.forward).parameters
        return any(name in params for name in _TEXT_INPUTS)

    def _target_kwargs(self, logits: Tensor | None) -> dict:
        cfg, model_cfg = self.config, getattr(self.model, "config", None)
        problem_type = cfg.problem_type or getattr(model_cfg, "problem_type", None)
        num_classes = cfg.num_classes
        if num_classes is None and problem_type != "regression":
            num_classes = logits.shape[-1] if logits is not None else getattr(model_cfg, "num_labels", None)
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
        return plan

    def attach(self) -> None:
        """Register the hooks (done by the constructor; call again after `remove()` to re-attach)."""
        if self._handles:
            return
        try:
            self._handles.append(self.entry.register_forward_pre_hook(self._on_forward, with_kwargs=True))
            self._handles.append(self.entry.register_forward_hook(self._after_forward, always_call=True))
            if self.stack is not None:
                for i, layer in enumerate(self.stack.modules):
                    self._handles.append(
                        layer.register_forward_pre_hook(self._make_layer_pre_hook(i), with_kwargs=True)
                    )
                    self._handles.append(layer.register_forward_hook(self._make_layer_hook(i)))
        except Exception:
            self.remove()
            raise

    def _argument(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name in kwargs:
            return kwargs[name]
        if name in self._entry_params:
            pos = self._entry_params.index(name)
            if pos < len(args):
                return args[pos]
        return None

    # Drawing a plan uses generators torch.compile cannot trace: the entry hook runs eagerly, before the model's
    # forward, and the compiled layers only read the plan's tensors.
    @torch.compiler.disable
    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Entry pre-hook: draw this forward's plan (and mix pixels at the `input` site)."""
        self._plan = None
        self._active = False
        self._call = 0
        self._union_cache = None
        if self._paused or not self.config.enabled or not self.model.training:
            return None
        cfg = self.config
        if cfg.site == "input":
            return self._mix_pixels(args, kwargs)

        input_ids = self._argument("input_ids", args, kwargs)
        embeds = self._argument("inputs_embeds", args, kwargs)
        reference = input_ids if input_ids is not None else embeds
        if reference is None:
            reference = self._argument("pixel_values", args, kwargs)
        if reference is None:
            raise ValueError(
                f"{type(module).__name__} was called without input_ids, inputs_embeds or pixel_values; "
                "hiddenmix needs one of them to size the plan."
            )
        if not self._is_text:
            check_pixel_values(reference, num_channels=getattr(self.model.config, "num_channels", None))
        batch = reference.shape[0]
        token_mask = None
        seq_len = None
        if self._is_text and reference.dim() >= 2:
            seq_len = reference.shape[1]
            mask = self._argument("attention_mask", args, kwargs)
            if mask is not None:
                if mask.dim() != 2 or tuple(mask.shape) != (batch, seq_len):
                    raise ValueError(
                        f"hiddenmix needs a 2D attention_mask of shape {(batch, seq_len)}; got {tuple(mask.shape)}."
                    )
                token_mask = mask.bool()
                if self.decoder_only:
                    check_on_device(
                        token_mask[:, -1],
                        f"{type(self.model).__name__} pools the last token, which must see both partners' content: "
                        "pad on the left (tokenizer.padding_side = 'left') so every sequence ends at the last "
                        "position.",
                    )
        plan = self._forced
        if plan is None:
            grid = (1, seq_len) if (cfg.cutmix_on and seq_len is not None) else None
            if cfg.cutmix_on and not self._is_text:  # patch-token CutMix: boxes on the patch grid of this batch
                grid = patch_grid(self.model.config, tuple(reference.shape[-2:]))
            plan = self.sampler.sample(
                batch, reference.device, layers=self.layers, token_mask=token_mask, grid=grid, sequence_length=seq_len
            )
        elif plan.batch_size != batch:
            raise ValueError(f"the plan given to use_plan mixes a batch of {plan.batch_size}; this batch has {batch}.")
        self._plan = plan
        self._active = True
        return None

    def _after_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._active = False

    def _layer_plan(self) -> MixPlan | None:
        """The plan layer hooks apply: only inside the forward that drew it, or a backward recomputing it (so a
        direct call of a submodule, e.g. `model.bert(...)`, is never mixed by a stale plan)."""
        plan = self._plan
        if plan is None or not plan.mixed or not (self._active or in_backward()):
            return None
        return plan

    def _mix_pixels(self, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixels = self._argument("pixel_values", args, kwargs)
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
        if "pixel_values" in kwargs:
            return args, {**kwargs, "pixel_values": mixed}
        pos = self._entry_params.index("pixel_values")
        return (*args[:pos], mixed, *args[pos + 1 :]), kwargs

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
        if weights is None and pastes and plan.grid is not None and plan.grid[0] > 1:
            weights = patch_token_weights(plan, hidden.shape[1])  # ViT-family: a box / FMix mask on the patch grid
        if weights is None:  # plan without per-token weights (given by hand): per-sample λ
            weights = plan.lam[:, None].expand(hidden.shape[0], hidden.shape[1])
        if hidden.dim() < 3 or tuple(hidden.shape[:2]) != tuple(weights.shape):
            raise ValueError(
                f"layer output of shape {tuple(hidden.shape)} does not match the plan's [batch, tokens] = "
                f"{tuple(weights.shape)}: this layer changes the sequence length or batch layout, so the union "
                "mask cannot be carried past it. Choose other layers (MixConfig.layers)."
            )
        return mix_sequence(hidden, plan.index, weights, plan.token_mask, self.config.pad_policy)

    def _make_layer_pre_hook(self, module_index: int):
        stack = self.stack

        def pre_hook(module: nn.Module, args: tuple, kwargs: dict):
            plan = self._layer_plan()
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
            if embeddings and call == 0:
                name = stack.hidden_argument
                if name in kwargs:
                    kwargs[name] = self._mix_hidden(kwargs[name], plan)
                else:
                    args[0] = self._mix_hidden(args[0], plan)
            for name, pos in stack.mask_positions.items():
                if name in kwargs:
                    kwargs[name] = self._union(kwargs[name], plan)
                elif 0 <= pos < len(args):
                    args[pos] = self._union(args[pos], plan)
            return tuple(args), kwargs

        return pre_hook

    def _make_layer_hook(self, module_index: int):
        stack = self.stack

        def hook(module: nn.Module, args: tuple, output: Any):
            plan = self._layer_plan()
            if plan is None or plan.site != "hidden":
                return None
            call = module_index if not stack.shared else self._call - 1
            if call != plan.layer:
                return None
            if torch.is_tensor(output):
                return self._mix_hidden(output, plan)
            if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
                return type(output)([self._mix_hidden(output[0], plan), *output[1:]])
            raise TypeError(
                f"{type(module).__name__} returned {type(output).__name__}; hiddenmix mixes a layer output that is a "
                "tensor or a tuple starting with the hidden states."
            )

        return hook
