"""The graded exercises of Chapter 1, "The library lookup", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is.

Each test cell calls ``grading.check("<grade_id>", student_function)`` (the visible test) and, in its
hidden part, ``grading.record(...)``; the grader's verifier judges the recorded results with the
same declarations. Each exercise and the mistake it is built to catch:

* ``relevance_tests`` / ``relevance_batch_tests``: one number per key (not per coordinate); rows are
  queries (a transposed result is named);
* ``softmax_tests``: the axis, shapes, rows sum to 1; ``softmax_stability_tests``: the max
  subtraction, per row (a global max is caught), and ``-inf`` giving exactly 0;
* ``zero_score_tests``: a question answered with a number, the weight of a book scored 0 next to a book
  scored 2 (the uniform share and "weight 0" are named: only differences between scores matter);
* ``soft_lookup_tests`` / ``soft_lookup_batch_tests``: weights from the softmax of the scores, the
  output as the weighted average (raw scores, the plain mean and the wrong axis are named);
* ``equal_scores_tests``: a query whose scores all equal a level c != 0 (solving ``keys @ q = c 1``),
  which gives uniform weights and the mean value; ``orthogonal_query_tests``: the case c = 0, a nonzero
  query orthogonal to every key; ``no_equal_scores_tests``: ``ValueError`` when no such query exists.
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
    number_judge,
    wrong_axis_mistakes,
)
from xattn_edu.chapters.support.exercise import (
    Case,
    Exercise,
    Exercises,
    Wrong,
    answer,
    expect_raise,
    expect_value,
)
from xattn_edu.chapters.support.guard import LIBRARY_LOG_SOFTMAX, importable

OVERFLOW_HINT = (
    "np.exp overflows above about 709 (and every exp underflows to 0 below about -745): subtract the "
    "largest score along `axis` (np.max(..., axis=axis, keepdims=True)) before exponentiating."
)
ROW_MAX_HINT = "Subtract the max of each row (np.max(..., axis=axis, keepdims=True)), not one max for the whole array."
AXIS_HINT = "Use the `axis` argument in np.max and np.sum, with keepdims=True."
KEYS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, -2.0]])
SHELF_KEYS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
SHELF_VALUES = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])

# The guard forbids every library softmax already; exp(log_softmax) is one too, in the softmax and lookup exercises.
LOG_SOFTMAX = importable(*LIBRARY_LOG_SOFTMAX)


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
    reference=ref.softmax, judge=_judge_softmax, forbid=LOG_SOFTMAX,
    passed="shapes, the axis, and rows that sum to 1 are right",
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
    reference=ref.softmax, judge=_judge_softmax, forbid=LOG_SOFTMAX,
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


# ----------------------------------------------------------------------------- a score of 0

ZERO_SCORE_SCORES = np.array([2.0, 0.0, 0.0])
"""The question's scores: one book scored 2, two books scored 0."""


_ZERO_SCORE_WEIGHTS = ref.softmax(ZERO_SCORE_SCORES)

