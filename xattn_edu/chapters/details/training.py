"""One small training loop and the measurements every experiment of Chapter 5 shares.

Runs are seeded end to end (weights and data), so a (variant, seed) pair always gives the same
model; spreads across seeds are what the chapter's tables report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.chapters.details.tasks import PAD, Batch


@dataclass(frozen=True)
class Schedule:
    """How long and how fast one run trains."""

    steps: int  # optimizer steps
    batch: int = 64  # examples per step
    lr: float = 3e-3  # Adam learning rate (constant after a short warm-up)
    warmup: int = 20  # steps of linear warm-up
    record_every: int = 10  # the loss curve keeps one point (the mean loss) per this many steps


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (also usable as a decorator); the old count comes back after.

    These models are too small for intra-op threads to help, and on a busy machine threads that wait
    for each other at every operation made training steps tens of times slower (2 threads, 2 shared cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def token_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean cross-entropy over the batch's real target tokens (padding ignored)."""
    logits = model(batch.src, batch.tgt_in)  # (B, Tt, V)
    return F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)


@single_thread()
def train(model: nn.Module, next_batch: Callable[[np.random.Generator, int], Batch], schedule: Schedule,
          seed: int, after_step: Callable[[int], None] | None = None) -> list[float]:
    """Train ``model`` in place with Adam on batches ``next_batch(rng, size)``.

    ``after_step(n)``, if given, is called after optimizer step n (1, 2, ...), e.g. to take snapshots.

    Returns:
        The loss curve: the mean training loss of every ``schedule.record_every`` steps.
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr, fused=True)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / schedule.warmup))
    model.train()
    curve, window = [], []
    for step in range(1, schedule.steps + 1):
        loss = token_loss(model, next_batch(rng, schedule.batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        if after_step is not None:
            after_step(step)
            model.train()
        window.append(loss.item())
        if len(window) == schedule.record_every:
            curve.append(sum(window) / len(window))
            window = []
    model.eval()
    return curve


@torch.no_grad()
def predictions(model: nn.Module, batch: Batch) -> Tensor:
    """Teacher-forced predictions (B, Tt): the most likely token at every step."""
    model.eval()
    return model(batch.src, batch.tgt_in).argmax(-1)


def accuracy(predicted: Tensor, target: Tensor, where: Tensor | None = None) -> float:
    """Share of target tokens predicted right, over the real (non-padding) tokens selected by ``where``."""
    keep = target != PAD if where is None else (target != PAD) & where
    if not keep.any():
        return float("nan")
    return float((predicted[keep] == target[keep]).float().mean())


def param_count(model: nn.Module) -> int:
    """Trainable numbers in the model; a parameter shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters())


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with torch's generator seeded first, so the initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return build()


@dataclass(frozen=True)
class Spread:
    """A measurement over several seeds."""

    values: tuple[float, ...]  # one value per seed

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over the seeds (0 for a single seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def show(self, digits: int = 3, percent: bool = False) -> str:
        """``"0.912 ± 0.004"`` (or ``"91.2 ± 0.4 %"``)."""
        scale, unit = (100.0, " %") if percent else (1.0, "")
        precision = max(digits - 2, 0) if percent else digits
        return f"{scale * self.mean:.{precision}f} ± {scale * self.std:.{precision}f}{unit}"


def spread(values: Sequence[float]) -> Spread:
    """A :class:`Spread` of plain floats."""
    return Spread(tuple(float(v) for v in values))


def difference(new: Spread, old: Spread) -> str:
    """``new - old`` of the means, and whether it exceeds the seeds' spread (the two standard deviations added).

    Returns:
        e.g. ``"-0.006 (beyond the spread of ±0.003)"`` or ``"+0.010 (within the spread of ±0.045)"``.
    """
    change, noise = new.mean - old.mean, new.std + old.std
    return f"{change:+.3f} ({'beyond' if abs(change) > noise else 'within'} the spread of ±{noise:.3f})"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: columns as wide as their widest cell, the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                      strict=True)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])
