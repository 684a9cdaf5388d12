"""Checks for Chapter 1, "The library lookup".

Test cells call ``check_<exercise>(fn)`` (visible: small, explained inputs) and
``check_<exercise>_hidden(fn)`` (edge cases). Each computes the expected result with the
reference in :mod:`xattn_edu.chapters.library_lookup.reference` first, then runs the student's function with every
reference forbidden (:func:`xattn_edu.chapters.support.checks.call_student`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xattn_edu.chapters.library_lookup import reference as ref
from xattn_edu.chapters.support.checks import (
    as_array,
    as_pair,
    assert_close_to_reference,
    assert_finite,
    assert_rows_sum_to_one,
    assert_shape,
    call_student,
    student_name,
    wrong_axis_mistakes,
)

OVERFLOW_HINT = (
    "np.exp overflows above about 709 (and every exp underflows to 0 below about -745): subtract the "
    "largest score along `axis` (np.max(..., axis=axis, keepdims=True)) before exponentiating."
)
AXIS_HINT = "Use the `axis` argument in np.max and np.sum, with keepdims=True."


# ----------------------------------------------------------------------------- relevance_scores

def _check_relevance_case(fn: Callable, query: np.ndarray, keys: np.ndarray) -> None:
    expected = ref.relevance_scores(query, keys)
    what = f"`{fn.__name__}(query, keys)` with query {query.shape} and keys {keys.shape}"
    got = as_array(call_student(fn, query, keys), what)
    mistakes = {}
    if query.ndim == 1:
        mistakes["one number per key *and* coordinate; a dot product adds those products up, "
                 "giving one number per key."] = query * keys
    else:
        mistakes["looks transposed: row t should hold query t's score for every key, shape (Tq, n)."] = expected.T
    assert_close_to_reference(got, expected, what, mistakes=mistakes,
                              hint="scores[..., i] is the dot product of the query with keys[i].")


def check_relevance(fn: Callable) -> None:
    """Visible: one query (d,) against a few keys (n, d) -> (n,)."""
    keys = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, -2.0]])
    _check_relevance_case(fn, np.array([1.0, 0.0, 2.0]), keys)
    rng = np.random.default_rng(0)
    _check_relevance_case(fn, rng.standard_normal(5), rng.standard_normal((6, 5)))
    print(f"{student_name(fn)}: single-query checks passed.")


def check_relevance_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_relevance``: inputs the visible check leaves out."""
    rng = np.random.default_rng(101)
    _check_relevance_case(fn, rng.standard_normal(4), rng.standard_normal((1, 4)))  # a single key
    _check_relevance_case(fn, rng.standard_normal(1), rng.standard_normal((3, 1)))  # d = 1
    _check_relevance_case(fn, rng.standard_normal(64), rng.standard_normal((10, 64)))


def check_relevance_batch(fn: Callable) -> None:
    """Visible: a batch of queries (Tq, d) -> (Tq, n)."""
    keys = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, -2.0]])
    _check_relevance_case(fn, np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]), keys)
    rng = np.random.default_rng(1)
    _check_relevance_case(fn, rng.standard_normal((3, 5)), rng.standard_normal((6, 5)))
    print(f"{student_name(fn)}: batch checks passed.")


def check_relevance_batch_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_relevance_batch``: inputs the visible check leaves out."""
    rng = np.random.default_rng(102)
    _check_relevance_case(fn, rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))  # Tq == n: transposing fits
    _check_relevance_case(fn, rng.standard_normal((1, 6)), rng.standard_normal((5, 6)))  # Tq = 1 stays 2-D
    _check_relevance_case(fn, rng.standard_normal((7, 2)), rng.standard_normal((1, 2)))


# ----------------------------------------------------------------------------- stable_softmax

def _check_softmax_case(fn: Callable, scores: np.ndarray, axis: int | None, hint: str = "") -> np.ndarray:
    """Compare ``fn(scores)`` (axis None: default) or ``fn(scores, axis=axis)`` with the reference."""
    expected = ref.softmax(scores, axis=-1 if axis is None else axis)
    call = "" if axis is None else f", axis={axis}"
    what = f"`{fn.__name__}(scores{call})` with scores of shape {scores.shape}"
    result = call_student(fn, scores) if axis is None else call_student(fn, scores, axis=axis)
    got = as_array(result, what)
    assert_shape(got, scores.shape, what, "Softmax keeps the shape of its input.")
    assert_finite(got, what, hint or OVERFLOW_HINT)
    assert_close_to_reference(got, expected, what, rtol=1e-6, atol=1e-12,
                              mistakes=wrong_axis_mistakes(ref.softmax, scores, -1 if axis is None else axis,
                                                           hint=AXIS_HINT),
                              hint=hint)
    assert_rows_sum_to_one(got, what, axis=-1 if axis is None else axis)
    return got


def check_softmax(fn: Callable) -> None:
    """Visible: moderate scores, 1-D and 2-D, default axis and axis=0."""
    _check_softmax_case(fn, np.array([1.0, 2.0, 3.0]), None)
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((3, 4)) * 2
    _check_softmax_case(fn, scores, None)
    _check_softmax_case(fn, scores, 0)
    print(f"{student_name(fn)}: basic checks passed (shapes, axis, rows sum to 1).")


def check_softmax_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_softmax``: inputs the visible check leaves out."""
    rng = np.random.default_rng(103)
    _check_softmax_case(fn, rng.standard_normal((2, 3, 4)), 1)
    _check_softmax_case(fn, rng.standard_normal((4, 4)), -2)
    _check_softmax_case(fn, rng.standard_normal((3, 3)), None)  # square: a wrong axis keeps the shape
    _check_softmax_case(fn, np.array([[5.0]]), None)  # one key: weight 1
    _check_softmax_case(fn, np.full((2, 5), 0.7), None)  # equal scores: uniform


