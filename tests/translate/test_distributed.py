"""Two CPU processes (gloo) under torchrun train exactly like one process on the same batches.

Every process computes the same bucketed plan and takes half the rows of each batch
(2 ranks × B/2 rows against 1 rank × B rows). Each scales its summed loss by
``world_size / target tokens of the whole batch``, so DDP's gradient average is exactly the
gradient of the mean loss per token over the whole batch, as in the single-process run.
Dropout is off, so the only difference left is floating-point summation order.
"""

import json
import os
import subprocess
import sys
import textwrap

import torch

from xattn_edu.translate import checkpoint
from xattn_edu.translate.config import get_preset
from xattn_edu.translate.train import train

CONFIG = {
    "data.n_train": 240, "data.n_val": 8, "data.n_test": 8, "model.d_model": 32, "model.n_heads": 2,
    "model.n_encoder_layers": 1, "model.n_decoder_layers": 1, "model.d_ff": 64, "model.dropout": 0.0,
    "optim.steps": 4, "optim.max_tokens": 500, "optim.warmup": 2, "log_every": 1, "eval_every": 0, "save_every": 0,
    "val_sample": 0,
}  # fmt: skip

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from xattn_edu.translate.config import get_preset
    from xattn_edu.translate.train import train

    out = sys.argv[1]
    cfg = get_preset("tiny").with_values(json.loads(sys.argv[2]))
    result = train(cfg, out, device="cpu", quiet=True)
    rank = dist.get_rank()
    os.makedirs(out, exist_ok=True)  # rank 1 may finish before rank 0 has written the checkpoint
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"history": result.history, "world": dist.get_world_size()}, f)
    dist.destroy_process_group()
    """
)


def test_two_gloo_processes_match_one_process(tmp_path):
    cfg = get_preset("tiny").with_values(CONFIG)
    single = train(cfg, tmp_path / "single", device="cpu", quiet=True)

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(out), json.dumps(CONFIG)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["history"] == ranks[1]["history"]  # the reported loss is summed over both processes
    steps = [step for step, _ in ranks[0]["history"]]
    assert steps == [step for step, _ in single.history] == [1, 2, 3, 4]
    ddp_losses = torch.tensor([loss for _, loss in ranks[0]["history"]])
    single_losses = torch.tensor([loss for _, loss in single.history])
    torch.testing.assert_close(ddp_losses, single_losses, rtol=1e-5, atol=1e-5)

    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    saved = checkpoint.load(out).model  # written by rank 0 only
    assert all(torch.equal(saved[name], rank0[name]) for name in rank0)
    assert [p.name for p in out.glob(".*")] == []  # no temporary file left by the atomic write
    # Adam divides by the gradient's running RMS, so summation-order noise in a near-zero gradient
    # can flip the sign of that coordinate's step: such a weight may differ by up to 2·lr per step.
    # Every weight must stay within that bound, and nearly all must agree to 2e-4.
    step_bound = 2 * cfg.optim.lr * cfg.optim.steps
    close, total = 0, 0
    for name, tensor in single.model.state_dict().items():
        difference = (rank0[name] - tensor).abs()
        assert difference.max() <= step_bound, f"{name} differs by {difference.max():.2e}"
        close += int((difference <= 2e-4).sum())
        total += difference.numel()
    assert close / total >= 0.99
