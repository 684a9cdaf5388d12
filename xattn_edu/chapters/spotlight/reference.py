"""The spotlight: scaled scores, temperature and the entropy of attention weights (Chapter 2).

Softmax turns relevance scores into weights that sum to 1: a spotlight over the keys. Three
knobs decide how sharp it is: the size of the scores (which grows with the width ``d`` unless
they are divided by ``sqrt(d)``), a temperature ``T`` that divides them, and the query and keys
themselves. Its sharpness is measured by the Shannon entropy of the weights, in nats:
0 for a one-hot spotlight, ``log n`` for a uniform one over ``n`` keys.

These are the references the Chapter 2 exercises are graded against. The numpy functions
follow :mod:`xattn_edu.chapters.library_lookup.reference` (shapes: ``d`` query/key width, ``n`` keys, ``Tq`` queries);
:func:`attention_entropy` also accepts torch tensors, so it measures the ``(B, Tq, Tk)``
weights of :func:`xattn_edu.nn.attention.scaled_dot_product_attention` directly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from xattn_edu.chapters.library_lookup.reference import relevance_scores, softmax


def attention_entropy(weights: np.ndarray | torch.Tensor, axis: int = -1) -> np.ndarray | torch.Tensor:
    """Shannon entropy (natural log, nats) of each distribution along ``axis``.

    ``H(w) = -sum_i w_i log w_i`` with the convention ``0 log 0 = 0``, so weights of exactly 0
    (masked keys, a saturated softmax) contribute nothing, and an all-zero row (a query with
    every key masked) has entropy 0, never NaN.

    Args:
        weights: numpy array or torch tensor of shape (..., n); each slice along ``axis`` a distribution.
        axis: the axis holding the n keys.

    Returns:
        Entropies of shape (...) (``axis`` removed), same kind (numpy/torch) as ``weights``;
        between 0 and ``log n``.
    """
    if isinstance(weights, torch.Tensor):
        return 0.0 - torch.special.xlogy(weights, weights).sum(dim=axis)  # 0.0 - x: no -0.0 for one-hot rows
    weights = np.asarray(weights, dtype=float)
    positive = weights > 0
    logs = np.log(np.where(positive, weights, 1.0))  # log is only taken where w > 0
    return 0.0 - np.sum(np.where(positive, weights * logs, 0.0), axis=axis)


def max_entropy(n_keys: int) -> float:
    """Entropy of the uniform distribution over ``n_keys`` keys: ``log n`` nats (the largest possible)."""
    if n_keys < 1:
        raise ValueError(f"need at least one key, got n_keys={n_keys}")
    return math.log(n_keys)


def scaled_scores(query: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Relevance scores divided by ``sqrt(d)``, the width of the query and keys.

    For query and key entries with unit variance, ``query · key`` has variance ``d``; dividing
    by ``sqrt(d)`` brings it back to 1 whatever the width.

    Args:
        query: (d,) or (Tq, d).
        keys: (n, d).

    Returns:
        (n,) or (Tq, n): ``query · keys[i] / sqrt(d)``.
    """
    scores = relevance_scores(query, keys)  # (n,) or (Tq, n)
    return scores / math.sqrt(np.shape(keys)[-1])


def temperature_softmax(scores: np.ndarray, temperature: float, axis: int = -1) -> np.ndarray:
    """Softmax of ``scores / temperature`` along ``axis``, numerically stable.

    ``temperature -> 0`` approaches a hard argmax (ties share the weight equally);
    ``temperature -> inf`` approaches the uniform distribution; ``temperature = 1`` is the plain softmax.

    Args:
        scores: array of any shape, e.g. (n,) or (Tq, n).
        temperature: a positive number.
        axis: the axis along which the weights sum to 1.

    Returns:
        Weights with the shape of ``scores``.

    Raises:
        ValueError: when ``temperature`` is not a positive finite number.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return softmax(np.asarray(scores, dtype=float) / temperature, axis=axis)
