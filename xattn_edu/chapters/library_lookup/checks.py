"""The graded exercises of Chapter 1, "The library lookup", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is.

Each test cell calls ``grading.check("<grade_id>", student_function)`` (the visible test) and, in its
hidden part, ``grading.record(...)``; the grader's verifier judges the recorded results with the
same declarations. Each exercise and the mistake it is built to catch:

* ``relevance_tests`` / ``relevance_batch_tests``: one number per key (not per coordinate); rows are
  queries (a transposed result is named);
* ``softmax_tests``: the axis, shapes, rows sum to 1; ``softmax_stability_tests``: the max
  subtraction, per row (a global max is caught), and ``-inf`` giving exactly 0;
* ``soft_lookup_tests`` / ``soft_lookup_batch_tests``: weights from the softmax of the scores, the
  output as the weighted average (raw scores, the plain mean and the wrong axis are named);
* ``orthogonal_query_tests``: a nonzero query orthogonal to every key, which gives uniform weights
  and the mean value; ``orthogonal_impossible_tests``: ``ValueError`` when the keys span the space.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xattn_edu.chapters.library_lookup import reference as ref
from xattn_edu.chapters.support.checks import (
    as_array,
    as_pair,
    assert_close_to_reference,
    assert_finite,
    assert_rows_sum_to_one,
    assert_shape,
    wrong_axis_mistakes,
)
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_raise, expect_value

OVERFLOW_HINT = (
    "np.exp overflows above about 709 (and every exp underflows to 0 below about -745): subtract the "
    "largest score along `axis` (np.max(..., axis=axis, keepdims=True)) before exponentiating."
)
ROW_MAX_HINT = "Subtract the max of each row (np.max(..., axis=axis, keepdims=True)), not one max for the whole array."
AXIS_HINT = "Use the `axis` argument in np.max and np.sum, with keepdims=True."
KEYS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, -2.0]])
SHELF_KEYS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
SHELF_VALUES = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])


# ----------------------------------------------------------------------------- relevance_scores

def _relevance(query: np.ndarray, keys: np.ndarray) -> Case:
    return Case(f"`relevance_scores(query, keys)` with query {query.shape} and keys {keys.shape}", (query, keys))


def _judge_relevance(case: Case, got: Any, expected: np.ndarray) -> None:
    query, keys = case.args
    got = as_array(expect_value(got, case, "the scores"), case.label)
    if query.ndim == 1:
        mistakes = {"one number per key *and* coordinate; a dot product adds those products up, giving one "
                    "number per key.": query * keys}
    else:
        mistakes = {"looks transposed: row t should hold query t's score for every key, shape (Tq, n).": expected.T}
    assert_close_to_reference(got, expected, case.label, mistakes=mistakes,
                              hint="scores[..., i] is the dot product of the query with keys[i].")


RELEVANCE = Exercise(
    grade_id="relevance_tests", title="Exercise 1 (one query)", name="relevance_scores",
    reference=ref.relevance_scores, judge=_judge_relevance, passed="one query against many keys is right",
    visible=lambda: [_relevance(np.array([1.0, 0.0, 2.0]), KEYS),
                     _relevance(*_normal(np.random.default_rng(0), (5,), (6, 5)))],
    hidden=lambda rng: [_relevance(*_normal(rng, (4,), (1, 4))),  # a single key
                        _relevance(*_normal(rng, (1,), (3, 1))),  # d = 1
                        _relevance(*_normal(rng, (64,), (10, 64)))],
)
RELEVANCE_BATCH = Exercise(
    grade_id="relevance_batch_tests", title="Exercise 1 (a batch of queries)", name="relevance_scores",
    reference=ref.relevance_scores, judge=_judge_relevance, passed="a batch of queries gives one row per query",
    visible=lambda: [_relevance(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]), KEYS),
                     _relevance(*_normal(np.random.default_rng(1), (3, 5), (6, 5)))],
    hidden=lambda rng: [_relevance(*_normal(rng, (4, 3), (4, 3))),  # Tq == n: a transposed result keeps the shape
                        _relevance(*_normal(rng, (1, 6), (5, 6))),  # Tq = 1 stays 2-D
                        _relevance(*_normal(rng, (7, 2), (1, 2)))],
)


def _normal(rng: np.random.Generator, *shapes: tuple[int, ...], scale: float = 1.0) -> list[np.ndarray]:
    return [scale * rng.standard_normal(shape) for shape in shapes]


# ----------------------------------------------------------------------------- stable_softmax

def _softmax(scores: np.ndarray, axis: int | None = None, hint: str = "") -> Case:
    call = "" if axis is None else f", axis={axis}"
    label = f"`stable_softmax(scores{call})` with scores of shape {scores.shape}"
    return Case(label, (scores,), {} if axis is None else {"axis": axis}, note=hint)


def _judge_softmax(case: Case, got: Any, expected: np.ndarray) -> None:
    scores, axis = case.args[0], case.kwargs.get("axis", -1)
    got = as_array(expect_value(got, case, "the weights"), case.label)
    assert_shape(got, scores.shape, case.label, "Softmax keeps the shape of its input.")
    assert_finite(got, case.label, case.note or OVERFLOW_HINT)
    assert_close_to_reference(got, expected, case.label, rtol=1e-6, atol=1e-12, hint=case.note,
                              mistakes=wrong_axis_mistakes(ref.softmax, scores, axis, hint=AXIS_HINT))
    assert_rows_sum_to_one(got, case.label, axis=axis)
    if np.isneginf(scores).any() and (got[np.isneginf(scores)] != 0.0).any():
        raise Wrong(f"{case.label} gives a -inf score a nonzero weight; exp(-inf) is exactly 0.")


SOFTMAX = Exercise(
    grade_id="softmax_tests", title="Exercise 2 (shapes and axis)", name="stable_softmax",
    reference=ref.softmax, judge=_judge_softmax, passed="shapes, the axis, and rows that sum to 1 are right",
    visible=lambda: [_softmax(np.array([1.0, 2.0, 3.0])),
                     _softmax(2 * np.random.default_rng(2).standard_normal((3, 4))),
                     _softmax(2 * np.random.default_rng(2).standard_normal((3, 4)), 0)],
    hidden=lambda rng: [_softmax(rng.standard_normal((2, 3, 4)), 1),
                        _softmax(rng.standard_normal((4, 4)), -2),
                        _softmax(rng.standard_normal((3, 3))),  # square: a wrong axis keeps the shape
                        _softmax(np.array([[5.0]])),  # one key: weight 1
                        _softmax(np.full((2, 5), 0.7))],  # equal scores: uniform
)
SOFTMAX_STABILITY = Exercise(
    grade_id="softmax_stability_tests", title="Exercise 2 (large scores and -inf)", name="stable_softmax",
    reference=ref.softmax, judge=_judge_softmax,
    passed="scores near 1000, rows on different scales and -inf entries all work",
    visible=lambda: [_softmax(np.array([1000.0, 1001.0, 1002.0]), hint=OVERFLOW_HINT),
                     _softmax(np.array([0.0, -np.inf, 1.0])),
                     _softmax(np.array([[1000.0, 999.0], [-1000.0, -1001.0]]), hint=ROW_MAX_HINT)],
    hidden=lambda rng: [_softmax(np.array([-1000.0, -1001.0, -1002.0]), hint=OVERFLOW_HINT),  # every exp underflows
                        _softmax(np.array([[800.0, 1.0], [801.0, 2.0], [799.0, 3.0]]), 0, OVERFLOW_HINT),
                        _softmax(np.array([[1000.0, -np.inf, 999.0], [-np.inf, 2.0, -np.inf]])),
                        _softmax(rng.standard_normal((2, 3, 5)) * 500, 2, OVERFLOW_HINT),
                        _softmax(np.stack([rng.standard_normal(4) + 900, rng.standard_normal(4) - 900]),
                                 hint=ROW_MAX_HINT)],
)


# ----------------------------------------------------------------------------- soft_lookup

def _lookup(query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> Case:
    label = f"`soft_lookup(query, keys, values)` with shapes {query.shape}, {keys.shape}, {values.shape}"
    return Case(label, (query, keys, values))


def _judge_lookup(case: Case, got: Any, expected: tuple[np.ndarray, np.ndarray]) -> None:
    query, keys, values = case.args
    out, weights = as_pair(expect_value(got, case, "a pair (output, weights)"), case.label, ("output", "weights"))
    weights = as_array(weights, f"the weights from {case.label}")
    out = as_array(out, f"the output from {case.label}")
    expected_out, expected_w = expected
    scores = ref.relevance_scores(query, keys)
    weight_mistakes = {
        "these are the raw relevance scores; turn them into weights with your softmax.": scores,
        **wrong_axis_mistakes(ref.softmax, scores, -1, hint="Each query's weights must sum to 1 over the keys."),
    }
    assert_close_to_reference(weights, expected_w, f"the weights from {case.label}", mistakes=weight_mistakes,
                              hint="weights = softmax of the relevance scores over the keys.")
    assert_rows_sum_to_one(weights, f"the weights from {case.label}")
    output_mistakes = {
        "this is the plain mean of the values; weight each value by its key's softmax weight.":
            np.broadcast_to(values.mean(axis=0), expected_out.shape),
        "the values are weighted by the raw scores; use the softmax weights instead.": scores @ values,
    }
    assert_close_to_reference(out, expected_out, f"the output from {case.label}", mistakes=output_mistakes,
                              hint="output = weights @ values: one entry per value dimension (d_v).")


SOFT_LOOKUP = Exercise(
    grade_id="soft_lookup_tests", title="Exercise 3 (one query)", name="soft_lookup",
    reference=ref.soft_lookup, judge=_judge_lookup, passed="one query gets the right weights and output",
    visible=lambda: [_lookup(np.array([2.0, 0.5]), SHELF_KEYS, SHELF_VALUES),
                     _lookup(*_normal(np.random.default_rng(3), (4,), (6, 4), (6, 3)))],
    hidden=lambda rng: [_lookup(*_normal(rng, (3,), (1, 3), (1, 2))),
                        _lookup(*_normal(rng, (16,), (10, 16), (10, 5))),
                        _lookup(4 * rng.standard_normal(8), *_normal(rng, (5, 8), (5, 1)))],
)
SOFT_LOOKUP_BATCH = Exercise(
    grade_id="soft_lookup_batch_tests", title="Exercise 3 (a batch of queries)", name="soft_lookup",
    reference=ref.soft_lookup, judge=_judge_lookup, passed="a batch of queries gets one row of weights per query",
    visible=lambda: [_lookup(np.array([[2.0, 0.5], [0.0, -1.0], [0.0, 0.0]]), SHELF_KEYS, SHELF_VALUES),
                     _lookup(*_normal(np.random.default_rng(4), (5, 4), (6, 4), (6, 3)))],
    hidden=lambda rng: [_lookup(*_normal(rng, (4, 3), (4, 3), (4, 2))),  # Tq == n: a wrong axis keeps every shape
                        _lookup(*_normal(rng, (1, 5), (3, 5), (3, 4))),
                        _lookup(*_normal(rng, (6, 2), (1, 2), (1, 3)))],
)


# ----------------------------------------------------------------------------- orthogonal_query

def _orthogonal(keys: np.ndarray, seed: int) -> Case:
    return Case(f"`orthogonal_query(keys, rng)` with keys {keys.shape}", (keys, np.random.default_rng(seed)))


def _judge_orthogonal(case: Case, got: Any, expected: None) -> None:
    keys = case.args[0]
    query = as_array(expect_value(got, case, "a query vector"), case.label)
    assert_shape(query, (keys.shape[1],), case.label, "The query lives in the same d-dimensional space as the keys.")
    assert_finite(query, case.label)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        raise Wrong(f"{case.label} returned the zero vector: it is orthogonal to everything but asks nothing. "
                    "Return a nonzero vector (e.g. scale it to length 1).")
    cosines = np.abs(keys @ query) / (np.linalg.norm(keys, axis=1) * norm + 1e-300)
    worst = int(np.argmax(cosines))
    if cosines[worst] > 1e-8:
        raise Wrong(f"{case.label} is not orthogonal to key {worst}: |cos| = {cosines[worst]:.3g} (should be 0 up "
                    "to rounding). Remove from a random vector its component along every key direction, e.g. with "
                    "an orthonormal basis of the keys (np.linalg.qr or svd).")
    values = np.random.default_rng(keys.shape[0]).standard_normal((keys.shape[0], 3))
    out, weights = ref.soft_lookup(query, keys, values)
    n = keys.shape[0]
    assert_close_to_reference(weights, np.full(n, 1.0 / n), f"the attention weights of your query ({case.label})",
                              atol=1e-9)
    assert_close_to_reference(out, values.mean(axis=0), f"the lookup output of your query ({case.label})", atol=1e-9)


def _judge_impossible(case: Case, got: Any, expected: None) -> None:
    n, d = case.args[0].shape
    expect_raise(got, case, "ValueError", f"these {n} keys span all {d} dimensions, so only the zero vector is "
                                          "orthogonal to all of them")


ORTHOGONAL = Exercise(
    grade_id="orthogonal_query_tests", title="Exercise 4 (an orthogonal query)", name="orthogonal_query",
    judge=_judge_orthogonal, passed="nonzero, orthogonal, uniform weights, output = mean of the values",
    visible=lambda: [_orthogonal(np.random.default_rng(5).standard_normal((3, 5)), 50),
                     _orthogonal(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 51)],
    hidden=lambda rng: [_orthogonal(rng.standard_normal((1, 3)), 70),  # a single key
                        _orthogonal(rng.standard_normal((5, 6)), 71),  # n = d - 1: a one-dimensional answer
                        _orthogonal(rng.standard_normal((7, 3)) @ rng.standard_normal((3, 5)), 72),  # n > d, rank 3
                        _orthogonal(1000 * rng.standard_normal((2, 4)), 73)],  # long keys
)
ORTHOGONAL_IMPOSSIBLE = Exercise(
    grade_id="orthogonal_impossible_tests", title="Exercise 4 (keys that span the space)", name="orthogonal_query",
    judge=_judge_impossible, passed="raises ValueError when the keys span the space",
    visible=lambda: [_orthogonal(np.eye(3), 0)],
    hidden=lambda rng: [_orthogonal(rng.standard_normal((4, 4)), 0),
                        _orthogonal(rng.standard_normal((6, 3)), 0),  # more keys than dimensions
                        _orthogonal(2 * np.eye(2) + 0.1 * rng.standard_normal((2, 2)), 0)],
)

EXERCISES = Exercises("01_library_lookup", [RELEVANCE, RELEVANCE_BATCH, SOFTMAX, SOFTMAX_STABILITY, SOFT_LOOKUP,
                                            SOFT_LOOKUP_BATCH, ORTHOGONAL, ORTHOGONAL_IMPOSSIBLE])
check = EXERCISES.check
record = EXERCISES.record
