"""Claim (article 3185413, corrected): the lookup returns the plain average of the values exactly when all scores tie.

The brief says this happens when the query is orthogonal to every key. Softmax ignores a constant
added to every score, so the weights are uniform exactly when the scores are all equal,
``keys @ q = c * 1``; orthogonality is the case ``c = 0``. Three measurements, with random
Gaussian keys and values:

* :func:`measure_equal_scores`: queries built with :func:`~.reference.equal_score_query` for several
  ``(n, d, c)``: the largest ``|score - c|``, ``|weight - 1/n|`` and ``|output - mean(values)|`` seen
  (rounding-level if the claim holds);
* :func:`measure_near_uniform`: an orthogonal query plus a small overlap ``eps * u`` (``u`` a random
  unit vector): how far the weights move from uniform as ``eps`` grows;
* :func:`measure_span_limit`: for ``n`` random keys in ``d`` dimensions, how often a nonzero query
  with equal scores exists, for ``c = 0`` (needs ``n < d``) and ``c != 0`` (needs ``n <= d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.library_lookup.reference import equal_score_query, soft_lookup


@dataclass(frozen=True)
class EqualScoresRow:
    """Worst deviations from uniform weights and the mean value, for queries built to tie every score at ``level``."""

    n_keys: int  # keys (books) per set
    dim: int  # width d of queries and keys
    level: float  # c: the common score the query was built for (0 = orthogonal to every key)
    trials: int  # random key sets tried
    max_score_error: float  # largest |query · key - c| seen (0 up to rounding)
    max_weight_error: float  # largest |weight - 1/n| seen
    max_output_error: float  # largest |output - mean(values)| seen, over all value coordinates


@dataclass(frozen=True)
class NearUniformRow:
    """Worst deviations from uniform weights and the mean value at one overlap ``eps``."""

    overlap: float  # eps: the query is q_orthogonal + eps * u, |q_orthogonal| = |u| = 1
    max_score: float  # largest |query · key| seen
    max_weight_error: float  # largest |weight - 1/n| seen
    max_weight_ratio: float  # largest max(w) / min(w) seen (1 = exactly uniform)
    max_output_error: float  # largest |output - mean(values)| seen


@dataclass(frozen=True)
class SpanRow:
    """How often ``n`` random keys in ``d`` dimensions leave room for a nonzero query with equal scores."""

    n_keys: int  # keys per set, in `dim` dimensions
    dim: int  # width d
    share_orthogonal: float  # share of key sets with a nonzero query scoring 0 on every key (c = 0)
    share_equal: float  # share of key sets with a query scoring 1 on every key (c = 1)
    least_squares_max_cosine: float  # median over key sets of max_i |cos(q_ls, k_i)|, q_ls the least-squares
    # direction (the smallest right singular vector of the unit keys): an upper bound on the best max |cos|


def _random_keys_values(rng: np.random.Generator, n_keys: int, dim: int, d_value: int):
    return rng.standard_normal((n_keys, dim)), rng.standard_normal((n_keys, d_value))


def _exists(keys: np.ndarray, level: float) -> bool:
    try:
        equal_score_query(keys, level)
    except ValueError:
        return False
    return True


def measure_equal_scores(
    trials: int,
    settings: tuple[tuple[int, int, float], ...] = ((8, 16, 0.0), (8, 16, 1.0), (8, 8, 1.0), (8, 8, -2.5)),
    d_value: int = 4,
    seed: int = 0,
) -> list[EqualScoresRow]:
    """For each ``(n_keys, dim, level)``: uniform weights and the mean value for queries that tie every score."""
    rows = []
    for n_keys, dim, level in settings:
        rng = np.random.default_rng([seed, n_keys, dim])
        score_error = weight_error = output_error = 0.0
        for _ in range(trials):
            keys, values = _random_keys_values(rng, n_keys, dim, d_value)
            query = equal_score_query(keys, level)
            output, weights = soft_lookup(query, keys, values)
            score_error = max(score_error, float(np.abs(keys @ query - level).max()))
            weight_error = max(weight_error, float(np.abs(weights - 1.0 / n_keys).max()))
            output_error = max(output_error, float(np.abs(output - values.mean(axis=0)).max()))
        rows.append(EqualScoresRow(n_keys, dim, level, trials, score_error, weight_error, output_error))
    return rows


def measure_near_uniform(
    overlaps: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0),
    trials: int = 200,
    n_keys: int = 8,
    dim: int = 16,
    d_value: int = 4,
    seed: int = 1,
) -> list[NearUniformRow]:
    """How quickly the weights leave uniform when an orthogonal query gains a small overlap with the keys."""
    rows = []
    for overlap in overlaps:
        rng = np.random.default_rng(seed)  # the same key sets for every overlap
        max_score = max_weight = max_ratio = max_output = 0.0
        for _ in range(trials):
            keys, values = _random_keys_values(rng, n_keys, dim, d_value)
            direction = rng.standard_normal(dim)
            query = equal_score_query(keys, 0.0) + overlap * direction / np.linalg.norm(direction)
            output, weights = soft_lookup(query, keys, values)
            max_score = max(max_score, float(np.abs(keys @ query).max()))
            max_weight = max(max_weight, float(np.abs(weights - 1.0 / n_keys).max()))
            max_ratio = max(max_ratio, float(weights.max() / weights.min()))
            max_output = max(max_output, float(np.abs(output - values.mean(axis=0)).max()))
        rows.append(NearUniformRow(overlap, max_score, max_weight, max_ratio, max_output))
    return rows


def measure_span_limit(
    dim: int = 6, n_keys_list: tuple[int, ...] = (1, 3, 5, 6, 7, 8, 12), trials: int = 200, seed: int = 2
) -> list[SpanRow]:
    """For each key count: how often a nonzero equal-score query exists (c = 0 and c = 1), and how close the
    least-squares direction gets to orthogonal.

    The least-squares direction ``q_ls`` is the right singular vector of the length-normalised keys
    with the smallest singular value: it minimises the *sum* of squared cosines with the keys, so
    its largest |cosine| is an upper bound on the best achievable one (a direction minimising the
    largest |cosine| directly could do better). It is 0 up to rounding when an orthogonal query exists.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_keys in n_keys_list:
        orthogonal = equal = 0
        cosines = []
        for _ in range(trials):
            keys = rng.standard_normal((n_keys, dim))
            orthogonal += _exists(keys, 0.0)
            equal += _exists(keys, 1.0)
            unit_keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
            direction = np.linalg.svd(unit_keys, full_matrices=True)[2][-1]  # (dim,)
            cosines.append(float(np.abs(unit_keys @ direction).max()))
        rows.append(SpanRow(n_keys, dim, orthogonal / trials, equal / trials, float(np.median(cosines))))
    return rows
