"""Part 2 of Chapter 5: leakage from a bidirectional encoder, made real and then measured.

The task is streaming prediction: the source is a Markov chain x_0..x_{L-1}, and decoder step t must
output x_{t+1}, the next source token. At inference a streaming system has read only the source
prefix x_0..x_{t+k-1} when it writes step t (the wait-k policy; k = 1 here), so x_{t+1} does not
exist yet and the best honest guess is the chain's likely successor of x_t. During training, though,
the whole source is there, and a model may learn to read the answer from it.

Four models are trained, crossing the encoder (bidirectional or causal) with the cross-attention
(every source position, or the wait-k mask), and each is measured three ways:

* **the leak itself**: the share of the gradient of step t's log-probability that comes from source
  positions ``>= t + k`` (:func:`~xattn_edu.chapters.details.reference.future_influence`), and how much
  step t's output distribution moves (total variation) when those tokens are replaced by random ones;
* **its consequence**: teacher-forced accuracy with the whole source (what training reports) against
  honest streaming accuracy, where step t is computed from the prefix alone.

For contrast, ordinary translation: reversing the source, where the whole source legitimately exists at
inference and the first output word *is* the last source word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from xattn_edu.chapters.details.model import DetailsConfig, DetailsModel
from xattn_edu.chapters.details.reference import future_influence
from xattn_edu.chapters.details.tasks import BOS, FIRST, Batch, MarkovSource
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

Probe = Callable[[Callable[[Tensor], Tensor], Tensor, int, int], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Variant:
    """One way of wiring the encoder and the cross-attention."""

    label: str  # how tables and figures name it
    causal_encoder: bool  # source position j sees only positions <= j
    wait_k: int | None  # cross-attention mask of training and inference; None = whole source


VARIANTS = (
    Variant("bidirectional encoder, full cross-attention", False, None),
    Variant("causal encoder, full cross-attention", True, None),
    Variant("bidirectional encoder, wait-k cross-attention", False, 1),
    Variant("causal encoder, wait-k cross-attention", True, 1),
)


@dataclass(frozen=True)
class LeakageSetup:
    """The streaming task and the training of Part 2."""

    states: int = 8  # V, content tokens of the Markov chain
    stay: float = 0.6  # probability of each state's likely successor (the best honest accuracy)
    length: int = 10  # L, source length
    k: int = 1  # the streaming policy at inference: step t has read x_0 .. x_{t+k-1}
    d_model: int = 32  # D
    n_heads: int = 2  # h
    schedule: Schedule = field(default_factory=lambda: Schedule(steps=250))  # per run
    seeds: tuple[int, ...] = (0, 1, 2)  # one trained model per seed and variant
    validation: int = 500  # held-out sequences for accuracy
    probed: int = 100  # of which this many are probed for the leak

    @classmethod
    def for_mode(cls, fast: bool) -> LeakageSetup:
        """The full experiment, or a seconds-long version of it (``XATTN_FAST=1``)."""
        return cls(schedule=Schedule(steps=15), seeds=(0, 1), validation=100, probed=20) if fast else cls()

    @property
    def chain(self) -> MarkovSource:
        return MarkovSource.random(self.states, self.stay, seed=0)

    def build(self, variant: Variant) -> DetailsModel:
        """A fresh model wired as ``variant``."""
        vocab = FIRST + self.states
        return DetailsModel(DetailsConfig(vocab, vocab, d_model=self.d_model, n_heads=self.n_heads,
                                          causal_encoder=variant.causal_encoder, wait_k=variant.wait_k))


@torch.no_grad()
def honest_predictions(model: DetailsModel, batch: Batch, k: int) -> Tensor:
    """Streaming predictions (B, Tt): step t is computed from the source prefix of length t + k only."""
    model.eval()
    predicted = torch.empty_like(batch.tgt_out)
    source_len, steps = batch.src.shape[1], batch.tgt_in.shape[1]
    for t in range(steps):
        prefix = min(t + k, source_len)
        predicted[:, t] = model(batch.src[:, :prefix], batch.tgt_in[:, : t + 1])[:, t].argmax(-1)
    return predicted


def gold_log_probs(model: DetailsModel, batch: Batch) -> Callable[[Tensor], Tensor]:
    """``source vectors (B, Ts, D) → (B, Tt)`` log-probability of the right token at every step."""

    def score(vectors: Tensor) -> Tensor:
        logits = model.from_source_vectors(vectors, batch.src, batch.tgt_in)  # (B, Tt, V)
        return logits.log_softmax(-1).gather(-1, batch.tgt_out[..., None])[..., 0]

    return score


@dataclass(frozen=True)
class LeakProfile:
    """Where one model's decoder steps get their gradient from."""

    influence: np.ndarray  # (Tt, Ts) mean gradient norm, each row scaled to sum to 1
    future_share: np.ndarray  # (Tt,) mean share of step t's influence from positions >= t + k


