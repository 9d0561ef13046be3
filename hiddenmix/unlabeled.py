"""Unlabelled text in the same plan: MixText's semi-supervised step, with the union mask it never had.

One training step of `MixupTrainer(..., unlabeled_dataset=...)`:

    unlabelled rows u [U, T]  ──► K augmented views (token dropout / local swaps on the ids), on the device
    guess (no gradient, the model in train mode, so dropout varies too): q = sharpen(mean softmax over u and its
                                                                                     views, T)
    batch = labelled rows x [B] + u and its views [U (1 + K)], padded together, one forward:
           the mixer draws ONE plan over every row, so labelled rows mix with unlabelled ones (and their padding
           masks are united, as for any pair); targets from the same plan: λ·t_i + (1 - λ)·t_π(i), where t is the
           (smoothed) one-hot label of a labelled row and the guess q of an unlabelled one
    loss = soft CE over labelled rows (each row's own content labelled) + w(step) · soft CE over unlabelled rows,
           w ramped linearly from 0 over the first `unlabeled_rampup` share of the steps

With mixing off (`mixup_alpha=0`), the same step trains on the guessed labels alone (pseudo-labels of sharpened,
averaged predictions): the comparison that shows what the mixing itself adds.

Each process draws its own slice of the unlabelled rows (a permutation per epoch of the unlabelled set, seeded, the
same on every process, cut by rank), and the stream's position is saved with the checkpoint, so a resumed run draws
the rows an uninterrupted run would. Only single-label classification with class ids is supported: a guessed label
is a class distribution.

References:
    Chen et al., "MixText: Linguistically-Informed Interpolation of Hidden Space for Semi-Supervised Text
    Classification", ACL 2020.
    Xie et al., "Unsupervised Data Augmentation for Consistency Training" (UDA), NeurIPS 2020.
    Berthelot et al., "MixMatch: A Holistic Approach to Semi-Supervised Learning", NeurIPS 2019 (sharpening).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .plan import MixPlan
from .targets import mix_targets, smooth_one_hot, soft_target_cross_entropy


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """`p^(1/T)` renormalised per row (MixMatch / MixText); `T = 1` leaves `probs` as they are."""
    if temperature == 1.0:
        return probs
    powered = probs.clamp_min(1e-12).pow(1.0 / temperature)
    return powered / powered.sum(-1, keepdim=True)


def interior(mask: Tensor) -> Tensor:
    """`[B, T]` bool: the real tokens of each row other than its first and last (where [CLS] / [SEP] / BOS / EOS
    stand), for either padding side."""
    real = mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device)
    first = real.int().argmax(1, keepdim=True)
    last = mask.shape[1] - 1 - real.flip(1).int().argmax(1, keepdim=True)
    return real & (positions > first) & (positions < last)


def augment_ids(
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    how: str,
    rate: float,
    mask_id: int | None,
    generator: torch.Generator,
) -> Tensor:
    """A view of `input_ids` `[B, T]`: `token_dropout` replaces each interior real token with `mask_id` with
    probability `rate`; `swap` moves each interior real token (but the one before the last) one place on with
    probability `rate`, a local reordering; `none` returns the ids (views then differ by dropout alone)."""
    if how == "none" or rate == 0:
        return input_ids
    inside = interior(attention_mask)
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < rate  # a generator there
    if how == "token_dropout":
        return torch.where(inside & draw, torch.full_like(input_ids, mask_id), input_ids)
    # swap: a key one and a half places on moves a token past its (unmoved) successor; the token before the last
    # real one stays, so nothing moves past the end
    movable = inside & torch.roll(inside, -1, dims=1)
    keys = torch.arange(input_ids.shape[1], device=input_ids.device).float().expand_as(input_ids)
    keys = keys + 1.5 * (movable & draw).float()
    return input_ids.gather(1, keys.argsort(dim=1, stable=True))


class UnlabeledStream:
    """Batches of an unlabelled dataset for one process: each epoch a seeded permutation of the rows (the same on
    every process), cut into `world_size` slices of `batch_size` rows per step; the position is the state.

    Args:
        dataset: a map-style dataset of tokenized rows (label columns are dropped).
        batch_size: rows per batch on this process.
        collate: turns a list of rows into a batch of tensors (the trainer's data collator).
        seed: seed of the permutations.
        rank, world_size: this process among all.
    """

    def __init__(
        self, dataset: Any, batch_size: int, collate: Callable, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.per_epoch = len(dataset) // (batch_size * world_size)
        if self.per_epoch < 1:
            raise ValueError(
                f"unlabeled_dataset has {len(dataset)} rows, fewer than one batch of unlabeled_batch_size="
                f"{batch_size} per process ({world_size} processes); allowed: at least {batch_size * world_size}."
            )
        self.dataset, self.batch_size, self.collate = dataset, batch_size, collate
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.position = 0
        self._order: tuple[int, list[int]] | None = None

    def next(self) -> dict:
        epoch, step = divmod(self.position, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = (epoch, torch.randperm(len(self.dataset), generator=generator).tolist())  # host, not device
        start = (step * self.world_size + self.rank) * self.batch_size
        rows = [self.dataset[i] for i in self._order[1][start : start + self.batch_size]]
        self.position += 1
        return self.collate([{k: v for k, v in row.items() if k not in ("label", "labels")} for row in rows])

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def pad_together(first: dict, second: dict, *, pad_id: int, left: bool) -> dict:
    """The rows of two padded batches as one batch: every tensor padded to the longer length (ids with `pad_id`,
    masks and type ids with 0), on the side the batches are padded on, then stacked."""
    if set(first) != set(second):
        raise ValueError(
            f"the labelled batch has inputs {sorted(first)} but the unlabelled batch has {sorted(second)}; tokenize "
            "both the same way."
        )
    length = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    joined = {}
    for key in first:
        parts = []
        for batch in (first, second):
            value = batch[key]
            extra = length - value.shape[1]
            fill = pad_id if key == "input_ids" else 0
            parts.append(F.pad(value, (extra, 0) if left else (0, extra), value=fill) if extra else value)
        joined[key] = torch.cat(parts)
    return joined


def guess_labels(model: nn.Module, views: list[dict], temperature: float) -> Tensor:
    """`[U, C]` guessed class distributions: the mean softmax of the model's predictions over `views` (batches of
    the same rows), without gradient, sharpened with `temperature`."""
    with torch.no_grad():
        probs = torch.stack([model(**view).logits.float().softmax(-1) for view in views]).mean(0)
    return sharpen(probs, temperature)


def semi_supervised_loss(
    logits: Tensor, labels: Tensor, guessed: Tensor, plan: MixPlan, *, config: Any
) -> tuple[Tensor, Tensor]:
    """`(labelled, unlabelled)` soft cross-entropies of a batch whose first `len(labels)` rows are labelled and the
    rest unlabelled with `guessed` targets (repeated for their views), mixed by `plan`. Each is the mean over its
    rows: the labelled over those that keep a target (not `config.ignore_index`, nor mixed with such a row); label
    smoothing (`config.label_smoothing`) applies to the labels, not to the guesses."""
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"unlabeled_dataset needs class-id labels of shape [B]; got {tuple(labels.shape)}.")
    label_smoothing, ignore_index = config.label_smoothing, config.ignore_index
    labelled = labels.shape[0]
    repeats = (logits.shape[0] - labelled) // guessed.shape[0]
    num_classes = logits.shape[-1]
    rows = torch.cat([smooth_one_hot(labels, num_classes, label_smoothing, ignore_index), guessed.repeat(repeats, 1)])
    ignored = torch.cat([labels == ignore_index, torch.zeros(rows.shape[0] - labelled, dtype=torch.bool,
                                                             device=labels.device)])  # fmt: skip
    targets = mix_targets(rows, plan, problem_type="single_label_classification")
    valid = ~ignored & ~(ignored[plan.index] & (plan.lam_target < 1))
    own = soft_target_cross_entropy(logits[:labelled], targets.target[:labelled], valid[:labelled])
    other = soft_target_cross_entropy(logits[labelled:], targets.target[labelled:], valid[labelled:])
    return own, other


class UnlabeledRows:
    """What a `MixupTrainer` keeps for its unlabelled rows: their stream, the views' random stream, and how a
    labelled batch is joined by unlabelled rows, their views and their guessed labels.

    Args:
        dataset: the tokenized unlabelled rows (a label column, if any, is dropped).
        args: the `MixupTrainingArguments` (`UnlabeledOptions`, batch size, seed).
        collate: the trainer's data collator.
        tokenizer: the trainer's `processing_class`: its pad, mask and unknown token ids.
        rank, world_size: this process among all.
        left_padding: whether batches are padded on the left (decoder-only classifiers).
    """

    def __init__(
        self, dataset: Any, args: Any, collate: Callable, tokenizer: Any, *, rank: int, world_size: int,
        left_padding: bool,
    ) -> None:  # fmt: skip
        self.args = args
        size = args.unlabeled_batch_size or args.per_device_train_batch_size
        self.stream = UnlabeledStream(dataset, size, collate, seed=args.seed, rank=rank, world_size=world_size)
        self.pad_id = getattr(tokenizer, "pad_token_id", None) or 0
        self.mask_id = _mask_id(tokenizer)
        if args.unlabeled_augment == "token_dropout" and args.unlabeled_views and self.mask_id is None:
            raise ValueError(TOKEN_DROPOUT_NEEDS)
        self.left = left_padding
        self.seed = args.seed + 7919 * rank  # the views' stream: its own per process
        self._generator: torch.Generator | None = None
        self._resumed: Tensor | None = None  # a saved state of the views' generator, set on its device at first use

    @staticmethod
    def check(args: Any, dataset: Any, tokenizer: Any = None, *, world_size: int | None = None) -> None:
        """What can be checked before a run starts: unlabelled-row options only with unlabelled rows, and (given the
        tokenizer and the number of processes) enough rows for a batch on each process and a token to drop to.

        Raises:
            ValueError: naming the option or the dataset, the value and what is allowed.
        """
        from .config import UNLABELED_OPTIONS

        given = {name: getattr(args, name) for name, default in UNLABELED_OPTIONS.items()
                 if getattr(args, name) != default}  # fmt: skip
        if dataset is None:
            if given:
                raise ValueError(f"MixupTrainer was given unlabelled-row options {given} but no unlabeled_dataset.")
            return
        if world_size is not None:
            UnlabeledStream(dataset, args.unlabeled_batch_size or args.per_device_train_batch_size, list,
                            seed=0, world_size=world_size)  # fmt: skip
            if args.unlabeled_augment == "token_dropout" and args.unlabeled_views and _mask_id(tokenizer) is None:
                raise ValueError(TOKEN_DROPOUT_NEEDS)

    @classmethod
    def for_trainer(cls, trainer: Any, dataset: Any) -> UnlabeledRows | None:
        """A `MixupTrainer`'s unlabelled rows (None without `dataset`), checked against its arguments and mixer."""

        args = trainer.args
        cls.check(args, dataset)
        if dataset is None:
            return None
        problem = trainer.mixer.problem_type()
        if problem not in (None, "single_label_classification") or args.clean_loss_weight > 0:
            raise ValueError(
                "unlabeled_dataset is for single-label classification without a clean loss; this run has "
                f"problem_type={problem!r}, clean_loss_weight={args.clean_loss_weight}."
            )
        rank = args.process_index if args.world_size > 1 else 0
        return cls(
            dataset, args, trainer.data_collator, trainer.processing_class, rank=rank,
            world_size=max(args.world_size, 1), left_padding=trainer.mixer.decoder_only,
        )  # fmt: skip

    def join(self, model: nn.Module, inputs: dict) -> tuple[dict, Tensor]:
        """`(batch, guessed)`: the labelled `inputs` followed by the next unlabelled rows and their views, padded
        together, and the `[U, C]` guessed class distributions of the unlabelled rows."""
        device = inputs["input_ids"].device
        # pinned and non-blocking on a GPU: the copy does not wait for the device queue
        unlabeled = {
            k: v.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else v.to(device)
            for k, v in self.stream.next().items()
        }
        views = [unlabeled]
        for _ in range(self.args.unlabeled_views):
            ids = augment_ids(
                unlabeled["input_ids"], unlabeled["attention_mask"], how=self.args.unlabeled_augment,
                rate=self.args.unlabeled_augment_rate, mask_id=self.mask_id, generator=self._views(unlabeled),
            )  # fmt: skip
            views.append({**unlabeled, "input_ids": ids})
        guessed = guess_labels(model, views, self.args.sharpen_temperature)
        stacked = {k: torch.cat([view[k] for view in views]) for k in unlabeled}
        return pad_together(inputs, stacked, pad_id=self.pad_id, left=self.left), guessed

    def _views(self, batch: dict) -> torch.Generator:
        """The views' generator, on the batch's device (made there at first use, or from a resumed state)."""
        device = batch["input_ids"].device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._resumed is not None:
                self._generator.set_state(self._resumed)
                self._resumed = None
        return self._generator

    def state_dict(self) -> dict:
        views = self._generator.get_state() if self._generator is not None else None
        return {"stream": self.stream.state_dict(), "views": views}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self._generator, self._resumed = None, state.get("views")


TOKEN_DROPOUT_NEEDS = (
    "unlabeled_augment='token_dropout' replaces tokens with the tokenizer's mask (or unknown) token, but the trainer "
    "was given no processing_class that has one; pass processing_class=tokenizer, or use unlabeled_augment='swap' or "
    "'none'."
)


def _mask_id(tokenizer: Any) -> int | None:
    mask = getattr(tokenizer, "mask_token_id", None)
    return mask if mask is not None else getattr(tokenizer, "unk_token_id", None)


def rampup(step: int, total: int, share: float) -> float:
    """The unlabelled loss weight's factor: linear from 0 to 1 over the first `share` of `total` steps."""
    if share <= 0 or total <= 0:
        return 1.0
    return min(1.0, step / (share * total))


__all__ = [
    "UnlabeledRows",
    "UnlabeledStream",
    "augment_ids",
    "guess_labels",
    "interior",
    "pad_together",
    "rampup",
    "semi_supervised_loss",
    "sharpen",
]
