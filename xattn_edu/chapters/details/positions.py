"""Part 1 of Chapter 5: where does position go in cross-attention? Measured on a copy task full of repeats.

The model (:class:`~xattn_edu.chapters.details.model.DetailsModel`) has a position-free encoder and a
position-free decoder self-attention, so position reaches the cross-attention only where the
placement puts it. The task copies sources of 5-10 tokens drawn from 6 symbols, so almost every source
repeats a token; copying needs to know *where* each token is.

For each placement the experiment trains one model per seed and measures teacher-forced accuracy (on
every target token, on tokens that occur more than once in their source, and on tokens that occur
once), the weight the last cross-attention's most aligned head puts on the right source position, and
how differently
it treats two copies of a token: ``|w[a] - w[b]|`` over every step, head and layer and every pair of
positions a, b holding the same token.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from xattn_edu.chapters.details.model import PLACEMENTS, DetailsConfig, DetailsModel
from xattn_edu.chapters.details.tasks import FIRST, PAD, Batch, copy_pairs, make_batch, repeated
from xattn_edu.chapters.details.training import (
    Schedule,
    Spread,
    accuracy,
    predictions,
    seeded,
    single_thread,
    spread,
    text_table,
    train,
)

PROBE = "ABCADBA"
"""A source with three A's and two B's, used for the figures and the widget."""


@dataclass(frozen=True)
class PositionsSetup:
    """The copy task and the training of Part 1."""

    symbols: int = 6  # distinct tokens: sources of 5-10 tokens almost always repeat some
    lengths: tuple[int, int] = (5, 10)  # shortest and longest source
    d_model: int = 32  # D
    n_heads: int = 2  # h
    schedule: Schedule = field(default_factory=lambda: Schedule(steps=250))  # per run
    seeds: tuple[int, ...] = (0, 1, 2)  # one trained model per seed and placement
    validation: int = 500  # held-out sources

    @classmethod
    def for_mode(cls, fast: bool) -> PositionsSetup:
        """The full experiment, or a seconds-long version of it (``XATTN_FAST=1``)."""
        return cls(schedule=Schedule(steps=15), seeds=(0, 1), validation=100) if fast else cls()

    def build(self, placement: str) -> DetailsModel:
        """A fresh model for this placement."""
        vocab = FIRST + self.symbols
        return DetailsModel(DetailsConfig(vocab, vocab, d_model=self.d_model, n_heads=self.n_heads,
                                          positions=placement))

    def batches(self, rng: np.random.Generator, size: int) -> Batch:
        """Fresh training examples."""
        return copy_pairs(rng, size, self.symbols, self.lengths)


def symbol_batch(text: str) -> Batch:
    """A one-example copy batch from letters: "ABCA" → ids of A, B, C, A (A is the first symbol)."""
    ids = np.array([[FIRST + string.ascii_uppercase.index(letter) for letter in text]])
    return make_batch(ids, ids)


@torch.no_grad()
def cross_weights(model: DetailsModel, batch: Batch) -> list[Tensor]:
    """Teacher-forced cross-attention weights of every decoder layer, each (B, h, Tt, Ts)."""
    model.eval()
    return model.from_source_vectors(model.embed_source(batch.src), batch.src, batch.tgt_in, return_weights=True)[1]


@dataclass(frozen=True)
class CopyGap:
    """How differently attention treats two copies of one token."""

    mean: float  # mean |w[a] - w[b]| over steps, heads, layers and pairs of copies
    largest: float  # the largest such difference


def copy_gap(model: DetailsModel, batch: Batch) -> CopyGap:
    """``|w[a] - w[b]|`` over every real target step, head and layer, for every pair a < b of copies."""
    src = batch.src
    same = (src[:, :, None] == src[:, None, :]) & (src[:, :, None] != PAD)  # (B, Ts, Ts)
    pairs = same & torch.ones_like(same[0]).triu(1)  # a < b
    rows = batch.tgt_out != PAD  # (B, Tt)
    keep = rows[:, None, :, None, None] & pairs[:, None, None, :, :]  # (B, 1, Tt, Ts, Ts)
    gaps = []
    for weights in cross_weights(model, batch):
        difference = (weights[..., :, None] - weights[..., None, :]).abs()  # (B, h, Tt, Ts, Ts)
        gaps.append(difference[keep.expand_as(difference)])
    every = torch.cat(gaps)
    return CopyGap(float(every.mean()), float(every.max())) if every.numel() else CopyGap(0.0, 0.0)


def aligned_per_head(model: DetailsModel, batch: Batch) -> Tensor:
    """(h,) mean weight that each head of the last cross-attention puts on source position t at step t."""
    weights = cross_weights(model, batch)[-1]  # (B, h, Tt, Ts)
    steps = min(weights.shape[2], weights.shape[3])
    diagonal = weights[:, :, torch.arange(steps), torch.arange(steps)]  # (B, h, steps)
    real = (batch.tgt_out[:, :steps] != PAD)[:, None, :].expand_as(diagonal)
    return (diagonal * real).sum((0, 2)) / real.sum((0, 2))


def aligned_weight(model: DetailsModel, batch: Batch) -> float:
    """The weight on the right source position in the last cross-attention's most aligned head."""
    return float(aligned_per_head(model, batch).max())


