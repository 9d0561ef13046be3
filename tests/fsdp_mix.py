"""The mixer on a model whose layers and root are sharded by FSDP2 (`fully_shard`), 2 processes over gloo on CPU;
run by `tests/test_scale.py` with torchrun.

    torchrun --nproc_per_node 2 tests/fsdp_mix.py OUTPUT_DIR

Each rank mixes the same fixed plan through the sharded model and through an unsharded copy, and writes whether the
logits and the gradients (gathered from their shards) agree, with what the mixer's record says it did.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import padded_batch, tiny_model  # noqa: E402

from hiddenmix import HiddenMixer, MixConfig, MixPlan  # noqa: E402


def main(output_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    sharded, plain = tiny_model("bert", dropout=False).train(), tiny_model("bert", dropout=False).train()
    for layer in sharded.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(sharded)
    batch, labels = padded_batch("bert")
    plan = MixPlan.from_lam(torch.tensor([1, 0, 3, 2]), 0.6, layer=1, token_mask=batch["attention_mask"].bool())
    results = {}
    for name, model in (("sharded", sharded), ("plain", plain)):
        mixer = HiddenMixer(model, MixConfig(site="hidden", seed=0))
        with mixer.use_plan(plan):
            logits = model(**batch).logits
        mixer.loss(logits, labels, plan).backward()
        grads = {
            k: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).detach().clone()
            for k, p in model.named_parameters()
        }
        results[name] = {"logits": logits.detach().clone(), "grads": grads, "record": vars(mixer.last_forward)}
        mixer.remove()
    results["wrapped"] = type(sharded).__name__
    path = os.path.join(output_dir, f"rank{rank}.pt")
    torch.save(results, path + ".tmp")
    os.replace(path + ".tmp", path)
    # gloo on CPU can abort at interpreter exit after the work is done (see tests/multiprocess_train.py): written
    # whole above, so leave without the interpreter's teardown
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