ZERO_SCORE = Exercise(
    grade_id="zero_score_tests", title="Exercise 3 (a score of 0)", name="zero_score_weight",
    reference=float(_ZERO_SCORE_WEIGHTS[1]), run=answer,
    judge=number_judge({
        1 / 3: "1/3 is the uniform share: a score of 0 is not neutral. Softmax only sees differences, and these "
               "books are 2 below the first one.",
        0.0: "a score of 0 does not mean weight 0: e^0 = 1, so the book keeps a share of the light.",
        float(_ZERO_SCORE_WEIGHTS[0]): "that is the weight of the book scored 2; the question asks for one of the "
                                       "books scored 0.",
        float(2 * _ZERO_SCORE_WEIGHTS[1]): "that is the weight of both books scored 0 together; the question asks "
                                           "for one of them.",
    }, "Write the softmax of (2, 0, 0) by hand: e^0 / (e^2 + e^0 + e^0)."),
    passed="right: a book scored 0 gets less than the uniform share 1/3, because another book scored higher",
    visible=lambda: [Case("`zero_score_weight`")],
    hidden=lambda rng: [],
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
    grade_id="soft_lookup_tests", title="Exercise 4 (one query)", name="soft_lookup",
    reference=ref.soft_lookup, judge=_judge_lookup, forbid=LOG_SOFTMAX,
    passed="one query gets the right weights and output",
    visible=lambda: [_lookup(np.array([2.0, 0.5]), SHELF_KEYS, SHELF_VALUES),
                     _lookup(*_normal(np.random.default_rng(3), (4,), (6, 4), (6, 3)))],
    hidden=lambda rng: [_lookup(*_normal(rng, (3,), (1, 3), (1, 2))),
                        _lookup(*_normal(rng, (16,), (10, 16), (10, 5))),
                        _lookup(4 * rng.standard_normal(8), *_normal(rng, (5, 8), (5, 1)))],
)
SOFT_LOOKUP_BATCH = Exercise(
    grade_id="soft_lookup_batch_tests", title="Exercise 4 (a batch of queries)", name="soft_lookup",
    reference=ref.soft_lookup, judge=_judge_lookup, forbid=LOG_SOFTMAX,
    passed="a batch of queries gets one row of weights per query",
    visible=lambda: [_lookup(np.array([[2.0, 0.5], [0.0, -1.0], [0.0, 0.0]]), SHELF_KEYS, SHELF_VALUES),
                     _lookup(*_normal(np.random.default_rng(4), (5, 4), (6, 4), (6, 3)))],
    hidden=lambda rng: [_lookup(*_normal(rng, (4, 3), (4, 3), (4, 2))),  # Tq == n: a wrong axis keeps every shape
                        _lookup(*_normal(rng, (1, 5), (3, 5), (3, 4))),
                        _lookup(*_normal(rng, (6, 2), (1, 2), (1, 3)))],
)


# ----------------------------------------------------------------------------- equal_score_query

def _equal(keys: np.ndarray, level: float) -> Case:
    return Case(f"`equal_score_query(keys, {level:g})` with keys {keys.shape}", (keys, level))


def _judge_equal(case: Case, got: Any, expected: None) -> None:
    keys, level = case.args
    query = as_array(expect_value(got, case, "a query vector"), case.label)
    assert_shape(query, (keys.shape[1],), case.label, "The query lives in the same d-dimensional space as the keys.")
    assert_finite(query, case.label)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        raise Wrong(f"{case.label} returned the zero vector: its scores are all 0, but it asks nothing. Return a "
                    "nonzero query (a direction no key uses, e.g. from np.linalg.svd)." if level == 0 else
                    f"{case.label} returned the zero vector, whose scores are 0, not {level:g}.")
    scores = keys @ query
    if level == 0:
        cosines = np.abs(scores) / (np.linalg.norm(keys, axis=1) * norm + 1e-300)
        worst = int(np.argmax(cosines))
        if cosines[worst] > 1e-8:
            raise Wrong(f"{case.label} is not orthogonal to key {worst}: |cos| = {cosines[worst]:.3g} (should be 0 "
                        "up to rounding). Take a direction of the null space of the keys: the rows of vt after the "
                        "first `rank` ones, from np.linalg.svd(keys).")
    else:
        tolerance = 1e-7 * (abs(level) + np.linalg.norm(keys, axis=1).max() * norm)
        worst = int(np.argmax(np.abs(scores - level)))
        if abs(scores[worst] - level) > tolerance:
            if np.abs(scores).max() <= tolerance:
                raise Wrong(f"{case.label}: your query is orthogonal to every key (all scores 0); for the level "
                            f"{level:g} solve keys @ q = {level:g} * np.ones(n) instead.")
            if np.ptp(scores) <= tolerance:
                raise Wrong(f"{case.label}: the scores are all equal, so the weights are uniform, but they are "
                            f"{scores[0]:.4g}, not {level:g}. Do not rescale the solution of keys @ q = level * 1.")
            raise Wrong(f"{case.label}: key {worst} gets the score {scores[worst]:.4g}, not {level:g}. Solve "
                        "keys @ q = level * np.ones(n), e.g. with np.linalg.lstsq.")
    values = np.random.default_rng(keys.shape[0]).standard_normal((keys.shape[0], 3))
    out, weights = ref.soft_lookup(query, keys, values)
    n = keys.shape[0]
    assert_close_to_reference(weights, np.full(n, 1.0 / n), f"the attention weights of your query ({case.label})",
                              atol=1e-9)
    assert_close_to_reference(out, values.mean(axis=0), f"the lookup output of your query ({case.label})", atol=1e-9)


