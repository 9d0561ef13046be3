"""`MixConfig`: every knob of hiddenmix in one validated dataclass.

Names follow timm's `Mixup` where they mean the same thing (`mixup_alpha`, `cutmix_alpha`, `cutmix_minmax`,
`prob`, `switch_prob`, `mode`, `correct_lam`, `label_smoothing`, `num_classes`), so a timm user reads a config
without a glossary. The text-specific knobs (where to mix, padding policy, partner choice) are new.

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers", ICCV 2019.
    Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019.
    Chen et al., "MixText: Linguistically-Informed Interpolation of Hidden Space", ACL 2020 (TMix).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MODES = ("batch", "pair", "elem")
SITES = ("input", "embeddings", "hidden")
PAD_POLICIES = ("mix", "keep", "zero")
PARTNERS = ("random", "similar_length")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"MixConfig.{name}={value!r} is not allowed; choose one of {list(allowed)}.")


def _check_unit_interval(name: str, value: float, *, closed_right: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and 0.0 <= value and (value <= 1.0 if closed_right else value < 1.0)
    if not ok:
        right = "1]" if closed_right else "1)"
        raise ValueError(f"MixConfig.{name}={value!r} must be a number in [0, {right}.")


@dataclass
class MixConfig:
    """Everything that decides how a batch is mixed.

    Args:
        mixup_alpha: Mixup λ ~ Beta(α, α); `0` turns Mixup off.
        cutmix_alpha: CutMix λ ~ Beta(α, α); `0` turns CutMix off. On a sequence site a "box" is a contiguous
            span of tokens; on a ViT's patch tokens it is a box on the patch grid.
        cutmix_minmax: `(min, max)` share of each side taken by the CutMix box, sampled uniformly; overrides
            `cutmix_alpha`'s box size (as in timm). λ is then the realised area.
        prob: probability that a sample is mixed. In `batch` mode the draw is made once for the whole batch, in
            `pair` mode once per pair, in `elem` mode once per sample. Unmixed samples keep λ = 1.
        switch_prob: probability of CutMix rather than Mixup when both alphas are > 0.
        mode: `batch` (one λ and box for the batch), `pair` (partners swap: one λ and box per pair), `elem`
            (one λ, method and box per sample).
        correct_lam: replace a CutMix λ by the area actually pasted after clipping the box at the border.
        label_smoothing: smoothing applied to each label *before* mixing (0 turns it off).
        num_classes: number of classes; labels are checked against it. `None`: taken from the logits.
        problem_type: `single_label_classification`, `multi_label_classification` or `regression`, as in
            `transformers`' `config.problem_type`; `None` infers it from the model config or the labels.
        ignore_index: class id of rows to leave out of the loss (also when such a row is a partner).
        site: where to mix. `input` (pixel values), `embeddings` (the hidden states entering the first layer) or
            `hidden` (the output of a layer drawn from `layers`, manifold mixup).
        layers: 0-based indices of the layers whose output may be mixed (`k` is `hidden_states[k + 1]` of a
            `transformers` model; negatives count from the end); one is drawn per forward. `None`: all layers.
        layer_stack: dotted path of the model's layer list (e.g. `"bert.encoder.layer"`), when automatic
            discovery does not find it.
        pad_policy: what a position real in only one partner receives: `mix` (the other's pad state mixed in,
            as in TMix), `keep` (the real state kept whole) or `zero` (the pad state replaced by zeros).
        correct_lam_tokens: replace λ by the share of real-token content that comes from each sample.
        partner: `random` (a random derangement, or random pairs in `pair` mode) or `similar_length` (pairs of
            neighbours in a length-sorted order, so little padding is mixed in).
        fold_lam: use max(λ, 1 - λ), so each sample stays the major part of its own mix (TMix).
        seed: seed of hiddenmix's own random streams (offset by the process rank). `None`: derived from
            torch's global seed at first use.
        enabled: `False` makes every forward a plain forward.
    """

    mixup_alpha: float = field(default=0.4, metadata={"help": "Mixup λ ~ Beta(α, α); 0 turns Mixup off."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix λ ~ Beta(α, α); 0 turns CutMix off."})
    cutmix_minmax: list[float] | None = field(
        default=None, metadata={"help": "(min, max) box side share, sampled uniformly; overrides cutmix_alpha."}
    )
    prob: float = field(
        default=1.0, metadata={"help": "Probability that a sample (batch/pair in those modes) is mixed."}
    )
    switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix over Mixup when both are on."})
    mode: str = field(default="elem", metadata={"help": "batch | pair | elem: granularity of λ, method and box."})
    correct_lam: bool = field(default=True, metadata={"help": "λ := realised area of the clipped CutMix box."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing applied before mixing."})
    num_classes: int | None = field(default=None, metadata={"help": "Number of classes (checked against labels)."})
    problem_type: str | None = field(
        default=None, metadata={"help": "single_label_classification | multi_label_classification | regression."}
    )
    ignore_index: int = field(default=-100, metadata={"help": "Class id of rows left out of the loss."})
    site: str = field(default="hidden", metadata={"help": "input | embeddings | hidden: where to mix."})
    layers: list[int] | None = field(
        default=None, metadata={"help": "0-based layer indices whose output may be mixed; one drawn per forward."}
    )
    layer_stack: str | None = field(default=None, metadata={"help": "Dotted path of the layer list, if not found."})
    pad_policy: str = field(default="mix", metadata={"help": "mix | keep | zero: positions real in one partner."})
    correct_lam_tokens: bool = field(default=False, metadata={"help": "λ := share of real-token content."})
    partner: str = field(default="random", metadata={"help": "random | similar_length."})
    fold_lam: bool = field(default=False, metadata={"help": "λ := max(λ, 1 - λ) (TMix)."})
    seed: int | None = field(default=None, metadata={"help": "Seed of the mixing streams (offset by rank)."})
    enabled: bool = field(default=True, metadata={"help": "False: every forward is a plain forward."})

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"MixConfig.{name}={value!r} must be a finite number >= 0 (0 turns it off).")
        if self.cutmix_minmax is not None:
            mm = self.cutmix_minmax
            if not (isinstance(mm, Sequence) and len(mm) == 2 and all(isinstance(v, (int, float)) for v in mm)):
                raise ValueError(f"MixConfig.cutmix_minmax={mm!r} must be None or a pair (min, max).")
            lo, hi = float(mm[0]), float(mm[1])
            if not (0.0 < lo < hi <= 1.0):
                raise ValueError(f"MixConfig.cutmix_minmax={mm!r} must satisfy 0 < min < max <= 1.")
            self.cutmix_minmax = (lo, hi)
        _check_unit_interval("prob", self.prob)
        _check_unit_interval("switch_prob", self.switch_prob)
        _check_unit_interval("label_smoothing", self.label_smoothing, closed_right=False)
        _check_choice("mode", self.mode, MODES)
        _check_choice("site", self.site, SITES)
        _check_choice("pad_policy", self.pad_policy, PAD_POLICIES)
        _check_choice("partner", self.partner, PARTNERS)
        if self.problem_type is not None:
            _check_choice("problem_type", self.problem_type, PROBLEM_TYPES)
        if self.num_classes is not None and (
            isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise ValueError(f"MixConfig.num_classes={self.num_classes!r} must be None or an integer >= 1.")
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise ValueError(f"MixConfig.ignore_index={self.ignore_index!r} must be an integer.")
        if self.layers is not None:
            layers = self.layers
            if isinstance(layers, int) and not isinstance(layers, bool):
                layers = (layers,)
            if (
                isinstance(layers, (str, bytes))
                or not isinstance(layers, Sequence)
                or len(layers) == 0
                or not all(isinstance(k, int) and not isinstance(k, bool) for k in layers)
            ):
                raise ValueError(f"MixConfig.layers={self.layers!r} must be None or a non-empty list of integers.")
            if len(set(layers)) != len(layers):
                raise ValueError(f"MixConfig.layers={self.layers!r} lists a layer twice.")
            self.layers = tuple(layers)
        if self.layer_stack is not None and (not isinstance(self.layer_stack, str) or not self.layer_stack):
            raise ValueError(f"MixConfig.layer_stack={self.layer_stack!r} must be None or a dotted module path.")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"MixConfig.seed={self.seed!r} must be None or an integer >= 0.")
        for name in ("correct_lam", "correct_lam_tokens", "fold_lam", "enabled"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MixConfig.{name}={getattr(self, name)!r} must be True or False.")

    @property
    def mixup_on(self) -> bool:
        return self.mixup_alpha > 0

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    @property
    def active(self) -> bool:
        """Whether a training forward may mix anything at all."""
        return self.enabled and self.prob > 0 and (self.mixup_on or self.cutmix_on)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> MixConfig:
        """The mixing settings of the named recipe (`hiddenmix.RECIPES`), with `overrides` applied.

        A recipe may also set trainer options (RegMixup's `clean_loss_weight`): `MixupTrainer(recipe=name)` applies
        the whole recipe; `get_recipe(name).trainer_kwargs()` gives those options for a trainer of your own.
        """
        from .recipes import get_recipe

        return get_recipe(name).mix_config(**overrides)

    def replace(self, **changes: Any) -> MixConfig:
        """A validated copy with `changes` applied (unknown names raise)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"MixConfig has no field(s) {unknown}; known fields: {sorted(names)}.")
        return dataclasses.replace(self, **changes)
