"""Perceiver-style latent cross-attention on a long input, and a task that needs it.

A :class:`LatentClassifier` keeps M learned latent vectors. They cross-attend to the N input tokens
(queries from the latents, keys and values from the inputs: M x N scores, never N x N), then attend
among themselves, and their mean is classified (Jaegle et al. 2021, "Perceiver"). Every attention
module is the package's :class:`~xattn_edu.nn.heads.MultiHeadAttention`.

The task (:class:`MajorityTask`): a long sequence of filler symbols hides a few marker tokens of
K kinds; the label is the kind that occurs most often. Averaging every token (:class:`MeanPoolClassifier`)
drowns the markers in filler; attention that picks out the markers and averages only them computes
their relative frequencies, which is exactly what the label needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.chapters.applications.training import FitConfig, FitResult, fit
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import EncoderLayer, FeedForward, Seq2SeqConfig


@dataclass(frozen=True)
class MajorityTask:
    """Long sequences whose label is the most frequent of a few rare marker symbols."""

    length: int = 2048  # N, tokens per sequence
    kinds: int = 4  # K marker kinds (ids 0..K-1); the label is one of them
    fillers: int = 12  # filler symbols (ids K..K+fillers-1) that fill every other position
    min_markers: int = 6  # fewest marker tokens in a sequence
    max_markers: int = 18  # most marker tokens in a sequence

    @property
    def vocab(self) -> int:
        """Number of distinct token ids."""
        return self.kinds + self.fillers


def make_majority(task: MajorityTask, count: int, seed: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """``count`` sequences: tokens (B, N) int64 and labels (B,) int64, the same for the same seed.

    Each sequence gets between ``min_markers`` and ``max_markers`` markers, with kind frequencies
    drawn at random and ties broken by adding one marker to one of the tied kinds (so the majority
    is unique), at random positions; ``length`` overrides ``task.length``.
    """
    length = task.length if length is None else length
    rng = np.random.default_rng([seed, length])
    tokens = rng.integers(task.kinds, task.vocab, size=(count, length))
    labels = np.zeros(count, dtype=np.int64)
    for b in range(count):
        total = int(rng.integers(task.min_markers, task.max_markers + 1))
        counts = rng.multinomial(total, rng.dirichlet(np.ones(task.kinds)))
        tied = np.flatnonzero(counts == counts.max())
        if len(tied) > 1:
            counts[rng.choice(tied)] += 1
        labels[b] = int(np.argmax(counts))
        places = rng.choice(length, size=int(counts.sum()), replace=False)
        tokens[b, places] = np.repeat(np.arange(task.kinds), counts)
    return torch.from_numpy(tokens), torch.from_numpy(labels)


@dataclass(frozen=True)
class LatentConfig:
    """Shape of a :class:`LatentClassifier`."""

    vocab: int  # token ids
    classes: int  # output classes
    latents: int = 8  # M, learned latent queries
    d_model: int = 32  # D
    n_heads: int = 2  # h, heads of the cross- and self-attention
    d_ff: int = 64  # feed-forward hidden width


class LatentClassifier(nn.Module):
    """Token embedding → M latents cross-attend to the N tokens → latent self-attention → mean → classes."""

    def __init__(self, config: LatentConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.d_model)
        self.latents = nn.Parameter(0.02 * torch.randn(config.latents, config.d_model))  # (M, D)
        self.input_norm, self.latent_norm = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.cross = MultiHeadAttention(config.d_model, config.n_heads)
        self.cross_ff = FeedForward(config.d_model, config.d_ff, 0.0, "gelu")
        self.ff_norm = nn.LayerNorm(config.d_model)
        layer = Seq2SeqConfig(src_vocab=1, tgt_vocab=1, d_model=config.d_model, n_heads=config.n_heads,
                              d_ff=config.d_ff, dropout=0.0, activation="gelu")
        self.process = EncoderLayer(layer)
        self.head = nn.Sequential(nn.LayerNorm(config.d_model), nn.Linear(config.d_model, config.classes))

    def forward(self, tokens: Tensor, return_weights: bool = False):
        """tokens (B, N) → logits (B, classes); with ``return_weights`` also the cross weights (B, h, M, N)."""
        inputs = self.input_norm(self.embed(tokens))  # (B, N, D)
        latents = self.latents.expand(tokens.shape[0], -1, -1)  # (B, M, D): the same queries for every example
        read, weights = self.cross(self.latent_norm(latents), context=inputs, return_weights=True)
        x = latents + read  # (B, M, D)
        x = x + self.cross_ff(self.ff_norm(x))
        x = self.process(x, None)  # latents attend to each other: M x M scores
        logits = self.head(x.mean(dim=1))
        return (logits, weights) if return_weights else logits


class MeanPoolClassifier(nn.Module):
    """The baseline without attention: the mean of all N token vectors, then an MLP."""

    def __init__(self, config: LatentConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab, config.d_model)
        self.head = nn.Sequential(nn.LayerNorm(config.d_model), nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                  nn.Linear(config.d_ff, config.classes))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, N) → logits (B, classes)."""
        return self.head(self.embed(tokens).mean(dim=1))


