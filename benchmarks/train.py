"""Train a preset, then score it on its test split; print one JSON object.

    python benchmarks/train.py                      # tiny preset on this machine's CPU
    python benchmarks/train.py --preset multi30k --data-dir DIR --device cuda
    python benchmarks/train.py --set optim.max_tokens=600 --set val_sample=500 --set stop_exact_match=0   # a variant

Reports the wall time of the whole ``train`` call (corpus, tokenizers, training, periodic
validation, checkpoints), the training-loop time alone, target tokens per second, the
first validation step whose greedy exact match reached the goal, and the test-split
scores of :func:`xattn_edu.translate.evaluate.evaluate`. The 1-minute load average before and after
and the process's CPU seconds are recorded because on a shared machine other processes
slow the run down (CPU seconds / threads approximates the wall time on an idle machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time

import torch

from xattn_edu.cli import _settings
from xattn_edu.common.device import hardware_info, resolve_device
from xattn_edu.translate.config import get_preset
from xattn_edu.translate.evaluate import evaluate
from xattn_edu.translate.train import train


def main() -> None:
    """Train the preset, evaluate it on the test split; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--goal", type=float, default=95.0, help="validation exact match, percent")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting, typed as `xattn train --set` types it (repeatable)")
    args = parser.parse_args()

    cfg = get_preset(args.preset).with_values(_settings(args.set))
    if args.steps:
        cfg = cfg.with_values({"optim.steps": args.steps})
    if args.data_dir:
        cfg = cfg.with_values({"data.data_dir": args.data_dir})
    hardware = hardware_info(resolve_device(args.device))  # includes the load average before the run
    with tempfile.TemporaryDirectory() as out:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = train(cfg, out, device=args.device, progress=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        report, _ = evaluate(out, split="test", device=args.device)
    reached = next((v for v in result.validations if v.get("exact_match", 0) >= args.goal), {})
    print(json.dumps({
        "preset": args.preset,
        "settings": args.set,
        "date": datetime.date.today().isoformat(),
        **hardware,
        "threads": result.threads or torch.get_num_threads(),  # CPU threads training chose (else torch's)
        "load_average_after": round(os.getloadavg()[0], 2),
        "steps": result.step,
        "stopped_at_stop_exact_match": result.reached_goal,
        "train_call_seconds": wall,
        "train_call_cpu_seconds": cpu,  # all threads of this process; less sensitive to other load
        "train_loop_seconds": result.seconds,
        "target_tokens_per_second": result.target_tokens_per_second,
        "first_val_step_at_goal": reached.get("step"),
        "train_loop_seconds_to_goal": reached.get("seconds"),
        "validations": result.validations,
        "test": report.to_dict(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
