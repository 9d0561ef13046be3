"""A MixupTrainer run under `accelerate launch` with 2 processes on CPU (gloo); run by `tests/test_trainer.py`.

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml --main_process_port 29517 \
        tests/multiprocess_train.py --output_dir /tmp/hiddenmix-2proc

Each process writes `rank<r>.pt` with the λ and partners it drew, its final weights and (rank 0) the λ of every rank
gathered across processes; the test checks the ranks drew different plans and ended with identical weights.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification

from hiddenmix import MixupTrainer, MixupTrainingArguments

VOCAB, SEQ = 64, 12


class RecordingTrainer(MixupTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.plans = [*getattr(self, "plans", []), self.last_plan]
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--unlabeled", action="store_true", help="add unlabelled rows (MixText's step)")
    cli = parser.parse_args()

    torch.manual_seed(0)  # the same initial weights on every rank
    config = AutoConfig.for_model(
        "bert", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    model = AutoModelForSequenceClassification.from_config(config)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    n = 32
    mask = (torch.arange(SEQ)[None] < torch.randint(4, SEQ + 1, (n,), generator=g)[:, None]).long()
    data = Dataset.from_dict(
        {
            "input_ids": (torch.randint(5, VOCAB, (n, SEQ), generator=g) * mask).tolist(),
            "attention_mask": mask.tolist(),
            "labels": torch.randint(0, 3, (n,), generator=g).tolist(),
        }
    )
    args = MixupTrainingArguments(
        output_dir=cli.output_dir,
        use_cpu=True,  # gloo on CPU; without it each process would silently train alone
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,  # exercises no_sync on the first micro-batch and the global row count
        max_steps=cli.max_steps,
        learning_rate=1e-3,
        logging_steps=1,  # exercises the cross-process reduction of the mixing statistics
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,  # the same seed on every rank: the rank offsets the mixing stream
        mixup_alpha=1.0,
        # two forwards before one backward under DDP: a clean one, or the guesses' no-gradient ones
        clean_loss_weight=0.0 if cli.unlabeled else 0.5,
        unlabeled_batch_size=3 if cli.unlabeled else None,
        unlabeled_augment="swap" if cli.unlabeled else "token_dropout",
    )
    unlabeled = data.remove_columns("labels") if cli.unlabeled else None
    trainer = RecordingTrainer(model=model, args=args, train_dataset=data, unlabeled_dataset=unlabeled)
    drawn = []  # the unlabelled rows each step of this process drew
    if cli.unlabeled:
        stream, draw = trainer.unlabeled.stream, trainer.unlabeled.stream.next

        def recorded_next():
            step = stream.position % stream.per_epoch
            batch = draw()
            start = (step * stream.world_size + stream.rank) * stream.batch_size
            drawn.append(stream._order[1][start : start + stream.batch_size])
            return batch

        stream.next = recorded_next
    trainer.train()

    accelerator = trainer.accelerator
    lams = torch.stack([plan.lam_target for plan in trainer.plans])  # (micro-steps, B)
    indices = torch.stack([plan.index for plan in trainer.plans])  # (micro-steps, B)
    gathered = accelerator.gather(lams[None].contiguous())  # (processes, micro-steps, B)
    rank = accelerator.process_index
    result = {
        "world_size": accelerator.num_processes,
        "lams": lams,
        "indices": indices,
        "gathered_lams": gathered,
        "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "initial": initial,
        "logs": trainer.state.log_history,
        "unlabeled_rows": drawn,
        "done": True,
    }
    # Written whole then renamed, so a file that exists is complete.
    path = os.path.join(cli.output_dir, f"rank{rank}.pt")
    torch.save(result, path + ".tmp")
    os.replace(path + ".tmp", path)

    # Shutting down. With torch 2.13 on CPU, a gloo process intermittently aborts *after* its work is done, while the
    # interpreter finalizes (C++ static destructors racing gloo's background threads: "terminate called without an
    # active exception", SIGABRT), even after destroy_process_group(). That abort says nothing about the training,
    # but it would turn the launcher's exit code, and so the test, red at random. So: wait until every rank has
    # written its results (barrier), tear the process group down, flush what Python buffers, and leave with
    # os._exit(0), which skips interpreter finalization and with it the racy destructors. Nothing is lost: the
    # results are on disk (written whole, then renamed) before the barrier, and nothing else needs finalizing.
    # A failure anywhere above still raises and exits non-zero, so the exit code keeps its meaning.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
