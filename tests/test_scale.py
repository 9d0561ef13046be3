"""The scale paths that run on a CPU machine: FSDP2-sharded layers (torchrun over gloo). The 2-process DDP launches
with the shipped accelerate config are in test_trainer.py, test_train_text.py and test_train_tokens.py."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp2_sharded_layers_mix_exactly_as_the_unsharded_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(TESTS / "fsdp_mix.py"),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    files = [tmp_path / f"rank{r}.pt" for r in (0, 1)]
    # gloo's abort at interpreter exit (after the files were written whole) says nothing about the run
    assert done.returncode == 0 or all(f.is_file() for f in files), done.stderr[-3000:]
    for f in files:
        result = torch.load(f, weights_only=False)
        assert result["wrapped"].startswith("FSDP")  # really sharded by fully_shard
        sharded, plain = result["sharded"], result["plain"]
        assert sharded["record"] == plain["record"] and sharded["record"]["applied"]
        assert sharded["record"]["masks_united"] == sharded["record"]["layer_calls_after_mix"] > 0
        torch.testing.assert_close(sharded["logits"], plain["logits"], rtol=1e-5, atol=1e-6)
        for name, grad in plain["grads"].items():
            torch.testing.assert_close(sharded["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_the_gpu_check_script_runs_every_step_in_every_precision_here(tmp_path):
    # On a CPU the sync check is off; the steps, their bf16 variants and the report are the same code the GPU runs.
    script = TESTS.parent / "benchmarks" / "gpu_check.py"
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--quick", "--skip-benchmarks", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import json

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert len(report["steps"]) == 9
    assert all(row[mode] == "ok" for row in report["steps"] for mode in ("fp32", "bf16 autocast", "bf16 weights"))