def leak_profile(model: DetailsModel, batch: Batch, k: int, probe: Probe = future_influence) -> LeakProfile:
    """Probe every decoder step of ``model`` on ``batch`` with ``probe`` (the leakage probe's signature)."""
    model.eval()
    vectors = model.embed_source(batch.src).detach()
    score = gold_log_probs(model, batch)
    rows, shares = [], []
    for t in range(batch.tgt_in.shape[1]):
        influence, share = probe(score, vectors, t, t + k)
        influence = torch.as_tensor(influence).mean(0)
        rows.append((influence / influence.sum().clamp_min(1e-30)).numpy())
        shares.append(float(torch.as_tensor(share).mean()))
    return LeakProfile(np.stack(rows), np.array(shares))


@torch.no_grad()
def resample_change(model: DetailsModel, batch: Batch, k: int, states: int, seed: int = 0) -> float:
    """Mean total-variation distance of step t's output when source positions >= t + k are redrawn at random."""
    model.eval()
    rng = torch.Generator().manual_seed(seed)
    before = model(batch.src, batch.tgt_in).softmax(-1)  # (B, Tt, V)
    changes = []
    for t in range(batch.tgt_in.shape[1]):
        src = batch.src.clone()
        future = src[:, t + k:]
        src[:, t + k:] = FIRST + torch.randint(0, states, future.shape, generator=rng)
        after = model(src, batch.tgt_in)[:, t].softmax(-1)
        changes.append(0.5 * (after - before[:, t]).abs().sum(-1).mean())
    return float(torch.stack(changes).mean())


@dataclass(frozen=True)
class LeakResult:
    """Part 2's measurements for one variant, over the seeds."""

    variant: Variant
    train_accuracy: Spread  # teacher forcing with the whole source (what a training log reports)
    honest_accuracy: Spread  # streaming: step t sees the source prefix of length t + k only
    gap: Spread  # train_accuracy - honest_accuracy, per seed
    future_share: Spread  # share of the gradient from source positions >= t + k, mean over steps
    output_change: Spread  # total variation of step t's output when those positions are redrawn
    profile: LeakProfile  # the first seed's model (figures, widget)


def measure_variant(variant: Variant, setup: LeakageSetup, probe: Probe = future_influence) -> LeakResult:
    """Train one model per seed wired as ``variant`` and measure its leak and its streaming accuracy."""
    chain = setup.chain
    validation = chain.shifted(np.random.default_rng(10_000), setup.validation, setup.length)
    probed = validation.rows(np.arange(setup.probed))
    columns: dict[str, list[float]] = {"train": [], "honest": [], "share": [], "change": []}
    profiles = []
    for seed in setup.seeds:
        model = seeded(lambda: setup.build(variant), seed)
        train(model, lambda rng, n: chain.shifted(rng, n, setup.length), setup.schedule, seed)
        columns["train"].append(accuracy(predictions(model, validation), validation.tgt_out))
        columns["honest"].append(accuracy(honest_predictions(model, validation, setup.k), validation.tgt_out))
        profiles.append(leak_profile(model, probed, setup.k, probe))
        columns["share"].append(float(profiles[-1].future_share.mean()))
        columns["change"].append(resample_change(model, probed, setup.k, setup.states, seed))
    gaps = [a - b for a, b in zip(columns["train"], columns["honest"], strict=True)]
    return LeakResult(variant, spread(columns["train"]), spread(columns["honest"]), spread(gaps),
                      spread(columns["share"]), spread(columns["change"]), profiles[0])


