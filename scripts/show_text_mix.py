"""Mix one real batch inside a real pretrained model and show what happened.

    python scripts/show_text_mix.py     # (or `make show-mix`) offline, a few seconds on 2 CPU cores

Loads the pretrained all-MiniLM-L6-v2 and eight BBC News articles of unequal length, attaches a `HiddenMixer`
(manifold mixup after a layer drawn from {2, 4, 6}), runs one training forward and backward, and prints the plan:
who was mixed with whom, λ, the layer, the padding, and the soft targets the loss used.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from common.data import load_bbc_news, minilm_path  # noqa: E402
from hiddenmix import HiddenMixer, MixConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.manual_seed(args.seed)

    texts, topics = load_bbc_news()
    names = sorted(set(topics))
    picks = torch.randperm(len(texts))[: args.batch_size].tolist()
    # cut articles to different lengths so the batch has real padding
    batch_texts = [" ".join(texts[i].split()[: 8 + 7 * k]) for k, i in enumerate(picks)]
    labels = torch.tensor([names.index(topics[i]) for i in picks])

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))
    batch = tokenizer(batch_texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")

    config = MixConfig(site="hidden", layers=(1, 3, 5), mixup_alpha=0.4, seed=args.seed)
    with HiddenMixer(model, config) as mixer:
        print(f"model: all-MiniLM-L6-v2, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
        print(f"mixer: {mixer}")
        model.train()
        logits = model(**batch).logits
        loss = mixer.loss(logits, labels)
        loss.backward()
        plan = mixer.plan
        targets = mixer.targets(labels)

        lengths = batch["attention_mask"].sum(-1).tolist()
        print(f"\nbatch of {len(picks)} BBC News articles, padded to {batch['input_ids'].shape[1]} tokens")
        print(f"mixed the output of layer {plan.layer} (0-based); later layers saw the union attention mask\n")
        print(f"{'row':>3}  {'topic':<13} {'tokens':>6}   {'partner':>7}  {'partner topic':<13} {'λ':>5}  soft target")
        for i in range(len(picks)):
            j = plan.index[i].item()
            soft = ", ".join(f"{names[c]} {p:.2f}" for c, p in enumerate(targets.target[i].tolist()) if p >= 0.005)
            print(
                f"{i:>3}  {names[labels[i]]:<13} {lengths[i]:>6}   {j:>7}  {names[labels[j]]:<13} "
                f"{plan.lam_target[i].item():>5.2f}  {soft}"
            )
        print(f"\nsoft-target cross-entropy: {loss.item():.4f} (gradients computed: {logits.grad_fn is not None})")

        model.eval()
        with torch.no_grad():
            eval_logits = model(**batch).logits
    with torch.no_grad():
        plain = model(**batch).logits
    print(f"eval forward with the mixer attached equals the plain model: {torch.equal(eval_logits, plain)}")


if __name__ == "__main__":
    main()
