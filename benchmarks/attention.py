"""Readable vs fused scaled dot-product attention, forward + backward.

Prints one JSON object: hardware, dtype and, per shape, the median milliseconds of each path
and the achieved TFLOP/s (4·B·h·Tq·Tk·Dh for the forward, 2.5× that for forward+backward).
On CPU it uses float32 and smaller batches at T=2048; on a GPU bf16 and DESIGN §8's shape.

    python benchmarks/attention.py [--device cpu|cuda] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from xattn_edu.common.device import default_device, hardware_info, resolve_device, synchronize
from xattn_edu.nn.attention import scaled_dot_product_attention

# (name, B, h, T, Dh)
COURSE_SHAPES = [("course: B32 h4 T32 Dh32", 32, 4, 32, 32), ("course: B64 h8 T64 Dh64", 64, 8, 64, 64)]
LONG_CPU = ("long: B1 h4 T2048 Dh64", 1, 4, 2048, 64)
LONG_GPU = ("long: B16 h16 T2048 Dh64", 16, 16, 2048, 64)


def time_fwd_bwd(fused: bool, shape: tuple, device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """Median milliseconds of one causal forward+backward pass."""
    _, B, h, T, Dh = shape
    q, k, v = (torch.randn(B, h, T, Dh, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]  # (1, 1, T, T)
    times = []
    for i in range(repeats + 2):  # two warm-up runs
        synchronize(device)
        start = time.perf_counter()
        scaled_dot_product_attention(q, k, v, mask, fused=fused).sum().backward()
        synchronize(device)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
        q.grad = k.grad = v.grad = None
    return statistics.median(times)


def main() -> None:
    """Time both attention paths at each shape; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(default_device()))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = COURSE_SHAPES + [LONG_GPU if device.type == "cuda" else LONG_CPU]
    results = []
    for shape in shapes:
        _, B, h, T, Dh = shape
        flops = 2.5 * 4 * B * h * T * T * Dh
        row = {"shape": shape[0]}
        for name, fused in (("readable", False), ("fused", True)):
            ms = time_fwd_bwd(fused, shape, device, dtype, args.repeats)
            row[f"{name}_ms"] = round(ms, 3)
            row[f"{name}_tflops"] = round(flops / (ms * 1e-3) / 1e12, 4)
        row["speedup"] = round(row["readable_ms"] / row["fused_ms"], 2)
        results.append(row)
    print(json.dumps({
        "benchmark": "attention forward+backward (causal mask)",
        **hardware_info(device),
        "dtype": str(dtype).replace("torch.", ""),
        "repeats": args.repeats,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