@single_thread()
def measure_leakage(setup: LeakageSetup, probe: Probe = future_influence) -> list[LeakResult]:
    """:func:`measure_variant` for each of the four :data:`VARIANTS`."""
    return [measure_variant(variant, setup, probe) for variant in VARIANTS]


@torch.no_grad()
def greedy(model: DetailsModel, src: Tensor, steps: int) -> Tensor:
    """Greedy decoding from the whole source: (B, Ts) → (B, steps) predicted ids."""
    model.eval()
    written = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    for _ in range(steps):
        written = torch.cat([written, model(src, written)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return written[:, 1:]


@dataclass(frozen=True)
class ContrastResult:
    """Ordinary translation (reversal) for one variant, over the seeds."""

    variant: Variant
    teacher_forced: Spread  # accuracy with the gold history and the whole source
    decoded: Spread  # greedy decoding with the whole source: what inference does in translation
    future_share: Spread  # share of the gradient from source positions >= t + k (legitimate here)


@single_thread()
def measure_contrast(setup: LeakageSetup, probe: Probe = future_influence,
                     variants: tuple[Variant, ...] = (VARIANTS[0], VARIANTS[3])) -> list[ContrastResult]:
    """Train the given variants to reverse the source and measure them with the whole source available."""
    chain = setup.chain
    validation = chain.reversed(np.random.default_rng(10_000), setup.validation, setup.length)
    probed = validation.rows(np.arange(setup.probed))
    results = []
    for variant in variants:
        columns: dict[str, list[float]] = {"forced": [], "decoded": [], "share": []}
        for seed in setup.seeds:
            model = seeded(lambda: setup.build(variant), seed)  # noqa: B023 - called at once
            train(model, lambda rng, n: chain.reversed(rng, n, setup.length), setup.schedule, seed)
            columns["forced"].append(accuracy(predictions(model, validation), validation.tgt_out))
            decoded = greedy(model, validation.src, validation.tgt_out.shape[1])
            columns["decoded"].append(accuracy(decoded, validation.tgt_out))
            columns["share"].append(float(leak_profile(model, probed, setup.k, probe).future_share.mean()))
        results.append(ContrastResult(variant, *(spread(columns[key]) for key in ("forced", "decoded", "share"))))
    return results


def leakage_table(results: list[LeakResult]) -> str:
    """The measured table of Part 2: mean ± standard deviation over the seeds."""
    header = ("wiring", "train-time accuracy", "streaming accuracy", "gap", "future share of gradient",
              "output change (future redrawn)")
    return text_table(header, [(r.variant.label, r.train_accuracy.show(), r.honest_accuracy.show(), r.gap.show(),
                                r.future_share.show(), r.output_change.show()) for r in results])


def contrast_table(results: list[ContrastResult]) -> str:
    """The reversal contrast: mean ± standard deviation over the seeds."""
    header = ("wiring", "teacher-forced accuracy", "decoded accuracy (whole source)", "future share of gradient")
    return text_table(header, [(r.variant.label, r.teacher_forced.show(), r.decoded.show(), r.future_share.show())
                               for r in results])


def leakage_findings(results: list[LeakResult], setup: LeakageSetup) -> list[str]:
    """Sentences read off the measurements (so the notebook's conclusions are computed, not typed)."""
    best = setup.chain.best_next_accuracy()
    lines = [f"best possible streaming accuracy (guess the likely successor): {best:.3f}; "
             f"chance: {1 / setup.states:.3f}"]
    for r in results:
        sealed = max(r.future_share.values) == 0.0 and max(r.output_change.values) == 0.0
        path = "no path from the future (both measures exactly 0)" if sealed else "the future reaches step t"
        lines.append(f"{r.variant.label}: {path}; train-time minus streaming accuracy {r.gap.show()}")
    return lines
