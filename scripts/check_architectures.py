"""Run every architecture of transformers' sequence- and image-classification auto mappings through hiddenmix, and
write the table: each either mixes correctly or is refused with a clear error; a silent no-op is the one outcome
that must never appear.

    python scripts/check_architectures.py                         # all of them (1-2 min); writes docs/coverage.md
    python scripts/check_architectures.py --types bert llama vit  # a few, printed only

Each model is a tiny random-init copy built from its config (`common/tiny.py`: nothing is downloaded), fed a batch
with real padding of unequal lengths (decoder-only models padded on the left). For each site (`embeddings` and
`hidden` for text; `input` and `hidden` for images) a model is:
- **mixed** when every check holds: the training forward with a mixed plan differs from the plain training forward;
  the eval forward with the mixer attached is bit-identical to the plain one; a plan with λ = 1 gives exactly the
  plain training forward; every layer after the mix that takes an attention mask received the union of the two
  partners' masks (text); `remove()` leaves no hook and an unchanged `state_dict`;
- **refused** when attaching or the first mixed forward raises an error that says why (the message is in the table);
- **skipped** when it cannot be built here (a package that is not installed, a kernel that needs a GPU);
- **FAILED** when a check does not hold: the forward mixed nothing, or not what the plan said, without an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from common.tiny import IMAGE_TYPES, SKIPS, TEXT_TYPES, logits_of, sample_inputs, tiny_model
from hiddenmix import HiddenMixer, MixConfig, MixPlan

ROOT = Path(__file__).resolve().parents[1]
SITES = {"text": ("embeddings", "hidden"), "image": ("input", "hidden")}


@dataclasses.dataclass
class Outcome:
    """What one (model type, site) did."""

    model_type: str
    task: str
    site: str
    outcome: str  # mixed | refused | skipped | FAILED
    detail: str = ""


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs) for m in model.modules()
    )


def _same_state(model: torch.nn.Module, state: dict) -> bool:
    after = model.state_dict()
    return after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)


def _forward(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    torch.manual_seed(1)  # the same dropout masks in every forward compared
    return logits_of(model(**inputs))


def _plan(mixer: HiddenMixer, inputs: dict, lam: float) -> MixPlan:
    batch = next(v for v in inputs.values() if torch.is_tensor(v)).shape[0]
    index = torch.arange(batch).roll(1)  # every row mixed with another
    mask = inputs.get("attention_mask")
    token_mask = mask.bool() if mixer._is_text and torch.is_tensor(mask) and mask.dim() == 2 else None
    layer = mixer.layers[len(mixer.layers) // 2] if mixer.config.site == "hidden" else None
    return MixPlan.from_lam(index, lam, site=mixer.config.site, layer=layer, token_mask=token_mask)


def check(model_type: str, task: str, site: str) -> Outcome:
    """Run one model type through the checks of the module docstring at one site."""
    out = Outcome(model_type, task, site, "")
    if model_type in SKIPS:
        return dataclasses.replace(out, outcome="skipped", detail=SKIPS[model_type])
    model = tiny_model(model_type, task).train()
    inputs = sample_inputs(model, task)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hooks(model)
    try:
        HiddenMixer(model, MixConfig(site=site, seed=0)).remove()  # the round trip, before any forward
        restored = _hooks(model) == hooks and _same_state(model, state)
        mixer = HiddenMixer(model, MixConfig(site=site, seed=0))
    except (ValueError, TypeError) as err:
        return dataclasses.replace(out, outcome="refused", detail=f"at attach: {err}")
    # The mixer mixes when the model it is attached to is in training mode; every submodule is put in eval mode, so
    # the forwards compared differ only by the mix (no dropout, and no model that draws its own randomness in
    # training: reformer reseeds from the clock, big_bird draws random attention blocks from numpy).
    model.eval()
    mixer.model.training = True
    try:
        with mixer.paused():
            plain = _forward(model, inputs)
        received = []  # what the model's forward got after the mixer's pre-hook (registered later: runs after it)
        spy = mixer.entry.register_forward_pre_hook(lambda m, a, k: received.append(dict(k)), with_kwargs=True)
        with mixer.use_plan(_plan(mixer, inputs, 0.5)):
            mixed = _forward(model, inputs)
        spy.remove()
        record = mixer.last_forward
        with mixer.use_plan(_plan(mixer, inputs, 1.0)):
            unchanged = _forward(model, inputs)
        mixer.model.training = False
        with torch.no_grad():
            attached = _forward(model, inputs)
            with mixer.paused():
                plain_eval = _forward(model, inputs)
    except (ValueError, TypeError, RuntimeError) as err:
        mixer.remove()
        return dataclasses.replace(out, outcome="refused", detail=f"at the first mixed forward: {err}")
    mixer.remove()
    failed = []
    note = ""
    if torch.allclose(mixed, plain):
        # a tiny random-init model whose output ignores its input (a zero-initialised head, say) cannot show the mix
        # in its logits; then the input it received must show it
        with mixer.paused(), torch.no_grad():
            shifted = _forward(model, {k: v + 1 if torch.is_floating_point(v) else v for k, v in inputs.items()})
        pixels = received[0].get("pixel_values") if received else None
        if site == "input" and torch.allclose(shifted, plain) and pixels is not None:
            if torch.equal(pixels, inputs["pixel_values"]):
                failed.append("the pixel values the model received were not mixed")
            note = "; its tiny random-init output ignores the input, so the mix was checked on the pixels it received"
        else:
            failed.append("the mixed training forward equals the plain one")
    if not torch.equal(attached, plain_eval):
        failed.append("the eval forward with the mixer attached differs from the plain one")
    if not torch.equal(unchanged, plain):
        failed.append("a plan with λ = 1 changed the training forward")
    united = record.masks_united == record.layer_calls_after_mix
    takes_masks = mixer.stack is not None and bool(mixer.stack.mask_positions)
    mask = inputs.get("attention_mask")
    padded = torch.is_tensor(mask) and not bool(mask.bool().all())
    if mixer._is_text and takes_masks and padded and not united:
        failed.append(f"{record.layer_calls_after_mix - record.masks_united} later layer call(s) without the union")
    if _hooks(model) != hooks or not restored:
        failed.append("attach and remove() did not leave the model as it was (hooks or state_dict)")
    if failed:
        return dataclasses.replace(out, outcome="FAILED", detail="; ".join(failed))
    where = mixer.stack.path if mixer.stack is not None else "pixel_values"
    note = f"at {where}{note}"
    if mixer._is_text and not padded:
        note += "; its batches have no padding"
    elif mixer._is_text:
        note += (
            f"; union carried to {record.masks_united} later layer call(s)"
            if takes_masks
            else "; its layers take no attention mask (the plain model attends padding too)"
        )
    return dataclasses.replace(out, outcome="mixed", detail=note)


def run(types: dict[str, list[str]]) -> list[Outcome]:
    outcomes = []
    for task, names in types.items():
        for model_type in names:
            for site in SITES[task]:
                start = time.perf_counter()
                try:
                    outcome = check(model_type, task, site)
                except Exception as err:  # an architecture that breaks the harness itself: reported, never hidden
                    outcome = Outcome(model_type, task, site, "FAILED", f"{type(err).__name__}: {err}")
                outcomes.append(outcome)
                print(
                    f"{model_type:<28} {task:<6} {site:<11} {outcome.outcome:<8} "
                    f"{time.perf_counter() - start:5.1f} s  {outcome.detail[:110]}",
                    flush=True,
                )
    return outcomes


def table(outcomes: list[Outcome], command: str) -> str:
    import transformers

    import hiddenmix

    counts = {k: sum(o.outcome == k for o in outcomes) for k in ("mixed", "refused", "skipped", "FAILED")}
    types = len({(o.model_type, o.task) for o in outcomes})
    lines = [
        "# Coverage: every architecture transformers ships for sequence and image classification",
        "",
        f"transformers {transformers.__version__}, torch {torch.__version__}, hiddenmix {hiddenmix.__version__}; "
        f"{types} model types x 2 sites = {len(outcomes)} checks: **{counts['mixed']} mixed, {counts['refused']} "
        f"refused, {counts['skipped']} skipped, {counts['FAILED']} silent or failed**.",
        "",
        "What each outcome means, and the checks behind *mixed*, are in the docstring of",
        "`scripts/check_architectures.py`. Every model is a tiny random-init copy built from its config, with a",
        "padded batch of unequal lengths.",
        "",
        f"Regenerate: `{command}`",
        "",
        "| model type | task | site | outcome | detail |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        detail = o.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {o.model_type} | {o.task} | {o.site} | {o.outcome} | {detail} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", help="only these model types (printed, docs/coverage.md untouched)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "coverage.md"), help="where the full table goes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.types:
        unknown = [t for t in args.types if t not in TEXT_TYPES and t not in IMAGE_TYPES]
        if unknown:
            parser.error(f"--types {' '.join(unknown)}: not in the classification mappings of this transformers")
        run({"text": [t for t in args.types if t in TEXT_TYPES], "image": [t for t in args.types if t in IMAGE_TYPES]})
        return
    outcomes = run({"text": TEXT_TYPES, "image": IMAGE_TYPES})
    Path(args.out).write_text(table(outcomes, "python scripts/check_architectures.py"))
    print(f"wrote {args.out}")
    if any(o.outcome == "FAILED" for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
