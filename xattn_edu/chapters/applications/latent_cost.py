"""Time and peak memory of one attention layer against the input length N: N x N or M x N scores.

Three layers read the same N input vectors (batch 1, width D, h heads, forward pass only, no gradients):

* ``self-attention (readable)``: :class:`~xattn_edu.nn.heads.MultiHeadAttention` with ``fused=False``,
  which materialises the (h, N, N) weights;
* ``self-attention (fused)``: the same module with ``fused=True`` (``F.scaled_dot_product_attention``,
  on a CPU a flash-style kernel that works through the keys in blocks and never stores N x N);
* ``latent cross-attention``: M latent queries with the inputs as context, (h, M, N) weights.

**How memory is measured.** Each sweep runs in a fresh Python process (so the notebook's own memory
does not count and torch's profiler messages stay out of the notebook). Inside it, torch's profiler
with ``profile_memory=True`` records every allocation and release of torch's CPU allocator during one
forward pass; the peak is the largest running total of those bytes. It counts tensors (the (h, N, N)
weights, the projections, the kernels' work buffers taken from torch) and nothing else: Python
objects, the interpreter and memory a library takes with its own malloc are not in it. Time is the
median CPU time (``time.process_time``) of ``repeats`` forward passes after one warm-up, on one thread
by default, measured without the profiler: on an idle machine it equals the wall time, and on a shared
machine it does not count the time spent waiting for a core. A pass that takes over a second is timed
once, as its own warm-up. A self-attention point whose time, predicted from the previous size by the
N^2 law, exceeds ``max_point_seconds`` is skipped, as is a readable point whose weights alone would
exceed ``max_scores_bytes``: both are reported as skipped.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

KINDS = ("self-attention (readable)", "self-attention (fused)", "latent cross-attention")


@dataclass(frozen=True)
class CostConfig:
    """What one sweep measures."""

    sizes: tuple[int, ...]  # the input lengths N
    d_model: int = 64  # D, width of the inputs
    n_heads: int = 1  # h
    latents: int = 64  # M, latent queries of the cross-attention layer
    repeats: int = 3  # timed forward passes per point after a warm-up (the median is reported)
    max_scores_bytes: float = 1.1e9  # a readable point whose (h, N, N) float32 weights exceed this is skipped
    max_point_seconds: float = 30.0  # a point whose forward is predicted to take longer is skipped
    threads: int = 1  # torch threads in the worker (CPU time is summed over them); 0 = torch's default


@dataclass(frozen=True)
class CostPoint:
    """One measured point (or one skipped, with the reason)."""

    kind: str  # one of KINDS
    n: int  # N, input length
    seconds: float | None  # median CPU time of one forward pass; None when skipped
    peak_bytes: int | None  # peak bytes held by torch's CPU allocator during one forward; None when skipped
    score_bytes: int  # bytes of the attention weights this layer forms: 4 h N N or 4 h M N
    skipped: str = ""  # why the point was not measured


def score_bytes(kind: str, n: int, config: CostConfig) -> int:
    """float32 bytes of the weights matrix a layer of ``kind`` holds for N = ``n``: 4 h N^2 or 4 h M N."""
    queries = config.latents if kind == KINDS[2] else n
    return 4 * config.n_heads * queries * n


def peak_allocated(run) -> int:
    """Peak bytes held by torch's CPU allocator while ``run()`` executes, above what was held before."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    total = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        total += event.nbytes()
        peak = max(peak, total)
    return peak


def _measure(kind: str, n: int, config: CostConfig, predicted_s: float) -> CostPoint:
    import torch

    from xattn_edu.nn.heads import MultiHeadAttention

    size = score_bytes(kind, n, config)
    if kind == KINDS[0] and size > config.max_scores_bytes:
        return CostPoint(kind, n, None, None, size, f"its weights alone would take {size / 1e9:.1f} GB")
    if predicted_s > config.max_point_seconds:
        return CostPoint(kind, n, None, None, size, f"one pass would take about {predicted_s:.1f} s")
    torch.manual_seed(0)
    layer = MultiHeadAttention(config.d_model, config.n_heads, fused=kind != KINDS[0]).eval()
    inputs = torch.randn(1, n, config.d_model)
    latents = torch.randn(1, config.latents, config.d_model)

    def run():
        with torch.no_grad():
            return layer(latents, context=inputs) if kind == KINDS[2] else layer(inputs)

    times = []
    for _ in range(config.repeats + 1):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
        if times[0] > 1.0:  # a slow pass is its own warm-up
            break
    timed = times if len(times) == 1 else times[1:]
    return CostPoint(kind, n, statistics.median(timed), peak_allocated(run), size)


def sweep(config: CostConfig) -> list[CostPoint]:
    """Measure every kind at every size in this process (the worker's job; use :func:`measure_cost`)."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    points, last = [], {}
    for n in sorted(config.sizes):
        for kind in KINDS:
            growth = 1 if kind == KINDS[2] else 2  # time grows like N for the latents, N^2 for self-attention
            previous = last.get(kind)
            predicted = 0.0 if previous is None else previous.seconds * (n / previous.n) ** growth
            point = _measure(kind, n, config, predicted)
            if point.seconds is not None:
                last[kind] = point  # later sizes are predicted from the last measured one
            points.append(point)
    return points


def measure_cost(config: CostConfig, timeout_s: float = 900) -> list[CostPoint]:
    """Run :func:`sweep` in a fresh Python process and return its points.

    Raises:
        RuntimeError: the worker failed (its last lines of stderr are in the message).
    """
    result = subprocess.run([sys.executable, "-m", __name__, json.dumps(asdict(config))], capture_output=True,
                            text=True, timeout=timeout_s, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode:
        raise RuntimeError(f"the cost worker failed: {result.stderr.strip()[-600:]}")
    return [CostPoint(**json.loads(line)) for line in result.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str]) -> None:
    """Worker entry point: one JSON CostConfig in ``argv[0]``, one JSON CostPoint per line on stdout."""
    fields = json.loads(argv[0])
    config = CostConfig(**{**fields, "sizes": tuple(fields["sizes"])})
    for point in sweep(config):
        print(json.dumps(asdict(point)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])


def cost_table(points: list[CostPoint]) -> str:
    """The points as a fixed-width text table: N, then time (ms) and peak memory (MB) of every kind."""
    sizes = sorted({p.n for p in points})
    by_key = {(p.kind, p.n): p for p in points}
    header = f"{'N':>7} " + " ".join(f"{kind:>34}" for kind in KINDS)
    lines = [header, f"{'':>7} " + " ".join(f"{'time (ms)   peak (MB)':>34}" for _ in KINDS)]
    for n in sizes:
        cells = []
        for kind in KINDS:
            point = by_key.get((kind, n))
            if point is None or point.seconds is None:
                cells.append(f"{'skipped':>34}")
            else:
                cells.append(f"{1000 * point.seconds:>22.2f} {point.peak_bytes / 1e6:>11.1f}")
        lines.append(f"{n:>7} " + " ".join(cells))
    return "\n".join(lines)


def series(points: list[CostPoint], field: str, scale: float = 1.0) -> tuple[list[int], dict[str, list[float]]]:
    """(sizes, {kind: values}) of one field ("seconds" or "peak_bytes") times ``scale``; NaN where skipped."""
    sizes = sorted({p.n for p in points})
    by_key = {(p.kind, p.n): getattr(p, field) for p in points}
    return sizes, {kind: [float("nan") if by_key.get((kind, n)) is None else scale * by_key[(kind, n)]
                          for n in sizes] for kind in KINDS}