def train_classifier(model: nn.Module, task: MajorityTask, fit_config: FitConfig, batch_size: int = 32,
                     data_seed: int = 0) -> FitResult:
    """Train ``model`` on fresh sequences of ``task`` at every step; returns the losses and time."""

    def step_loss(step: int) -> Tensor:
        tokens, labels = make_majority(task, batch_size, seed=data_seed * 1_000_003 + step)
        return F.cross_entropy(model(tokens), labels)

    return fit(model, step_loss, fit_config)


@dataclass(frozen=True)
class LatentScores:
    """Test results of one model at one input length."""

    length: int  # N of the test sequences
    accuracy: float  # fraction of test sequences classified right
    marker_attention: float | None  # mean attention mass the latents put on marker tokens (None: no attention)
    marker_share: float  # fraction of the N tokens that are markers (uniform attention would give this mass)


@torch.no_grad()
def evaluate(model: nn.Module, task: MajorityTask, length: int, count: int = 512, seed: int = 10_000,
             batch_size: int = 64) -> LatentScores:
    """Accuracy on ``count`` unseen sequences of ``length`` tokens, and where the latents look."""
    tokens, labels = make_majority(task, count, seed=seed, length=length)
    correct, mass = 0, []
    for start in range(0, count, batch_size):
        chunk = tokens[start:start + batch_size]
        if isinstance(model, LatentClassifier):
            logits, weights = model(chunk, return_weights=True)  # weights (B, h, M, N)
            is_marker = (chunk < task.kinds).float()[:, None, None, :]
            mass.append((weights * is_marker).sum(-1).mean().item())
        else:
            logits = model(chunk)
        correct += int((logits.argmax(-1) == labels[start:start + batch_size]).sum())
    return LatentScores(length, correct / count, float(np.mean(mass)) if mass else None,
                        float((tokens < task.kinds).float().mean()))


@torch.no_grad()
def draw_attention(model: LatentClassifier, task: MajorityTask, length: int, seed: int = 77, ax=None):
    """Where the latents look in one test sequence: attention (mean of latents and heads) against position.

    Marker positions are drawn as vertical lines coloured by kind, so spikes can be matched to markers.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    tokens, labels = make_majority(task, 1, seed=seed, length=length)
    _, weights = model(tokens, return_weights=True)  # (1, h, M, N)
    profile = weights[0].mean(dim=(0, 1)).numpy()  # (N,)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.6), layout="constrained")
    for kind in range(task.kinds):
        places = (tokens[0] == kind).nonzero().flatten().numpy()
        ax.vlines(places, 0, profile.max() * 1.05, colors=f"C{kind}", lw=0.8, alpha=0.5,
                  label=f"marker {kind} (x{len(places)})")
    ax.plot(profile, color="black", lw=0.8, label="attention")
    ax.axhline(1 / length, color="grey", ls=":", lw=0.8, label="uniform 1/N")
    ax.set_xlabel("input position", fontsize=9)
    ax.set_ylabel("attention weight", fontsize=9)
    ax.set_title(f"the latents' attention over {length} tokens; label = marker {int(labels[0])}", fontsize=10)
    ax.legend(fontsize=7, ncols=3, loc="upper right")
    return ax