def check_softmax_stability(fn: Callable) -> None:
    """Visible: large scores do not overflow; -inf gets weight exactly 0."""
    _check_softmax_case(fn, np.array([1000.0, 1001.0, 1002.0]), None, OVERFLOW_HINT)
    what = f"`{fn.__name__}([0, -inf, 1])`"
    got = _check_softmax_case(fn, np.array([0.0, -np.inf, 1.0]), None)
    if got[1] != 0.0:
        raise AssertionError(f"{what} gives the -inf score weight {got[1]!r}; exp(-inf) is exactly 0.")
    print(f"{student_name(fn)}: stability checks passed (scores near 1000, -inf entries).")


def check_softmax_stability_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_softmax_stability``: inputs the visible check leaves out."""
    _check_softmax_case(fn, np.array([-1000.0, -1001.0, -1002.0]), None, OVERFLOW_HINT)  # all exp underflow
    _check_softmax_case(fn, np.array([[1000.0, 999.0], [-1000.0, -1001.0]]), None,  # per-row max, not global
                        "Subtract the max of each row (keepdims=True), not one max for the whole array.")
    _check_softmax_case(fn, np.array([[800.0, 1.0], [801.0, 2.0], [799.0, 3.0]]), 0, OVERFLOW_HINT)
    got = _check_softmax_case(fn, np.array([[1000.0, -np.inf, 999.0], [-np.inf, 2.0, -np.inf]]), None)
    if not (got[0, 1] == 0.0 and got[1, 0] == 0.0 and got[1, 2] == 0.0):
        raise AssertionError(f"{student_name(fn)} gives -inf scores a nonzero weight; exp(-inf) is exactly 0.")
    _check_softmax_case(fn, np.random.default_rng(104).standard_normal((2, 3, 5)) * 500, 2, OVERFLOW_HINT)


# ----------------------------------------------------------------------------- soft_lookup

def _check_soft_lookup_case(fn: Callable, query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
    expected_out, expected_w = ref.soft_lookup(query, keys, values)
    what = f"`{fn.__name__}(query, keys, values)` with shapes {query.shape}, {keys.shape}, {values.shape}"
    out, weights = as_pair(call_student(fn, query, keys, values), what, ("output", "weights"))
    weights = as_array(weights, f"the weights from {what}")
    out = as_array(out, f"the output from {what}")
    scores = ref.relevance_scores(query, keys)
    weight_mistakes = {
        "these are the raw relevance scores; turn them into weights with your softmax.": scores,
        **wrong_axis_mistakes(ref.softmax, scores, -1, hint="Each query's weights must sum to 1 over the keys."),
    }
    assert_close_to_reference(weights, expected_w, f"the weights from {what}", mistakes=weight_mistakes,
                              hint="weights = softmax of the relevance scores over the keys.")
    assert_rows_sum_to_one(weights, f"the weights from {what}")
    output_mistakes = {
        "this is the plain mean of the values; weight each value by its key's softmax weight.":
            np.broadcast_to(values.mean(axis=0), expected_out.shape),
        "the values are weighted by the raw scores; use the softmax weights instead.": scores @ values,
    }
    assert_close_to_reference(out, expected_out, f"the output from {what}", mistakes=output_mistakes,
                              hint="output = weights @ values: one entry per value dimension (d_v).")


def check_soft_lookup(fn: Callable) -> None:
    """Visible: one query; output (d_v,) and weights (n,)."""
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    values = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    _check_soft_lookup_case(fn, np.array([2.0, 0.5]), keys, values)
    rng = np.random.default_rng(3)
    _check_soft_lookup_case(fn, rng.standard_normal(4), rng.standard_normal((6, 4)), rng.standard_normal((6, 3)))
    print(f"{student_name(fn)}: single-query checks passed.")


def check_soft_lookup_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_soft_lookup``: inputs the visible check leaves out."""
    rng = np.random.default_rng(105)
    _check_soft_lookup_case(fn, rng.standard_normal(3), rng.standard_normal((1, 3)), rng.standard_normal((1, 2)))
    _check_soft_lookup_case(fn, rng.standard_normal(16), rng.standard_normal((10, 16)), rng.standard_normal((10, 5)))
    _check_soft_lookup_case(fn, 4 * rng.standard_normal(8), rng.standard_normal((5, 8)), rng.standard_normal((5, 1)))


