"""Part 3 of Chapter 5: tying the key and value projections, measured on a task that must copy rare tokens.

The model is the package's :class:`~xattn_edu.nn.model.Seq2Seq` (2 encoder and 2 decoder layers, so
there are two cross-attention modules to tie together), with one embedding table for both sides (a joint
vocabulary: a name is the same token, and the same vector, in the source and the target). The task,
:class:`~xattn_edu.chapters.details.tasks.NamesTask`, translates common words word for word and copies
rare tokens; the training set is fixed, so most rare tokens are seen only a few times. Three variants:
untied, K/V tied among the cross-attention modules only, K/V tied across every attention module. For
each seed: parameters, validation accuracy, accuracy on rare tokens (seen 1-5 times in training) and on
frequent ones, and the training curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from xattn_edu.chapters.details.reference import tie_kv
from xattn_edu.chapters.details.tasks import Batch, NamesTask, counts, make_batch, padded
from xattn_edu.chapters.details.training import (
    Schedule,
    Spread,
    accuracy,
    difference,
    param_count,
    predictions,
    seeded,
    single_thread,
    spread,
    text_table,
    train,
)
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig

SCOPES = (None, "cross", "all")
"""Untied, tied among the cross-attention modules, tied across every attention module."""

Tie = Callable[[nn.Module, str], int]


@dataclass(frozen=True)
class TyingSetup:
    """The task and the training of Part 3."""

    task: NamesTask = field(default_factory=lambda: NamesTask(rare=200))  # 200 rare tokens, Zipf-distributed
    train_size: int = 2000  # fixed training sentences
    validation: int = 2000  # held-out sentences
    rare_at_most: int = 5  # a rare token seen 1..this many times in training counts as rare
    d_model: int = 32  # D
    n_heads: int = 2  # h
    layers: int = 2  # encoder layers = decoder layers
    shared_embeddings: bool = True  # one embedding table for source and target (and the output layer)
    schedule: Schedule = field(default_factory=lambda: Schedule(steps=450, lr=4e-3))  # per run
    seeds: tuple[int, ...] = (0, 1, 2)

    @classmethod
    def for_mode(cls, fast: bool) -> TyingSetup:
        """The full experiment, or a seconds-long version of it (``XATTN_FAST=1``)."""
        if fast:
            return cls(train_size=300, validation=200, schedule=Schedule(steps=15), seeds=(0, 1))
        return cls()

    def build(self) -> Seq2Seq:
        """A fresh model with untied K/V projections."""
        vocab = self.task.vocab
        model = Seq2Seq(Seq2SeqConfig(vocab, vocab, d_model=self.d_model, n_heads=self.n_heads,
                                      n_encoder_layers=self.layers, n_decoder_layers=self.layers,
                                      d_ff=2 * self.d_model, dropout=0.0, max_len=16))
        if self.shared_embeddings:
            model.src_embed.weight = model.tgt_embed.weight  # the output layer already shares it
        return model


@dataclass(frozen=True)
class NamesData:
    """The fixed training set, the validation set and which validation tokens are rare or frequent."""

    train: Batch
    validation: Batch
    rare: torch.Tensor  # (B, Tt) boolean: a rare token seen 1..rare_at_most times in training
    frequent: torch.Tensor  # (B, Tt) boolean: a rare-token id seen more often than that


def names_data(setup: TyingSetup) -> NamesData:
    """Draw the training and validation sentences and mark the rare-token positions by training count."""
    task = setup.task
    train_src, train_tgt = task.sentences(np.random.default_rng(1), setup.train_size)
    val_src, val_tgt = task.sentences(np.random.default_rng(2), setup.validation)
    validation = make_batch(padded(val_src), padded(val_tgt))
    seen = counts(train_src)
    times = torch.tensor([seen.get(token, 0) for token in range(task.vocab)])[validation.tgt_out]
    names = task.is_rare(validation.tgt_out)
    return NamesData(make_batch(padded(train_src), padded(train_tgt)), validation,
                     names & (times >= 1) & (times <= setup.rare_at_most), names & (times > setup.rare_at_most))


@dataclass(frozen=True)
class TyingResult:
    """Part 3's measurements for one variant, over the seeds."""

    scope: str | None  # None (untied), "cross" or "all"
    parameters: int  # trainable numbers after tying
    saved: int  # numbers the tying removed
    accuracy: Spread  # validation accuracy on every target token (teacher forcing)
    rare: Spread  # on rare tokens seen 1..rare_at_most times in training
    frequent: Spread  # on rare-token ids seen more often
    curves: np.ndarray  # (seeds, points) training-loss curves


def measure_scope(scope: str | None, setup: TyingSetup, data: NamesData, tie: Tie = tie_kv) -> TyingResult:
    """Train one model per seed with this tying (``tie(model, scope)``) and measure it."""
    columns: dict[str, list[float]] = {"accuracy": [], "rare": [], "frequent": []}
    curves, parameters, saved = [], 0, 0
    size = data.train.src.shape[0]
    for seed in setup.seeds:
        model = seeded(setup.build, seed)
        saved = tie(model, scope) if scope else 0
        parameters = param_count(model)
        curves.append(train(model, lambda rng, n: data.train.rows(rng.integers(0, size, n)), setup.schedule, seed))
        predicted = predictions(model, data.validation)
        columns["accuracy"].append(accuracy(predicted, data.validation.tgt_out))
        columns["rare"].append(accuracy(predicted, data.validation.tgt_out, data.rare))
        columns["frequent"].append(accuracy(predicted, data.validation.tgt_out, data.frequent))
    return TyingResult(scope, parameters, saved, spread(columns["accuracy"]), spread(columns["rare"]),
                       spread(columns["frequent"]), np.array(curves))


@single_thread()
def measure_tying(setup: TyingSetup, tie: Tie = tie_kv) -> list[TyingResult]:
    """:func:`measure_scope` for untied, cross-only and all-module tying, on the same data."""
    data = names_data(setup)
    return [measure_scope(scope, setup, data, tie) for scope in SCOPES]


SCOPE_NAMES = {None: "untied", "cross": "tied within cross-attention", "all": "tied across all attention"}


def tying_table(results: list[TyingResult], rare_at_most: int) -> str:
    """The measured table of Part 3: mean ± standard deviation over the seeds."""
    header = ("K/V projections", "parameters", "saved", "validation accuracy",
              f"rare tokens (seen 1-{rare_at_most}x)", "frequent rare-token ids")
    return text_table(header, [(SCOPE_NAMES[r.scope], str(r.parameters), str(r.saved), r.accuracy.show(),
                                r.rare.show(), r.frequent.show()) for r in results])


def tying_findings(results: list[TyingResult]) -> list[str]:
    """Each tying against the untied model: the change of the means and whether it exceeds the seeds' spread."""
    untied = next(r for r in results if r.scope is None)
    return [f"{SCOPE_NAMES[r.scope]}: {r.saved / (r.parameters + r.saved):.1%} fewer parameters; validation "
            f"accuracy {difference(r.accuracy, untied.accuracy)}; rare tokens {difference(r.rare, untied.rare)}"
            for r in results if r.scope is not None]
