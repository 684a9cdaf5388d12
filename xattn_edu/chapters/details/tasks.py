"""The synthetic tasks of Chapter 5, each small enough to train on a CPU in seconds.

Ids: 0 is padding, 1 the target's BOS token, content tokens start at :data:`FIRST`.

* :func:`copy_pairs`: copy a sequence drawn from a handful of symbols, so most sources repeat tokens
  (Part 1: which copy is which).
* :class:`MarkovSource`: sequences from a Markov chain whose every state has one likely successor;
  the *shifted* task asks for the next source token at every step, the *reverse* task for the source
  backwards (Part 2: leakage, and ordinary translation for contrast).
* :class:`NamesTask`: a word-for-word "translation" with one or two rare tokens (names, numbers) per
  sentence that must be copied (Part 3: tied K/V projections).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

PAD, BOS, FIRST = 0, 1, 2


@dataclass(frozen=True)
class Batch:
    """Padded source and target ids for teacher forcing."""

    src: Tensor  # (B, Ts) source ids, 0 = padding
    tgt_in: Tensor  # (B, Tt) the decoder's input: BOS, then the target without its last token
    tgt_out: Tensor  # (B, Tt) the target: what each decoder step must predict, 0 = padding


    def rows(self, index: np.ndarray | Tensor) -> Batch:
        """The examples at ``index`` (B',)."""
        index = torch.as_tensor(index)
        return Batch(self.src[index], self.tgt_in[index], self.tgt_out[index])


def make_batch(sources: np.ndarray, targets: np.ndarray) -> Batch:
    """A :class:`Batch` from right-padded id arrays (n, Ts) and (n, Tt); the decoder input is BOS + target[:-1]."""
    tgt_in = np.concatenate([np.full((len(targets), 1), BOS), targets[:, :-1]], axis=1)
    tgt_in[targets == PAD] = PAD
    return Batch(*(torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long) for a in (sources, tgt_in, targets)))


def padded(sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """Right-pad id lists into an array (n, longest length)."""
    out = np.full((len(sequences), max(len(s) for s in sequences)), PAD, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return out


def copy_pairs(rng: np.random.Generator, n: int, symbols: int, lengths: tuple[int, int]) -> Batch:
    """n copy examples: a source of ``lengths[0]..lengths[1]`` tokens from ``symbols`` symbols; target = source."""
    ids = FIRST + rng.integers(0, symbols, (n, lengths[1]))
    ids[np.arange(lengths[1])[None, :] >= rng.integers(lengths[0], lengths[1] + 1, n)[:, None]] = PAD
    return make_batch(ids, ids)


def repeated(src: Tensor) -> Tensor:
    """(B, T) boolean: True where the token at that position occurs more than once in its (unpadded) row."""
    same = (src[:, :, None] == src[:, None, :]) & (src[:, None, :] != PAD)  # (B, T, T)
    return (same.sum(-1) > 1) & (src != PAD)


@dataclass(frozen=True)
class MarkovSource:
    """A Markov chain over ``states`` tokens in which state s is followed by ``favourite[s]`` with
    probability ``stay`` and by each other state with probability ``(1 - stay) / (states - 1)``."""

    states: int  # V, number of content tokens
    favourite: tuple[int, ...]  # the likely successor of each state (a permutation of range(V))
    stay: float  # probability of the likely successor

    @classmethod
    def random(cls, states: int, stay: float, seed: int) -> MarkovSource:
        """A chain whose likely successors are a random permutation with no fixed point."""
        rng = np.random.default_rng(seed)
        while True:
            favourite = rng.permutation(states)
            if (favourite != np.arange(states)).all():
                return cls(states, tuple(int(f) for f in favourite), stay)

    def transition(self) -> np.ndarray:
        """(V, V) row-stochastic matrix P[s, s'] = probability that s' follows s."""
        matrix = np.full((self.states, self.states), (1 - self.stay) / (self.states - 1))
        matrix[np.arange(self.states), list(self.favourite)] = self.stay
        return matrix

    def sample(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        """(n, length) content ids (offset by FIRST); the first token is uniform."""
        cumulative = self.transition().cumsum(axis=1)
        states = np.empty((n, length), dtype=np.int64)
        states[:, 0] = rng.integers(0, self.states, n)
        for t in range(1, length):
            draws = rng.random(n)[:, None]
            states[:, t] = np.minimum((draws > cumulative[states[:, t - 1]]).sum(axis=1), self.states - 1)
        return states + FIRST

    def best_next_accuracy(self) -> float:
        """The accuracy of the best possible guess of the next token from the tokens so far (Bayes)."""
        return float(self.transition().max(axis=1).mean())  # the first token is uniform and stays so

    def shifted(self, rng: np.random.Generator, n: int, length: int) -> Batch:
        """Predict-the-next-token task: source x_0..x_{L-1}, target x_1..x_{L-1} (step t must output x_{t+1})."""
        x = self.sample(rng, n, length)
        return make_batch(x, x[:, 1:])

    def reversed(self, rng: np.random.Generator, n: int, length: int) -> Batch:
        """Reverse task: source x_0..x_{L-1}, target x_{L-1}..x_0."""
        x = self.sample(rng, n, length)
        return make_batch(x, x[:, ::-1])


@dataclass(frozen=True)
class NamesTask:
    """Word-for-word translation of common words, with rare tokens (names, numbers) copied unchanged.

    Source and target share the ids of the rare tokens; a common source word w becomes ``translation[w]``.
    Rare tokens are drawn with Zipf-like probabilities ``∝ 1 / (rank + 1)``, so a fixed training set
    sees a few of them often and most of them only a handful of times.
    """

    common: int = 24  # number of common words on each side
    rare: int = 80  # number of rare tokens (names, numbers)
    lengths: tuple[int, int] = (4, 8)  # common words per sentence
    seed: int = 0  # draws the dictionary

    @property
    def vocab(self) -> int:
        """V: padding, BOS, the common words, the rare tokens (the same size on both sides)."""
        return FIRST + self.common + self.rare

    def translation(self) -> np.ndarray:
        """(V,) target id of each source id: a permutation of the common words, the identity elsewhere."""
        table = np.arange(self.vocab)
        table[FIRST: FIRST + self.common] = FIRST + np.random.default_rng(self.seed).permutation(self.common)
        return table

    def is_rare(self, ids: Tensor) -> Tensor:
        """Boolean tensor: True for rare-token ids."""
        return ids >= FIRST + self.common

    def sentences(self, rng: np.random.Generator, n: int) -> tuple[list[list[int]], list[list[int]]]:
        """n (source, target) id lists with one rare token (two, a third of the time) at random places."""
        weights = 1.0 / np.arange(1, self.rare + 1)
        weights /= weights.sum()
        table = self.translation()
        sources, targets = [], []
        for _ in range(n):
            words = list(FIRST + rng.integers(0, self.common, rng.integers(self.lengths[0], self.lengths[1] + 1)))
            for _ in range(1 + int(rng.random() < 1 / 3)):
                name = FIRST + self.common + int(rng.choice(self.rare, p=weights))
                words.insert(int(rng.integers(0, len(words) + 1)), name)
            sources.append([int(w) for w in words])
            targets.append([int(table[w]) for w in words])
        return sources, targets


def counts(sequences: Sequence[Sequence[int]]) -> Counter:
    """How often each id occurs in a list of id lists."""
    return Counter(token for sequence in sequences for token in sequence)
