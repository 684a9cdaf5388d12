"""Claim (article 3185413): a query orthogonal to every key gets uniform weights and returns the mean value.

Three measurements, all with random Gaussian keys and values:

* :func:`measure_orthogonal` — over many key sets, a query built orthogonal to all keys:
  the largest ``|weight - 1/n|`` and ``|output - mean(values)|`` seen (rounding-level if the claim holds).
* :func:`measure_near_orthogonal` — the query plus a small overlap ``eps * u`` (``u`` a random
  unit vector): how far the weights move from uniform as ``eps`` grows.
* :func:`measure_span_limit` — the limit of the claim: a nonzero query orthogonal to all ``n`` keys
  exists only while the keys do not span the space (``n < d`` for keys in general position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.library_lookup.reference import orthogonal_query, soft_lookup


@dataclass(frozen=True)
class OrthogonalResult:
    """Worst deviations from uniform weights and the mean value, for exactly orthogonal queries."""

    trials: int  # random key sets tried
    n_keys: int  # keys (books) per set
    dim: int  # width d of queries and keys
    max_abs_score: float  # largest |query · key| seen (0 up to rounding)
    max_weight_error: float  # largest |weight - 1/n| seen
    max_output_error: float  # largest |output - mean(values)| seen, over all value coordinates


@dataclass(frozen=True)
class NearOrthogonalRow:
    """Worst deviations from uniform weights and the mean value at one overlap ``eps``."""

    overlap: float  # eps: the query is q_orthogonal + eps * u, |q_orthogonal| = |u| = 1
    max_score: float  # largest |query · key| seen
    max_weight_error: float  # largest |weight - 1/n| seen
    max_weight_ratio: float  # largest max(w) / min(w) seen (1 = exactly uniform)
    max_output_error: float  # largest |output - mean(values)| seen


@dataclass(frozen=True)
class SpanRow:
    """How often ``n`` random keys in ``d`` dimensions leave room for a nonzero orthogonal query."""

    n_keys: int  # keys per set, in `dim` dimensions
    dim: int  # width d
    fraction_with_orthogonal_query: float  # share of random key sets that leave a nonzero orthogonal query
    best_max_cosine: float  # median over key sets of max_i |cos(q*, k_i)| for the least-aligned unit query q*


def _random_keys_values(rng: np.random.Generator, n_keys: int, dim: int, d_value: int):
    return rng.standard_normal((n_keys, dim)), rng.standard_normal((n_keys, d_value))


def measure_orthogonal(
    trials: int, n_keys: int = 8, dim: int = 16, d_value: int = 4, seed: int = 0
) -> OrthogonalResult:
    """Uniform weights and the mean value for queries orthogonal to every key (needs ``n_keys < dim``)."""
    rng = np.random.default_rng(seed)
    max_score = max_weight = max_output = 0.0
    for _ in range(trials):
        keys, values = _random_keys_values(rng, n_keys, dim, d_value)
        query = orthogonal_query(keys, rng)
        output, weights = soft_lookup(query, keys, values)
        max_score = max(max_score, float(np.abs(keys @ query).max()))
        max_weight = max(max_weight, float(np.abs(weights - 1.0 / n_keys).max()))
        max_output = max(max_output, float(np.abs(output - values.mean(axis=0)).max()))
    return OrthogonalResult(trials, n_keys, dim, max_score, max_weight, max_output)


def measure_near_orthogonal(
    overlaps: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0),
    trials: int = 200,
    n_keys: int = 8,
    dim: int = 16,
    d_value: int = 4,
    seed: int = 1,
) -> list[NearOrthogonalRow]:
    """How quickly the weights leave uniform when the query gains a small overlap with the keys."""
    rows = []
    for overlap in overlaps:
        rng = np.random.default_rng(seed)  # the same key sets for every overlap
        max_score = max_weight = max_ratio = max_output = 0.0
        for _ in range(trials):
            keys, values = _random_keys_values(rng, n_keys, dim, d_value)
            direction = rng.standard_normal(dim)
            query = orthogonal_query(keys, rng) + overlap * direction / np.linalg.norm(direction)
            output, weights = soft_lookup(query, keys, values)
            max_score = max(max_score, float(np.abs(keys @ query).max()))
            max_weight = max(max_weight, float(np.abs(weights - 1.0 / n_keys).max()))
            max_ratio = max(max_ratio, float(weights.max() / weights.min()))
            max_output = max(max_output, float(np.abs(output - values.mean(axis=0)).max()))
        rows.append(NearOrthogonalRow(overlap, max_score, max_weight, max_ratio, max_output))
    return rows


def measure_span_limit(
    dim: int = 6, n_keys_list: tuple[int, ...] = (1, 3, 5, 6, 8, 12), trials: int = 200, seed: int = 2
) -> list[SpanRow]:
    """For each key count: how often an orthogonal query exists, and how close to orthogonal the best query gets.

    The least-aligned unit query ``q*`` is the right singular vector of the length-normalised
    keys with the smallest singular value (it minimises the sum of squared cosines with the
    keys); ``best_max_cosine`` is its largest |cosine| with a key: 0 up to rounding when an
    orthogonal query exists, clearly positive once the keys span the space.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_keys in n_keys_list:
        found, cosines = 0, []
        for _ in range(trials):
            keys = rng.standard_normal((n_keys, dim))
            try:
                orthogonal_query(keys, rng)
                found += 1
            except ValueError:
                pass
            unit_keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
            best = np.linalg.svd(unit_keys, full_matrices=True)[2][-1]  # (dim,) least-aligned unit direction
            cosines.append(float(np.abs(unit_keys @ best).max()))
        rows.append(SpanRow(n_keys, dim, found / trials, float(np.median(cosines))))
    return rows
