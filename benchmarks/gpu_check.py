"""The checks that need a GPU, in one call of a few minutes: no host-device sync in the mixing hot path, bf16 training
steps, and the two benchmarks at GPU sizes.

    python benchmarks/gpu_check.py                     # on a CUDA machine: everything, about 5 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --quick  # the same code paths on a CPU, small (no sync check there)

1. **No sync**: for every mixing site (text embeddings / hidden with the union mask, token tags, ViT pixels /
   patch-token CutMix / hidden, pixel CutMix and FMix with label maps, the batch transform), a training step
   (forward, soft-target loss, backward) runs under `torch.cuda.set_sync_debug_mode("error")`, which raises on any
   host-device synchronisation. The plan is drawn on the device inside the step, as in training.
2. **bf16**: the same steps under `torch.autocast("cuda", torch.bfloat16)` and with bf16 weights: finite losses and
   gradients.
3. **Text overhead** at BERT-base size, batch 32 x 128: `bench_text_overhead.py --model bert-base-config`.
4. **Image mixing** against kornia, timm and torchvision where they import: `bench_image_mixing.py`.

Prints a table per part and, with `--out DIR`, writes `gpu_check.json` and the two benchmarks' output there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hiddenmix import HiddenMixer, MixConfig, MixupCutmix, soft_map_cross_entropy  # noqa: E402

HERE = Path(__file__).resolve().parent


def text_model(kind: str, device: str, quick: bool, dtype: torch.dtype = torch.float32):
    size = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128) if quick else {}
    config = AutoConfig.for_model("bert", num_labels=5, **size)  # BERT-base unless quick
    torch.manual_seed(0)
    cls = AutoModelForTokenClassification if kind == "tokens" else AutoModelForSequenceClassification
    return cls.from_config(config, attn_implementation="sdpa").to(device, dtype).train()


def text_batch(device: str, batch: int, length: int, tokens: bool = False):
    lengths = torch.linspace(length // 4, length, batch).long()
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = torch.randint(1000, 20000, (batch, length)) * mask
    labels = torch.randint(0, 5, (batch, length) if tokens else (batch,))
    if tokens:
        labels = torch.where(mask.bool(), labels, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}, labels.to(device)


def vit(device: str, quick: bool, dtype: torch.dtype = torch.float32):
    size = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128) if quick else {}
    torch.manual_seed(0)
    config = ViTConfig(image_size=32 if quick else 224, patch_size=4 if quick else 16, num_labels=10, **size)
    return ViTForImageClassification(config).to(device, dtype).train()


def steps(device: str, quick: bool) -> dict:
    """name -> a function doing one mixed training step (plan drawn on the device, loss, backward), returning its
    loss."""
    batch, length, side = (8, 32, 32) if quick else (32, 128, 224)

    def with_mixer(make_model, config: MixConfig, make_batch):
        def step(dtype: torch.dtype = torch.float32, autocast: bool = False):
            model = make_model(dtype)
            inputs, labels = make_batch()
            mixer = HiddenMixer(model, config)
            try:
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
                    logits = model(**inputs).logits
                    loss = mixer.loss(logits, labels)
                loss.backward()
                return loss
            finally:
                mixer.remove()

        return step

    def images():
        return {"pixel_values": torch.randn(batch, 3, side, side, device=device)}, torch.randint(
            0, 10, (batch,), device=device
        )

    text = lambda dtype: text_model("sequence", device, quick, dtype)  # noqa: E731
    tags = lambda dtype: text_model("tokens", device, quick, dtype)  # noqa: E731
    pictures = lambda dtype: vit(device, quick, dtype)  # noqa: E731
    made = {
        "text embeddings (union mask)": with_mixer(
            text, MixConfig(site="embeddings"), lambda: text_batch(device, batch, length)
        ),
        "text hidden, keep + token λ": with_mixer(
            text,
            MixConfig(site="hidden", pad_policy="keep", correct_lam_tokens=True, partner="similar_length"),
            lambda: text_batch(device, batch, length),
        ),
        "text token-span CutMix": with_mixer(
            text,
            MixConfig(site="embeddings", mixup_alpha=0, cutmix_alpha=1.0),
            lambda: text_batch(device, batch, length),
        ),
        "token tags, hidden": with_mixer(
            tags, MixConfig(site="hidden"), lambda: text_batch(device, batch, length, True)
        ),
        "ViT pixels Mixup/CutMix": with_mixer(
            pictures, MixConfig(site="input", mixup_alpha=0.8, cutmix_alpha=1.0), images
        ),
        "ViT patch-token CutMix": with_mixer(
            pictures, MixConfig(site="embeddings", mixup_alpha=0, cutmix_alpha=1.0), images
        ),
        "ViT hidden": with_mixer(pictures, MixConfig(site="hidden"), images),
    }

    def transform_step(cutmix_mask: str):
        def step(dtype: torch.dtype = torch.float32, autocast: bool = False):
            pixels = torch.randn(batch, 3, side, side, device=device, dtype=dtype, requires_grad=True)
            maps = torch.randint(0, 6, (batch, side, side), device=device)
            mix = MixupCutmix(MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, cutmix_mask=cutmix_mask, num_classes=6))
            mixed, soft = mix(pixels, maps)
            logits = mixed.float().mean(1, keepdim=True).expand(-1, 6, -1, -1)  # stands in for a model's [B, 6, H, W]
            loss = soft_map_cross_entropy(logits, soft)
            loss.backward()
            return loss

        return step

    made["label maps, transform (box)"] = transform_step("box")
    made["label maps, transform (FMix)"] = transform_step("fmix")
    return made


def check_steps(device: str, quick: bool) -> list[dict]:
    rows = []
    for name, step in steps(device, quick).items():
        row = {"step": name}
        for mode, kwargs in (
            ("fp32", {}),
            ("bf16 autocast", {"autocast": True}),
            ("bf16 weights", {"dtype": torch.bfloat16}),
        ):
            try:
                step(**kwargs)  # warm-up outside the sync check: first calls may allocate and synchronise
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.set_sync_debug_mode("error")
                try:
                    loss = step(**kwargs)
                finally:
                    if device == "cuda":
                        torch.cuda.set_sync_debug_mode("default")
                finite = bool(torch.isfinite(loss.float()))
                row[mode] = "ok" if finite else "non-finite loss"
            except Exception as err:  # reported in the table, and in the exit code
                row[mode] = f"{type(err).__name__}: {str(err).splitlines()[0][:100]}"
        rows.append(row)
        print(f"{name:<32} " + "  ".join(f"{k}: {v}" for k, v in row.items() if k != "step"), flush=True)
    return rows


def run_benchmark(script: str, args: list[str], out: Path | None) -> str:
    command = [sys.executable, str(HERE / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    errors = done.stderr[-2000:] if done.returncode else ""
    text = f"$ {' '.join(['python', f'benchmarks/{script}', *args])}\n{done.stdout}{errors}"
    print(text, flush=True)
    if out is not None:
        (out / f"{Path(script).stem}.txt").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small models and batches (for a CPU run)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json and the benchmarks")
    parser.add_argument("--skip-benchmarks", action="store_true")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(
        f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}), torch "
        f"{torch.__version__}; sync check: {'on' if args.device == 'cuda' else 'off (CPU)'}",
        flush=True,
    )
    rows = check_steps(args.device, args.quick)
    report = {"device": args.device, "torch": torch.__version__, "steps": rows}
    if not args.skip_benchmarks:
        size = ["--batch-size", "8", "--length", "32", "--repeats", "3"] if args.quick else ["--batch-size", "32"]
        model = ["--model", "tiny-config"] if args.quick else ["--model", "bert-base-config"]
        report["text_overhead"] = run_benchmark(
            "bench_text_overhead.py", ["--device", args.device, *model, *size], out
        )
        sizes = ["--batch-sizes", "8", "--repeats", "3"] if args.quick else []
        report["image_mixing"] = run_benchmark("bench_image_mixing.py", ["--device", args.device, *sizes], out)
    report["seconds"] = time.perf_counter() - start
    if out is not None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [r["step"] for r in rows if any(v != "ok" for k, v in r.items() if k != "step")]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} steps ok in every precision; {report['seconds']:.0f} s")
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