def _judge_impossible(case: Case, got: Any, expected: None) -> None:
    keys, level = case.args
    n, d = keys.shape
    why = (f"these {n} keys span all {d} dimensions, so only the zero vector is orthogonal to all of them"
           if level == 0 else f"the {n} equations keys @ q = {level:g} have no common solution in {d} dimensions "
                               "(check keys @ q against the level after solving)")
    expect_raise(got, case, "ValueError", why)


EQUAL_SCORES = Exercise(
    grade_id="equal_scores_tests", title="Exercise 5 (equal scores, c != 0)", name="equal_score_query",
    judge=_judge_equal, passed="every score equals the level: uniform weights and the mean of the values",
    visible=lambda: [_equal(np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]]), 1.0),
                     _equal(np.random.default_rng(5).standard_normal((4, 4)), 1.5),
                     _equal(np.random.default_rng(6).standard_normal((2, 5)), -1.0)],
    hidden=lambda rng: [_equal(rng.standard_normal((8, 8)), 0.7),  # n = d: the unique solution
                        _equal(rng.standard_normal((1, 3)), -3.0),  # a single key
                        _equal(rng.standard_normal((5, 9)), 2.0),  # n < d: many solutions, any one will do
                        _equal(1000 * rng.standard_normal((3, 3)), 0.01)],  # long keys, a small level
)
ORTHOGONAL = Exercise(
    grade_id="orthogonal_query_tests", title="Exercise 5 (equal scores of 0: an orthogonal query)",
    name="equal_score_query", judge=_judge_equal, passed="nonzero, orthogonal to every key, uniform weights",
    visible=lambda: [_equal(np.random.default_rng(7).standard_normal((3, 5)), 0.0),
                     _equal(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 0.0)],
    hidden=lambda rng: [_equal(rng.standard_normal((1, 3)), 0.0),  # a single key
                        _equal(rng.standard_normal((5, 6)), 0.0),  # n = d - 1: a one-dimensional answer
                        _equal(rng.standard_normal((7, 3)) @ rng.standard_normal((3, 5)), 0.0),  # n > d, rank 3
                        _equal(1000 * rng.standard_normal((2, 4)), 0.0)],  # long keys
)
NO_EQUAL_SCORES = Exercise(
    grade_id="no_equal_scores_tests", title="Exercise 5 (when no such query exists)", name="equal_score_query",
    judge=_judge_impossible, passed="raises ValueError when no nonzero query ties the scores",
    visible=lambda: [_equal(np.eye(3), 0.0),
                     _equal(np.random.default_rng(8).standard_normal((4, 3)), 1.0)],
    hidden=lambda rng: [_equal(rng.standard_normal((4, 4)), 0.0),  # n = d: orthogonal is impossible
                        _equal(rng.standard_normal((6, 3)), 0.0),  # more keys than dimensions
                        _equal(rng.standard_normal((7, 6)), -2.0),  # n = d + 1
                        _equal(2 * np.eye(2) + 0.1 * rng.standard_normal((2, 2)), 0.0)],
)

EXERCISES = Exercises("01_library_lookup", [RELEVANCE, RELEVANCE_BATCH, SOFTMAX, SOFTMAX_STABILITY, ZERO_SCORE,
                                            SOFT_LOOKUP, SOFT_LOOKUP_BATCH, EQUAL_SCORES, ORTHOGONAL, NO_EQUAL_SCORES])
check = EXERCISES.check
record = EXERCISES.record
