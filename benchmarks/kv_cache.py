"""Greedy decoding with and without the static (cross-attention) and growing (self-attention) K/V caches.

Prints one JSON object: hardware, workload, and per (mode, output length) the median milliseconds per
generated token (whole batch, encoder included) and the analytic attention projection GFLOPs, the
speedup of both caches over none at each length, and the largest logit difference between cached
decoding and the full forward pass. Same measurement as Chapter 3 (xattn_edu.chapters.two_modes.kv_cache).

    python benchmarks/kv_cache.py [--device cpu|cuda] [--repeats 5] [--threads 1] [--lengths 8 16 ... 256]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from xattn_edu.chapters.two_modes.kv_cache import LENGTHS, BenchConfig, measure_decoding
from xattn_edu.common.device import default_device, hardware_info, resolve_device


def main() -> None:
    """Time greedy decoding in every cache mode; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(default_device()))
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing (0: torch's choice)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS), help="output lengths T")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cfg = BenchConfig(repeats=args.repeats)
    report = measure_decoding(cfg, tuple(args.lengths), device, threads=args.threads or None)
    lengths = sorted({row.steps for row in report.rows})
    print(json.dumps({
        "benchmark": "greedy decoding: static cross-attention K/V cache and growing self-attention K/V cache",
        **hardware_info(device),
        "torch_threads": args.threads or torch.get_num_threads(),
        "workload": dataclasses.asdict(cfg),
        "results": [
            {**dataclasses.asdict(row), "ms_per_token": round(row.ms_per_token, 3),
             "cpu_ms_per_token": round(row.cpu_ms_per_token, 3), "projection_gflops": round(row.projection_gflops, 4)}
            for row in report.rows
        ],
        "speedup_both_caches_vs_none_wall": {str(t): round(report.speedup(t), 2) for t in lengths},
        "speedup_both_caches_vs_none_cpu": {str(t): round(report.speedup(t, cpu=True), 2) for t in lengths},
        "max_logit_difference_vs_full_forward": report.max_logit_difference,
    }, indent=2))


if __name__ == "__main__":
    main()