@dataclass(frozen=True)
class PlacementResult:
    """Part 1's measurements for one placement, over the seeds."""

    placement: str  # one of PLACEMENTS
    accuracy: Spread  # teacher-forced accuracy on every target token
    on_repeated: Spread  # ... on tokens that occur more than once in their source
    on_unique: Spread  # ... on tokens that occur once
    aligned: Spread  # weight on the right source position (last layer, most aligned head)
    gap: Spread  # mean |w[a] - w[b]| between copies a, b
    largest_gap: float  # the largest |w[a] - w[b]| seen in any run
    model: DetailsModel  # the model trained with the first seed (figures, widget)


def measure_placement(placement: str, setup: PositionsSetup) -> PlacementResult:
    """Train one model per seed with this placement and measure it on held-out sources."""
    validation = setup.batches(np.random.default_rng(10_000), setup.validation)
    twice = repeated(validation.src)
    rows: list[dict[str, float]] = []
    models = []
    for seed in setup.seeds:
        model = seeded(lambda: setup.build(placement), seed)
        train(model, setup.batches, setup.schedule, seed)
        predicted = predictions(model, validation)
        gap = copy_gap(model, validation)
        rows.append({"accuracy": accuracy(predicted, validation.tgt_out),
                     "on_repeated": accuracy(predicted, validation.tgt_out, twice),
                     "on_unique": accuracy(predicted, validation.tgt_out, ~twice),
                     "aligned": aligned_weight(model, validation), "gap": gap.mean, "largest": gap.largest})
        models.append(model)
    column = {key: spread([row[key] for row in rows]) for key in rows[0]}
    return PlacementResult(placement, column["accuracy"], column["on_repeated"], column["on_unique"],
                           column["aligned"], column["gap"], max(column["largest"].values), models[0])


@single_thread()
def measure_placements(setup: PositionsSetup, placements: tuple[str, ...] = PLACEMENTS) -> list[PlacementResult]:
    """:func:`measure_placement` for every placement."""
    return [measure_placement(placement, setup) for placement in placements]


def placement_table(results: list[PlacementResult]) -> str:
    """The measured table of Part 1: mean ± standard deviation over the seeds."""
    header = ("position on", "accuracy", "repeated tokens", "unique tokens", "weight on right position",
              "copy gap (mean)", "copy gap (largest)")
    return text_table(header, [(r.placement, r.accuracy.show(), r.on_repeated.show(), r.on_unique.show(),
                                r.aligned.show(), r.gap.show(4), f"{r.largest_gap:.3g}") for r in results])


def placement_findings(results: list[PlacementResult]) -> list[str]:
    """Sentences read off the measurements (so the notebook's conclusions are computed, not typed)."""
    blind = [r.placement for r in results if r.largest_gap == 0.0]
    lines = [f"two copies of a token got exactly equal weights, at every step, head and seed, with: "
             f"{', '.join(blind) or 'no placement'}"]
    for r in results:
        if r.placement in blind:
            lines.append(f"{r.placement}: accuracy on tokens that occur once {r.on_unique.show()}, on repeated "
                         f"tokens {r.on_repeated.show()}")
    best = max(results, key=lambda r: (r.accuracy.mean, -r.accuracy.std))
    lines.append(f"best accuracy: {best.placement} ({best.accuracy.show()})")
    return lines
