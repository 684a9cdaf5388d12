"""The library lookup in numpy: relevance scores, softmax, hard and soft lookup (Chapter 1).

A query is compared with every key by a dot product (its relevance score); a softmax turns
the scores into weights that sum to 1; the result is the weighted average of the values.
These are the reference implementations the Chapter 1 exercises are graded against, so
they favour clarity over speed. Shapes: ``d`` key/query width, ``d_v`` value width,
``n`` number of keys (books), ``Tq`` number of queries.
"""

from __future__ import annotations

import numpy as np


def project(query_items: np.ndarray, memory_items: np.ndarray, w_query: np.ndarray, w_key: np.ndarray,
            w_value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries from one set of items, keys and values from another: the three learned views of cross-attention.

    Args:
        query_items: (Tq, D) the items that ask (e.g. the words written so far), one row per item.
        memory_items: (n, D) the items that are read (e.g. the source sentence), one row per item.
        w_query: (D, d) query projection.
        w_key: (D, d) key projection.
        w_value: (D, d_v) value projection.

    Returns:
        ``(queries, keys, values)`` of shapes (Tq, d), (n, d), (n, d_v). Self-attention is the special
        case ``query_items is memory_items``.
    """
    query_items, memory_items = np.asarray(query_items, dtype=float), np.asarray(memory_items, dtype=float)
    return query_items @ w_query, memory_items @ w_key, memory_items @ w_value


def relevance_scores(query: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Dot product of each query with each key.

    Args:
        query: (d,) one query, or (Tq, d) a batch of queries.
        keys: (n, d) one key per row.

    Returns:
        (n,) for a single query, (Tq, n) for a batch: ``scores[..., i] = query · keys[i]``.
    """
    query, keys = np.asarray(query, dtype=float), np.asarray(keys, dtype=float)
    if keys.ndim != 2 or query.ndim not in (1, 2) or query.shape[-1] != keys.shape[-1]:
        raise ValueError(f"expected query (d,) or (Tq, d) and keys (n, d); got {query.shape} and {keys.shape}")
    return query @ keys.T  # (n,) or (Tq, n)


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``.

    Subtracting the maximum before ``exp`` changes nothing mathematically but keeps ``exp``
    from overflowing on large scores; ``-inf`` entries get weight exactly 0. A slice whose
    entries are all ``-inf`` has nothing to attend to and gets all-zero weights (not NaN).

    Args:
        scores: array of any shape.
        axis: the axis along which the weights sum to 1.

    Returns:
        Weights with the shape of ``scores``, non-negative, summing to 1 along ``axis``.
    """
    scores = np.asarray(scores, dtype=float)
    top = np.max(scores, axis=axis, keepdims=True)
    top = np.where(np.isneginf(top), 0.0, top)  # an all -inf slice: exp(-inf) = 0 everywhere
    exps = np.exp(scores - top)
    total = np.sum(exps, axis=axis, keepdims=True)
    return np.divide(exps, total, out=np.zeros_like(exps), where=total > 0)


def soft_lookup(query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax-weighted average of the values, weighted by the query's relevance to each key.

    Args:
        query: (d,) or (Tq, d).
        keys: (n, d).
        values: (n, d_v), the value of book ``i`` is ``values[i]``.

    Returns:
        ``(output, weights)``: output (d_v,) or (Tq, d_v); weights (n,) or (Tq, n).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] != np.shape(keys)[0]:
        raise ValueError(f"values must be (n, d_v) with one row per key; got {values.shape} for keys {np.shape(keys)}")
    weights = softmax(relevance_scores(query, keys), axis=-1)  # (n,) or (Tq, n)
    return weights @ values, weights


def hard_lookup(query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the value of the single most relevant key (ties go to the first).

    Args:
        query: (d,) or (Tq, d).
        keys: (n, d).
        values: (n, d_v).

    Returns:
        ``(output, index)``: output (d_v,) or (Tq, d_v); index () or (Tq,) of the chosen key.
    """
    index = np.argmax(relevance_scores(query, keys), axis=-1)
    return np.asarray(values, dtype=float)[index], index


def equal_score_query(keys: np.ndarray, level: float) -> np.ndarray:
    """A nonzero query whose score against every key is ``level``, so its weights are exactly uniform.

    Softmax ignores a constant added to every score, so the weights are uniform (1/n each) exactly
    when all scores are equal: ``keys @ q = level * 1``. For ``level != 0`` this is a linear system,
    solved by least squares (the shortest such query); it has a solution for keys in general
    position while ``n <= d``. ``level == 0`` is the orthogonal case: a nonzero solution needs a
    direction the keys leave free (rank < d, so ``n < d`` in general position); the query returned
    is a unit vector of the null space of ``keys``.

    Args:
        keys: (n, d).
        level: the common score.

    Returns:
        (d,) nonzero query with ``keys @ q == level`` up to rounding.

    Raises:
        ValueError: when no nonzero query gives every key the score ``level``.
    """
    keys = np.asarray(keys, dtype=float)
    if keys.ndim != 2:
        raise ValueError(f"keys must be (n, d); got shape {keys.shape}")
    n, d = keys.shape
    if level == 0:
        _, singular, vt = np.linalg.svd(keys, full_matrices=True)  # vt: (d, d), rows = right singular vectors
        rank = int(np.sum(singular > max(n, d) * np.finfo(float).eps * (singular.max() if singular.size else 0.0)))
        if rank >= d:
            raise ValueError(f"the {n} keys span all {d} dimensions: no nonzero query is orthogonal to all of them")
        return vt[rank]  # (d,) unit vector with keys @ q = 0
    target = np.full(n, float(level))
    query = np.linalg.lstsq(keys, target, rcond=None)[0]  # (d,) the shortest query with scores closest to level
    tolerance = 1e-9 * (abs(level) + np.linalg.norm(keys, axis=1).max() * np.linalg.norm(query))
    if np.abs(keys @ query - target).max() > tolerance:
        raise ValueError(f"no query gives all {n} keys the same score {level:g}: the {n} equations of keys @ q "
                         f"= {level:g} have no common solution in {d} dimensions")
    return query
