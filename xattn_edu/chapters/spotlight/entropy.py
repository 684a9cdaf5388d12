"""Claim (article 3180887): the entropy of the attention weights measures how focused the spotlight is.

The article's three cases, each measured over random Gaussian keys (scores scaled by 1/sqrt(d)):

* a query very close to one key among distinct keys -> low entropy;
* the zero query -> uniform weights, the largest entropy ``log n``;
* identical keys -> uniform weights and entropy ``log n`` whatever the query.

And three sweeps: entropy against the temperature (:func:`measure_temperature`, from argmax to
uniform), against the cosine similarity of the query to one key (:func:`measure_similarity`),
and the bounds ``0 <= H <= log n+`` (``n+`` the keys with a nonzero weight) checked on many random
distributions with at least two visible keys, reporting how close they come to each bound
(:func:`measure_bounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.spotlight.reference import attention_entropy, scaled_scores, temperature_softmax


@dataclass(frozen=True)
class CaseResult:
    """Entropy of the weights in one of the article's three cases, over many random trials."""

    name: str  # which of the article's cases
    n_keys: int  # keys per trial
    dim: int  # width d of the query and keys
    trials: int  # random sets of keys (and queries)
    mean_entropy: float  # average entropy, nats
    max_entropy_seen: float  # largest entropy seen, nats
    log_n: float  # log(n_keys): the entropy of uniform weights
    mean_max_weight: float  # average largest weight
    example_weights: np.ndarray  # (n,) the weights of the first trial, for a picture


@dataclass(frozen=True)
class TemperatureRow:
    """Entropy and distance to the two extremes (argmax, uniform) at one temperature."""

    temperature: float  # T: the scores are divided by it
    mean_entropy_fraction: float  # average entropy / log n
    mean_max_weight: float  # average largest weight
    distance_to_argmax: float  # average total-variation distance to one_hot(argmax) (0 = hard lookup)
    distance_to_uniform: float  # average total-variation distance to 1/n (0 = uniform)


@dataclass(frozen=True)
class SimilarityRow:
    """Entropy and the weight on the target key at one query-key cosine similarity."""

    cosine: float  # cosine similarity of the query with its target key
    mean_entropy_fraction: float  # average entropy / log n
    mean_target_weight: float  # average weight on the target key


@dataclass(frozen=True)
class BoundsResult:
    """What checking ``0 <= H <= log n+`` on many random distributions found, and how close they came."""

    cases: int  # random distributions checked, each with at least `min_visible` keys of nonzero weight
    min_visible: int  # the fewest visible keys (n+) a case may have
    smallest_fraction: float  # smallest H / log n+ seen: how close to the lower bound 0
    largest_fraction: float  # largest H / log n+ seen: how close to the upper bound 1
    smallest_entropy: float  # smallest H seen, nats (> 0: no weight underflows, so no case is exactly one-hot)
    violations: int  # cases with H < -1e-12 or H > log n+ + 1e-12
    nan_count: int  # cases whose entropy was NaN (exact zeros must not produce NaN)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(...,) half the L1 distance between distributions along the last axis: 0 equal, 1 disjoint."""
    return 0.5 * np.abs(p - q).sum(axis=-1)


