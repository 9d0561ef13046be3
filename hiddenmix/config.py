"""`MixConfig`: every knob of hiddenmix in one validated dataclass.

The mixing options (`MixOptions`) are shared, under the same names, with `MixupTrainingArguments`, the
`TrainingArguments` of `MixupTrainer`; `MixConfig` adds the two that `TrainingArguments` already holds under its own
names (`label_smoothing` is its `label_smoothing_factor`, `seed` its `seed`).

Names follow timm's `Mixup` where they mean the same thing (`mixup_alpha`, `cutmix_alpha`, `cutmix_minmax`,
`prob`, `switch_prob`, `mode`, `correct_lam`, `label_smoothing`, `num_classes`), so a timm user reads a config
without a glossary. The text-specific knobs (where to mix, padding policy, partner choice) are new.

References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers", ICCV 2019.
    Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019.
    Chen et al., "MixText: Linguistically-Informed Interpolation of Hidden Space", ACL 2020 (TMix).
    Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv:2002.12047, 2020.
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
CUTMIX_MASKS = ("box", "fmix")


def _fail(owner: str, name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{owner}.{name}={value!r} is not allowed; {allowed}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class MixOptions:
    """The mixing options, under the same names in `MixConfig` and in `MixupTrainingArguments`.

    Args:
        mixup_alpha: Mixup λ ~ Beta(α, α); `0` turns Mixup off.
        cutmix_alpha: CutMix λ ~ Beta(α, α); `0` turns CutMix off. On a sequence site a "box" is a contiguous
            span of tokens; on a ViT's patch tokens it is a box on the patch grid.
        cutmix_minmax: `(min, max)` share of each side taken by the CutMix box, sampled uniformly; overrides
            `cutmix_alpha`'s box size (as in timm). λ is then the realised area.
        cutmix_mask: the shape of what CutMix pastes: `box` (a rectangle, or a token span) or `fmix` (FMix: the
            pixels of highest value in a random low-frequency image, one or a few smooth blobs of exactly the
            drawn area).
        fmix_decay_power: δ of FMix's spectrum decay `1 / f^δ`; larger makes smoother, rounder blobs.
        prob: probability that a sample is mixed. In `batch` mode the draw is made once for the whole batch, in
            `pair` mode once per pair, in `elem` mode once per sample. Unmixed samples keep λ = 1.
        switch_prob: probability of CutMix rather than Mixup when both are on.
        mode: `batch` (one λ and box for the batch), `pair` (partners swap: one λ and box per pair), `elem`
            (one λ, method and box per sample).
        correct_lam: replace a CutMix λ by the area actually pasted after clipping the box at the border.
        num_classes: number of classes; labels are checked against it. `None`: taken from the logits.
        problem_type: `single_label_classification`, `multi_label_classification` or `regression`, as in
            `transformers`' `config.problem_type`; `None` infers it from the model config or the labels.
        ignore_index: label of rows (or, for dense labels, positions) left out of the loss, also where such a row
            or position is a partner.
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
        fold_lam: use max(λ, 1 - λ), so each sample stays the major part of its own mix.
        enabled: `False` makes every forward a plain forward.
    """

    mixup_alpha: float = field(default=0.4, metadata={"help": "Mixup λ ~ Beta(α, α); 0 turns Mixup off."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix λ ~ Beta(α, α); 0 turns CutMix off."})
    cutmix_minmax: list[float] | None = field(
        default=None, metadata={"help": "(min, max) box side share, sampled uniformly; overrides cutmix_alpha."}
    )
    cutmix_mask: str = field(
        default="box", metadata={"help": "The shape CutMix pastes.", "choices": list(CUTMIX_MASKS)}
    )
    fmix_decay_power: float = field(default=3.0, metadata={"help": "FMix: decay δ of the spectrum 1/f^δ."})
    prob: float = field(
        default=1.0, metadata={"help": "Probability that a sample (batch/pair in those modes) is mixed."}
    )
    switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix over Mixup when both are on."})
    mode: str = field(default="elem", metadata={"help": "Granularity of λ, method and box.", "choices": list(MODES)})
    correct_lam: bool = field(default=True, metadata={"help": "λ := realised area of the clipped CutMix box."})
    num_classes: int | None = field(
        default=None, metadata={"help": "Number of classes, checked against the labels; taken from the logits."}
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "The loss's problem type; unset: the model config's, else the labels' form.",
            "choices": list(PROBLEM_TYPES),
        },
    )
    ignore_index: int = field(default=-100, metadata={"help": "Label of rows / positions left out of the loss."})
    site: str = field(default="hidden", metadata={"help": "Where to mix.", "choices": list(SITES)})
    layers: list[int] | None = field(
        default=None,
        metadata={"help": "0-based layers whose output may be mixed, one drawn per forward; all when unset."},
    )
    layer_stack: str | None = field(
        default=None, metadata={"help": "Dotted path of the layer list, when discovery does not find it."}
    )
    pad_policy: str = field(
        default="mix", metadata={"help": "What a position real in one partner gets.", "choices": list(PAD_POLICIES)}
    )
    correct_lam_tokens: bool = field(default=False, metadata={"help": "λ := share of real-token content."})
    partner: str = field(default="random", metadata={"help": "How partners are chosen.", "choices": list(PARTNERS)})
    fold_lam: bool = field(default=False, metadata={"help": "λ := max(λ, 1 - λ)."})
    enabled: bool = field(default=True, metadata={"help": "False: every forward is a plain forward."})


MIX_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(MixOptions))


@dataclass
class TrainerMixOptions:
    """The trainer's own mixing options, under these names in `MixupTrainingArguments` and in recipes.

    Args:
        clean_loss_weight: RegMixup: weight of the loss of a clean (unmixed) forward of the same batch, added to the
            mixed loss; 0 turns it off. It costs a second forward and backward per step (2.1-2.25x the step time at
            16 x 128 tokens on a pretrained MiniLM; `benchmarks/bench_text_overhead.py`).
        mix_off_for_last: share of the training steps, at the end, with mixing off.
        mix_off_epoch: epoch from which mixing is off (timm's `--mixup-off-epoch`); None: never.
    """

    clean_loss_weight: float = field(
        default=0.0,
        metadata={"help": "RegMixup: weight of a clean forward's loss added to the mixed loss (a second forward)."},
    )
    mix_off_for_last: float = field(default=0.0, metadata={"help": "Share of training steps, at the end, unmixed."})
    mix_off_epoch: float | None = field(default=None, metadata={"help": "Epoch from which mixing is off (timm)."})


# name -> default of each trainer option
TRAINER_MIX_OPTIONS = {f.name: f.default for f in dataclasses.fields(TrainerMixOptions)}
UNLABELED_AUGMENTS = ("token_dropout", "swap", "none")


@dataclass
class UnlabeledOptions:
    """How `MixupTrainer(..., unlabeled_dataset=...)` uses unlabelled rows (`hiddenmix.unlabeled`: MixText's step).

    Args:
        unlabeled_batch_size: unlabelled rows per device and micro-batch; None: `per_device_train_batch_size`.
        unlabeled_views: augmented views of each unlabelled row, besides the row itself; the guess averages the
            predictions on all of them, and all of them are trained on.
        unlabeled_augment: how a view is made from the token ids: `token_dropout` (interior tokens replaced by the
            tokenizer's mask token, else its unknown token), `swap` (interior tokens moved one place on) or `none`
            (views differ by dropout alone).
        unlabeled_augment_rate: the share of interior tokens a view changes.
        sharpen_temperature: T of the guess's sharpening `p^(1/T)`; 1 keeps the averaged prediction as it is.
        unlabeled_loss_weight: weight of the unlabelled rows' loss.
        unlabeled_rampup: share of the training steps over which that weight grows linearly from 0 (MixText: 1,
            the whole run); 0: at full weight from the start.
    """

    unlabeled_batch_size: int | None = field(
        default=None, metadata={"help": "Unlabelled rows per device and micro-batch; unset: the labelled batch size."}
    )
    unlabeled_views: int = field(default=1, metadata={"help": "Augmented views per unlabelled row, besides itself."})
    unlabeled_augment: str = field(
        default="token_dropout", metadata={"help": "How a view changes the ids.", "choices": list(UNLABELED_AUGMENTS)}
    )
    unlabeled_augment_rate: float = field(default=0.1, metadata={"help": "Share of interior tokens a view changes."})
    sharpen_temperature: float = field(default=0.5, metadata={"help": "T of the guess's sharpening p^(1/T)."})
    unlabeled_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the unlabelled rows' loss."})
    unlabeled_rampup: float = field(
        default=1.0, metadata={"help": "Share of the steps over which the unlabelled weight grows from 0."}
    )


UNLABELED_OPTIONS = {f.name: f.default for f in dataclasses.fields(UnlabeledOptions)}


def check_unlabeled_options(options: Any, owner: str) -> None:
    """Validate the `UnlabeledOptions` fields of `options`; errors name `owner.field`."""
    size = options.unlabeled_batch_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise _fail(owner, "unlabeled_batch_size", size, "allowed: None or an integer >= 1")
    views = options.unlabeled_views
    if isinstance(views, bool) or not isinstance(views, int) or views < 0:
        raise _fail(owner, "unlabeled_views", views, "allowed: an integer >= 0")
    if options.unlabeled_augment not in UNLABELED_AUGMENTS:
        raise _fail(owner, "unlabeled_augment", options.unlabeled_augment, f"choose one of {list(UNLABELED_AUGMENTS)}")
    for name, low, high in (("unlabeled_augment_rate", 0, 1), ("unlabeled_rampup", 0, 1)):
        value = getattr(options, name)
        if not (_is_number(value) and low <= value <= high):
            raise _fail(owner, name, value, f"allowed: a number in [{low}, {high}]")
    if not (_is_number(options.sharpen_temperature) and options.sharpen_temperature > 0):
        raise _fail(owner, "sharpen_temperature", options.sharpen_temperature, "allowed: a number > 0")
    if not (_is_number(options.unlabeled_loss_weight) and options.unlabeled_loss_weight >= 0):
        raise _fail(owner, "unlabeled_loss_weight", options.unlabeled_loss_weight, "allowed: a number >= 0")


def check_mix_options(options: Any, owner: str) -> None:
    """Validate the `MixOptions` fields of `options` in place (tuples for list fields); errors name `owner.field`.

    Raises:
        ValueError: a field holds a value outside what it allows; the message names the field, the value and what
            is allowed.
    """
    for name in ("mixup_alpha", "cutmix_alpha"):
        value = getattr(options, name)
        if not (_is_number(value) and value >= 0):
            raise _fail(owner, name, value, "allowed: a finite number >= 0 (0 turns it off)")
    if options.cutmix_minmax is not None:
        mm = options.cutmix_minmax
        if not (isinstance(mm, Sequence) and len(mm) == 2 and all(_is_number(v) for v in mm)):
            raise _fail(owner, "cutmix_minmax", mm, "allowed: None or a pair (min, max)")
        lo, hi = float(mm[0]), float(mm[1])
        if not (0.0 < lo < hi <= 1.0):
            raise _fail(owner, "cutmix_minmax", mm, "allowed: a pair with 0 < min < max <= 1")
        options.cutmix_minmax = (lo, hi)
    if not (_is_number(options.fmix_decay_power) and options.fmix_decay_power > 0):
        raise _fail(owner, "fmix_decay_power", options.fmix_decay_power, "allowed: a finite number > 0")
    for name in ("prob", "switch_prob"):
        value = getattr(options, name)
        if not (_is_number(value) and 0 <= value <= 1):
            raise _fail(owner, name, value, "allowed: a number in [0, 1]")
    for name, allowed in (("mode", MODES), ("site", SITES), ("pad_policy", PAD_POLICIES), ("partner", PARTNERS),
                          ("cutmix_mask", CUTMIX_MASKS)):  # fmt: skip
        if getattr(options, name) not in allowed:
            raise _fail(owner, name, getattr(options, name), f"choose one of {list(allowed)}")
    if options.problem_type is not None and options.problem_type not in PROBLEM_TYPES:
        raise _fail(owner, "problem_type", options.problem_type, f"choose None or one of {list(PROBLEM_TYPES)}")
    num_classes = options.num_classes
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise _fail(owner, "num_classes", num_classes, "allowed: None or an integer >= 1")
    if isinstance(options.ignore_index, bool) or not isinstance(options.ignore_index, int):
        raise _fail(owner, "ignore_index", options.ignore_index, "allowed: an integer")
    if options.layers is not None:
        layers = options.layers
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = (layers,)
        if (
            isinstance(layers, (str, bytes))
            or not isinstance(layers, Sequence)
            or len(layers) == 0
            or not all(isinstance(k, int) and not isinstance(k, bool) for k in layers)
        ):
            raise _fail(owner, "layers", options.layers, "allowed: None or a non-empty list of integers")
        if len(set(layers)) != len(layers):
            raise _fail(owner, "layers", options.layers, "it lists a layer twice")
        options.layers = tuple(layers)
    if options.layer_stack is not None and (not isinstance(options.layer_stack, str) or not options.layer_stack):
        raise _fail(owner, "layer_stack", options.layer_stack, "allowed: None or a dotted module path")
    for name in ("correct_lam", "correct_lam_tokens", "fold_lam", "enabled"):
        if not isinstance(getattr(options, name), bool):
            raise _fail(owner, name, getattr(options, name), "allowed: True or False")


def check_trainer_options(options: Any, owner: str) -> None:
    """Validate the `TrainerMixOptions` fields of `options`; errors name `owner.field`."""
    weight = options.clean_loss_weight
    if not (_is_number(weight) and weight >= 0):
        raise _fail(owner, "clean_loss_weight", weight, "allowed: a finite number >= 0 (0 turns it off)")
    if not (_is_number(options.mix_off_for_last) and 0 <= options.mix_off_for_last <= 1):
        raise _fail(owner, "mix_off_for_last", options.mix_off_for_last, "allowed: a share of the steps in [0, 1]")
    if options.mix_off_epoch is not None and not (_is_number(options.mix_off_epoch) and options.mix_off_epoch >= 0):
        raise _fail(owner, "mix_off_epoch", options.mix_off_epoch, "allowed: None or a number of epochs >= 0")


@dataclass
class MixConfig(MixOptions):
    """Everything that decides how a batch is mixed: the `MixOptions` fields, plus

    Args:
        label_smoothing: smoothing applied to each label *before* mixing (0 turns it off).
        seed: seed of hiddenmix's own random streams (offset by the process rank). `None`: derived from torch's
            global seed at first use.
    """

    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing applied before mixing."})
    seed: int | None = field(default=None, metadata={"help": "Seed of the mixing streams (offset by rank)."})

    def __post_init__(self) -> None:
        check_mix_options(self, "MixConfig")
        ls = self.label_smoothing
        if not (_is_number(ls) and 0 <= ls < 1):
            raise _fail("MixConfig", "label_smoothing", ls, "allowed: a number in [0, 1)")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise _fail("MixConfig", "seed", self.seed, "allowed: None or an integer >= 0")

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

    def replace(self, **changes: Any) -> MixConfig:
        """A validated copy with `changes` applied (unknown names raise)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"MixConfig has no field(s) {unknown}; known fields: {sorted(names)}.")
        return dataclasses.replace(self, **changes)