def check_soft_lookup_batch(fn: Callable) -> None:
    """Visible: a batch of queries; output (Tq, d_v) and weights (Tq, n)."""
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    values = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    _check_soft_lookup_case(fn, np.array([[2.0, 0.5], [0.0, -1.0], [0.0, 0.0]]), keys, values)
    rng = np.random.default_rng(4)
    _check_soft_lookup_case(fn, rng.standard_normal((5, 4)), rng.standard_normal((6, 4)), rng.standard_normal((6, 3)))
    print(f"{student_name(fn)}: batch checks passed.")


def check_soft_lookup_batch_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_soft_lookup_batch``: inputs the visible check leaves out."""
    rng = np.random.default_rng(106)
    _check_soft_lookup_case(fn, rng.standard_normal((4, 3)), rng.standard_normal((4, 3)),
                            rng.standard_normal((4, 2)))  # Tq == n: a wrong axis keeps every shape
    _check_soft_lookup_case(fn, rng.standard_normal((1, 5)), rng.standard_normal((3, 5)), rng.standard_normal((3, 4)))
    _check_soft_lookup_case(fn, rng.standard_normal((6, 2)), rng.standard_normal((1, 2)), rng.standard_normal((1, 3)))


# ----------------------------------------------------------------------------- orthogonal_query

def _check_orthogonal_case(fn: Callable, keys: np.ndarray, seed: int) -> None:
    values = np.random.default_rng(seed + 1).standard_normal((keys.shape[0], 3))
    what = f"`{fn.__name__}(keys, rng)` with keys {keys.shape}"
    query = as_array(call_student(fn, keys, np.random.default_rng(seed)), what)
    assert_shape(query, (keys.shape[1],), what, "The query lives in the same d-dimensional space as the keys.")
    assert_finite(query, what)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        raise AssertionError(f"{what} returned the zero vector: it is orthogonal to everything but asks nothing. "
                             "Return a nonzero vector (e.g. scale it to length 1).")
    cosines = np.abs(keys @ query) / (np.linalg.norm(keys, axis=1) * norm + 1e-300)
    worst = int(np.argmax(cosines))
    if cosines[worst] > 1e-8:
        raise AssertionError(f"{what} is not orthogonal to key {worst}: |cos| = {cosines[worst]:.3g} "
                             "(should be 0 up to rounding). Remove from a random vector its component along "
                             "every key direction, e.g. with an orthonormal basis of the keys (np.linalg.qr or svd).")
    out, weights = ref.soft_lookup(query, keys, values)
    n = keys.shape[0]
    assert_close_to_reference(weights, np.full(n, 1.0 / n), f"the attention weights of your query (keys {keys.shape})",
                              atol=1e-9)
    assert_close_to_reference(out, values.mean(axis=0), f"the lookup output of your query (keys {keys.shape})",
                              atol=1e-9)


def check_orthogonal_query(fn: Callable) -> None:
    """Visible: 3 random keys in 5-D; the query is nonzero, orthogonal, gives uniform weights and the mean."""
    _check_orthogonal_case(fn, np.random.default_rng(5).standard_normal((3, 5)), seed=50)
    _check_orthogonal_case(fn, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), seed=51)
    print(f"{student_name(fn)}: orthogonal, nonzero, uniform weights, output = mean of the values.")


def check_orthogonal_query_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_orthogonal_query``: inputs the visible check leaves out."""
    rng = np.random.default_rng(107)
    _check_orthogonal_case(fn, rng.standard_normal((1, 3)), seed=70)  # a single key
    _check_orthogonal_case(fn, rng.standard_normal((5, 6)), seed=71)  # n = d - 1: a one-dimensional answer
    basis = rng.standard_normal((3, 5))
    _check_orthogonal_case(fn, rng.standard_normal((7, 3)) @ basis, seed=72)  # n > d, but the keys span only 3-D
    _check_orthogonal_case(fn, 1000 * rng.standard_normal((2, 4)), seed=73)  # long keys


def _check_impossible_case(fn: Callable, keys: np.ndarray) -> None:
    what = f"`{fn.__name__}(keys, rng)` with keys {keys.shape}"
    try:
        result = call_student(fn, keys, np.random.default_rng(0))
    except ValueError:
        return
    raise AssertionError(
        f"{what} returned {np.asarray(result).round(6)} for {keys.shape[0]} keys that span all {keys.shape[1]} "
        "dimensions. Only the zero vector is orthogonal to all of them: raise ValueError instead."
    )


def check_orthogonal_query_impossible(fn: Callable) -> None:
    """Visible: keys spanning the whole space leave no orthogonal direction -> ValueError."""
    _check_impossible_case(fn, np.eye(3))
    print(f"{student_name(fn)}: raises ValueError when the keys span the space.")


def check_orthogonal_query_impossible_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_orthogonal_query_impossible``: inputs the visible check leaves out."""
    rng = np.random.default_rng(108)
    _check_impossible_case(fn, rng.standard_normal((4, 4)))
    _check_impossible_case(fn, rng.standard_normal((6, 3)))  # more keys than dimensions
    _check_impossible_case(fn, 2 * np.eye(2) + 0.1 * rng.standard_normal((2, 2)))