def _weights(query: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return temperature_softmax(scaled_scores(query, keys), 1.0)


def measure_cases(
    n_keys: int = 8, dim: int = 64, trials: int = 200, noise: float = 0.1, seed: int = 0
) -> list[CaseResult]:
    """The article's three cases, each over ``trials`` random key sets.

    "close query": the query is key 0 plus Gaussian noise of standard deviation ``noise`` per entry;
    "zero query": the query is the zero vector; "identical keys": every key is the same random
    vector, the query an independent random vector.
    """
    rng = np.random.default_rng(seed)
    runs: dict[str, list[np.ndarray]] = {"close query": [], "zero query": [], "identical keys": []}
    for _ in range(trials):
        keys = rng.standard_normal((n_keys, dim))
        runs["close query"].append(_weights(keys[0] + noise * rng.standard_normal(dim), keys))
        runs["zero query"].append(_weights(np.zeros(dim), keys))
        same = np.tile(rng.standard_normal(dim), (n_keys, 1))  # (n, d), n copies of one key
        runs["identical keys"].append(_weights(rng.standard_normal(dim), same))
    results = []
    for name, weights in runs.items():
        w = np.stack(weights)  # (trials, n)
        entropy = attention_entropy(w)
        results.append(CaseResult(name, n_keys, dim, trials, float(entropy.mean()), float(entropy.max()),
                                  math.log(n_keys), float(w.max(axis=-1).mean()), w[0]))
    return results


def measure_temperature(
    temperatures: tuple[float, ...] = (0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0),
    n_keys: int = 8,
    dim: int = 64,
    trials: int = 200,
    seed: int = 1,
) -> list[TemperatureRow]:
    """Entropy and distance to the two extremes as the temperature turns, for random queries and keys."""
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((trials, dim))
    keys = rng.standard_normal((trials, n_keys, dim))
    scores = np.einsum("td,tnd->tn", queries, keys) / math.sqrt(dim)  # (trials, n)
    one_hot = np.eye(n_keys)[scores.argmax(axis=-1)]  # (trials, n)
    rows = []
    for temperature in temperatures:
        w = temperature_softmax(scores, temperature)  # (trials, n)
        rows.append(TemperatureRow(
            temperature,
            float(attention_entropy(w).mean() / math.log(n_keys)),
            float(w.max(axis=-1).mean()),
            float(_total_variation(w, one_hot).mean()),
            float(_total_variation(w, np.full_like(w, 1.0 / n_keys)).mean()),
        ))
    return rows


def measure_similarity(
    cosines: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0),
    n_keys: int = 8,
    dim: int = 64,
    trials: int = 200,
    seed: int = 2,
) -> list[SimilarityRow]:
    """Entropy as the query turns towards one key (key 0), its length fixed to ``sqrt(d)``.

    The query is ``sqrt(d) * (c * k0_hat + sqrt(1 - c^2) * u)`` with ``u`` a random unit vector
    orthogonal to key 0, so ``c`` is exactly its cosine similarity with key 0.
    """
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((trials, n_keys, dim))
    target = _unit(keys[:, 0])  # (trials, d)
    other = rng.standard_normal((trials, dim))
    other = _unit(other - np.sum(other * target, axis=-1, keepdims=True) * target)  # (trials, d), orthogonal
    rows = []
    for cosine in cosines:
        queries = math.sqrt(dim) * (cosine * target + math.sqrt(1.0 - cosine**2) * other)  # (trials, d)
        w = temperature_softmax(np.einsum("td,tnd->tn", queries, keys) / math.sqrt(dim), 1.0)  # (trials, n)
        rows.append(SimilarityRow(cosine, float(attention_entropy(w).mean() / math.log(n_keys)),
                                  float(w[:, 0].mean())))
    return rows


def measure_bounds(cases: int = 10_000, max_keys: int = 64, max_spread: float = 30.0, seed: int = 3) -> BoundsResult:
    """Check ``0 <= H <= log n+`` on random softmax distributions of every sharpness, masked keys included.

    Each case draws ``n`` in [2, max_keys] scores with a random spread from 1e-3 to ``max_spread`` (small
    enough that no visible weight underflows to 0, so no case sits exactly on a bound), and hides a random
    subset of the keys (score -inf, weight exactly 0), always keeping at least two visible: with one,
    both bounds would be 0 and trivially met.
    """
    rng = np.random.default_rng(seed)
    smallest, largest, smallest_entropy, violations, nans = math.inf, -math.inf, math.inf, 0, 0
    for _ in range(cases):
        n = int(rng.integers(2, max_keys + 1))
        scores = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, math.log10(max_spread))
        hidden = rng.random(n) < rng.random()
        hidden[rng.choice(n, size=2, replace=False)] = False
        w = temperature_softmax(np.where(hidden, -np.inf, scores), 1.0)
        h, log_n_plus = float(attention_entropy(w)), math.log(int((~hidden).sum()))
        if math.isnan(h):
            nans += 1
            continue
        smallest, largest = min(smallest, h / log_n_plus), max(largest, h / log_n_plus)
        smallest_entropy = min(smallest_entropy, h)
        violations += int(h < -1e-12 or h > log_n_plus + 1e-12)
    return BoundsResult(cases, 2, smallest, largest, smallest_entropy, violations, nans)
