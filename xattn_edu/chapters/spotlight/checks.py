"""The graded exercises of Chapter 2, "The spotlight", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each test cell calls
``grading.check("<grade_id>", student_function)`` and, in its hidden part, ``grading.record(...)``.
Each exercise and the mistake it is built to catch:

* ``entropy_tests``: the formula (natural log, the minus sign, a sum over the last axis);
  ``entropy_zeros_tests``: exact zeros, ``0 log 0 = 0`` (no NaN);
* ``scaled_scores_tests``: the ``1/sqrt(d)`` scale (none, ``1/d``, ``1/sqrt(n)`` and ``* sqrt(d)`` are named);
* ``temperature_tests``: dividing by T, one distribution per row, ``ValueError`` for ``T <= 0``;
  ``temperature_extremes_tests``: tiny temperatures, which overflow without the max subtraction;
* ``masked_softmax_tests`` (torch, with gradients): the mask applied to the scores before the softmax
  (ignored, inverted and applied-after masks are named); ``masked_softmax_empty_tests``: a row whose
  every key is masked gets zero weights and a finite gradient (NaN rows, uniform rows from a ``-1e9``
  fill and the NaN gradient of an additive ``-inf`` mask followed by ``nan_to_num`` are named);
* ``jensen_tests`` and ``padding_bound_tests``: the two steps of the bound ``H <= log n+``, answered
  with numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from xattn_edu.chapters.library_lookup.reference import relevance_scores, softmax
from xattn_edu.chapters.spotlight import reference as ref
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
    answer,
    expect_raise,
    expect_value,
)
from xattn_edu.chapters.support.gradients import with_gradients
from xattn_edu.chapters.support.guard import LIBRARY_LOG_SOFTMAX, importable
from xattn_edu.nn.attention import masked_softmax

# Library calls that would do an exercise in one line, forbidden on top of the guard's defaults (which
# already forbid xattn_edu.chapters.library_lookup.reference, xattn_edu.nn.attention and every library softmax).
# scipy.special's entr, xlogy and rel_entr are numpy ufuncs, whose calls a profiler hook never sees, so the
# guard cannot forbid them (docs/grading-integrity.md lists this gap).
ENTROPY_FORBIDDEN = ("xattn_edu.chapters.spotlight.reference", *importable(
    "scipy.stats.entropy", "torch.special.entr", "torch.special.xlogy", "torch.xlogy", "torch.Tensor.xlogy",
    "torch.distributions.Categorical.entropy",
))
SCORES_FORBIDDEN = ("xattn_edu.chapters.spotlight.reference",)
TEMPERATURE_FORBIDDEN = (*SCORES_FORBIDDEN, *importable(*LIBRARY_LOG_SOFTMAX))
# Writing a softmax was Chapter 1 (and `temperature_softmax` here); in `masked_softmax` the point is the
# mask, so torch's softmax is allowed there.
SOFTMAX_ALLOWED = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.special.softmax")

NATS_HINT = "H = -sum(w * log(w)) over the last axis, with the natural log np.log (nats)."
ZERO_HINT = ("np.log(0) is -inf and 0 * -inf is nan: count a zero weight as contributing 0 "
             "(e.g. take the log only where w > 0 with np.where, or mask those terms out).")
OVERFLOW_HINT = ("scores / T gets huge for a small temperature and np.exp overflows to inf (inf / inf = nan): "
                 "subtract the largest scaled score of each row before np.exp, as in Chapter 1.")
EMPTY_ROW_HINT = ("a query whose every key is masked has nothing to attend to: softmax of all -inf is 0/0 = nan. "
                  "Give such rows zero weights (e.g. zero the masked positions after the softmax with masked_fill).")


def _distributions(rng: np.random.Generator, shape: tuple[int, ...], spread: float = 1.0) -> np.ndarray:
    """Strictly positive distributions along the last axis (softmax of Gaussian scores)."""
    return softmax(spread * rng.standard_normal(shape), axis=-1)


# ----------------------------------------------------------------------------- attention_entropy

def _entropy(weights: np.ndarray, hint: str = NATS_HINT) -> Case:
    return Case(f"`attention_entropy(weights)` with weights of shape {weights.shape}", (weights,), note=hint)


def _judge_entropy(case: Case, got: Any, expected: np.ndarray) -> None:
    weights = case.args[0]
    got = as_array(expect_value(got, case, "the entropies"), case.label)
    plogp = np.where(weights > 0, weights * np.log(np.where(weights > 0, weights, 1.0)), 0.0)
    mistakes = {
        "the sign is flipped: entropy is -sum(w log w), which is never negative.": -expected,
        "this is log base 2 (bits); the course measures entropy in nats with np.log.": expected / math.log(2),
        "this is log base 10; the course measures entropy in nats with np.log.": expected / math.log(10),
        "this averages -w log w over the keys; entropy is the sum.": -plogp.mean(axis=-1),
        "this is the total over every axis; give one entropy per distribution (sum over the last axis only).":
            np.broadcast_to(-plogp.sum(), expected.shape),
        **{f"summed over axis {axis} instead of the last axis (the keys).": -plogp.sum(axis=axis)
           for axis in range(weights.ndim - 1)},
    }
    if np.any(weights == 0):
        assert_finite(got, case.label, ZERO_HINT)
    assert_close_to_reference(got, expected, case.label, rtol=1e-6, atol=1e-9, mistakes=mistakes,
                              hint="Return one number per distribution: shape = weights.shape[:-1]. " + case.note)


def _masked_distributions(rng: np.random.Generator) -> np.ndarray:
    masked = _distributions(rng, (2, 3, 5)) * (rng.random((2, 3, 5)) < 0.6)
    masked[..., 0] += 1e-3  # every row keeps a key
    return masked / masked.sum(axis=-1, keepdims=True)


ENTROPY = Exercise(
    grade_id="entropy_tests", title="Exercise 1 (the formula)", name="attention_entropy",
    reference=ref.attention_entropy, judge=_judge_entropy, forbid=ENTROPY_FORBIDDEN,
    passed="uniform = log n, peaked < log n, one entropy per row (nats)",
    visible=lambda: [_entropy(np.full(4, 0.25)),  # uniform over 4 keys: log 4
                     _entropy(np.array([0.7, 0.2, 0.1])),
                     _entropy(_distributions(np.random.default_rng(20), (3, 5)))],  # 3 queries -> shape (3,)
    hidden=lambda rng: [_entropy(_distributions(rng, (2, 3, 4), spread=3.0)),  # (B, Tq, Tk) -> (B, Tq)
                        _entropy(_distributions(rng, (4, 4))),  # square: a wrong axis keeps the shape
                        _entropy(np.array([[1.0], [1.0]])),  # one key: entropy 0
                        _entropy(np.full((2, 64), 1.0 / 64)),  # uniform over 64: log 64
                        _entropy(_distributions(rng, (3, 6)).astype(np.float32)),
                        _entropy(softmax(np.array([0.0, -700.0, -740.0])))],  # tiny but positive weights
)
ENTROPY_ZEROS = Exercise(
    grade_id="entropy_zeros_tests", title="Exercise 1 (weights of exactly 0)", name="attention_entropy",
    reference=ref.attention_entropy, judge=_judge_entropy, forbid=ENTROPY_FORBIDDEN,
    passed="zero weights give 0 log 0 = 0 (no nan)",
    visible=lambda: [_entropy(np.array([1.0, 0.0, 0.0]), ZERO_HINT),  # one-hot: entropy 0
                     _entropy(np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]), ZERO_HINT)],
    hidden=lambda rng: [_entropy(_masked_distributions(rng), ZERO_HINT),
                        _entropy(np.zeros((2, 4)), ZERO_HINT),  # every key masked: all-zero rows, entropy 0
                        _entropy(np.eye(5), ZERO_HINT),  # five one-hot rows
                        _entropy(np.array([0.0, 1e-300, 1.0 - 1e-300]), ZERO_HINT)],
)


# ----------------------------------------------------------------------------- scaled_scores

def _scaled(query: np.ndarray, keys: np.ndarray) -> Case:
    return Case(f"`scaled_scores(query, keys)` with query {query.shape} and keys {keys.shape}", (query, keys))


def _judge_scaled(case: Case, got: Any, expected: np.ndarray) -> None:
    query, keys = case.args
    got = as_array(expect_value(got, case, "the scores"), case.label)
    (n, d), raw = keys.shape, relevance_scores(query, keys)
    mistakes = {
        f"these are the raw dot products: divide them by sqrt(d) = sqrt({d}).": raw,
        f"divided by d = {d}; divide by its square root, sqrt(d), instead.": raw / d,
        f"divided by sqrt(n) = sqrt({n}) (the number of keys); the scale uses the width d = {d}.": raw / math.sqrt(n),
        f"multiplied by sqrt(d) = sqrt({d}) instead of dividing by it.": raw * math.sqrt(d),
    }
    if query.ndim == 2:
        mistakes["looks transposed: row t should hold query t's scores for every key, shape (Tq, n)."] = expected.T
    assert_close_to_reference(got, expected, case.label, mistakes=mistakes,
                              hint="scores[..., i] = query · keys[i] / sqrt(d), d = keys.shape[-1].")


SCALED_SCORES = Exercise(
    grade_id="scaled_scores_tests", title="Exercise 2", name="scaled_scores",
    reference=ref.scaled_scores, judge=_judge_scaled, forbid=SCORES_FORBIDDEN,
    passed="scores divided by sqrt(d), shapes (n,) and (Tq, n)",
    visible=lambda: [_scaled(np.array([2.0, 0.0, 0.0, 2.0]),  # d = 4: divide by 2
                             np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, -2.0, 0.0, 2.0]])),
                     _scaled(*(np.random.default_rng(21).standard_normal(shape) for shape in ((2, 16), (5, 16))))],
    hidden=lambda rng: [_scaled(rng.standard_normal(256), rng.standard_normal((7, 256))),
                        _scaled(rng.standard_normal((4, 9)), rng.standard_normal((4, 9))),  # Tq == n
                        _scaled(rng.standard_normal((3, 2)), rng.standard_normal((1, 2))),  # one key
                        _scaled(rng.standard_normal(1), rng.standard_normal((5, 1)))],  # d = 1: scale 1
)


# ----------------------------------------------------------------------------- temperature_softmax

def _temperature(scores: np.ndarray, temperature: float, hint: str = "") -> Case:
    label = f"`temperature_softmax(scores, {temperature!r})` with scores of shape {scores.shape}"
    return Case(label, (scores, temperature), note=hint)


def _rejects(temperature: float) -> Case:
    return Case(f"`temperature_softmax(scores, {temperature!r})`", (np.array([1.0, 2.0]), temperature),
                note={"raises": True})


def _judge_temperature(case: Case, got: Any, expected: np.ndarray) -> None:
    if isinstance(case.note, dict):
        expect_raise(got, case, "ValueError", "a temperature must be positive (check it before dividing, e.g. "
                                              "`if not temperature > 0: raise ValueError(...)`)")
        return
    scores, temperature = case.args
    got = as_array(expect_value(got, case, "the weights"), case.label)
    assert_shape(got, scores.shape, case.label, "The weights have the shape of the scores.")
    assert_finite(got, case.label, case.note or OVERFLOW_HINT)
    mistakes = {
        "the temperature is ignored: divide the scores by it before the softmax.": softmax(scores),
        "the scores are multiplied by the temperature; divide them by it (a high T must flatten the weights).":
            softmax(scores * temperature),
        **wrong_axis_mistakes(lambda x, axis: ref.temperature_softmax(x, temperature, axis=axis), scores, -1,
                              hint="Each row (one query) must sum to 1 over the keys, the last axis."),
    }
    assert_close_to_reference(got, expected, case.label, rtol=1e-6, atol=1e-12, mistakes=mistakes,
                              hint=case.note or "weights = softmax(scores / T) over the last axis.")
    assert_rows_sum_to_one(got, case.label)


TEMPERATURE = Exercise(
    grade_id="temperature_tests", title="Exercise 3 (dividing by T)", name="temperature_softmax",
    reference=ref.temperature_softmax, judge=_judge_temperature, forbid=TEMPERATURE_FORBIDDEN,
    passed="softmax(scores / T) per row; T <= 0 raises ValueError",
    visible=lambda: [*(_temperature(np.array([2.0, 1.0, 0.0, -1.0]), t) for t in (1.0, 0.5, 4.0)),
                     _temperature(np.random.default_rng(23).standard_normal((3, 5)), 2.0),  # one row per query
                     _rejects(0.0)],
    hidden=lambda rng: [_temperature(rng.standard_normal((2, 3, 4)), 0.7),
                        _temperature(rng.standard_normal((4, 4)), 3.0),  # square: a wrong axis keeps the shape
                        _temperature(np.array([[0.3]]), 0.5),  # one key: weight 1
                        _temperature(np.full((2, 3), 1.5), 0.9),  # equal scores: uniform at any T
                        _rejects(-1.0)],
)
TEMPERATURE_EXTREMES = Exercise(
    grade_id="temperature_extremes_tests", title="Exercise 3 (extreme temperatures)", name="temperature_softmax",
    reference=ref.temperature_softmax, judge=_judge_temperature, forbid=TEMPERATURE_FORBIDDEN,
    passed="T -> 0 approaches the argmax, T -> inf approaches uniform, no overflow",
    visible=lambda: [_temperature(np.array([1.0, 3.0, 2.0]), 0.001, OVERFLOW_HINT),  # ~ (0, 1, 0): the argmax
                     _temperature(np.array([1.0, 3.0, 2.0]), 1000.0,
                                  "At a huge temperature the weights approach uniform 1/n.")],
    hidden=lambda rng: [_temperature(rng.standard_normal((3, 6)), 1e-4, OVERFLOW_HINT),
                        _temperature(np.array([[2.0, 2.0, -1.0]]), 0.001, OVERFLOW_HINT),  # a tie shares the weight
                        _temperature(np.array([[-5.0, -6.0, -7.0]]), 0.002, OVERFLOW_HINT),  # every exp underflows
                        _temperature(np.array([[1000.0, 999.0], [-3.0, 4.0]]), 1.0, OVERFLOW_HINT),
                        _temperature(rng.standard_normal((2, 5)), 1e6)],
)


# ----------------------------------------------------------------------------- masked_softmax (torch)

def _masked(scores: torch.Tensor, mask: torch.Tensor | None) -> Case:
    shapes = f"scores {tuple(scores.shape)}" + ("" if mask is None else f", mask {tuple(mask.shape)}")
    return Case(f"`masked_softmax(scores, mask)` with {shapes}", (scores, mask))


def _scores(seed: int, *shape: int) -> torch.Tensor:
    return 2.0 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _weight_mistakes(scores: torch.Tensor, mask: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Weights that known mistakes produce, keyed by the message that explains each."""
    if mask is None:
        return {}
    full = torch.broadcast_to(mask, scores.shape)
    return {
        "the mask is ignored: masked keys still get weight. Set their scores to -inf before the softmax.":
            torch.softmax(scores, dim=-1),
        ("the mask is applied after the softmax: masked keys are zeroed but the rows no longer sum to 1. "
         "Set masked scores to -inf *before* the softmax."): torch.softmax(scores, dim=-1) * full,
        "the mask is inverted: True means the query MAY attend to that key.": masked_softmax(scores, ~full),
        ("a row whose every key is masked got uniform weights: a large negative fill such as -1e9 leaves its "
         "scores equal, so the softmax spreads it over keys it may not see. This course gives such a row zero "
         "weights: zero it after the softmax."): torch.softmax(scores.masked_fill(~full, -1e9), dim=-1),
    }


def _judge_masked(case: Case, got: Any, expected: tuple) -> None:
    scores, mask = case.args
    weights, gradients = as_pair(expect_value(got, case, "the weights"), case.label, ("weights", "gradients"))
    weights = as_array(weights, case.label)
    expected_weights, expected_gradients = expected
    assert_shape(weights, tuple(scores.shape), case.label, "The weights have the shape of the scores.")
    assert_finite(weights, case.label, EMPTY_ROW_HINT)
    mistakes = {message: as_array(wrong, message) for message, wrong in _weight_mistakes(scores, mask).items()}
    assert_close_to_reference(weights, expected_weights, case.label, rtol=1e-7, atol=1e-10, mistakes=mistakes,
                              hint="weights = softmax over the keys the mask allows; masked keys get exactly 0.")
    gradient = as_array(gradients["scores"], f"the gradient of {case.label}")
    where = f"the gradient that {case.label} passes back to the scores"
    assert_finite(gradient, where, "adding -inf to the scores of a row whose every key is masked makes that row "
                                   "nan, and nan_to_num only hides it in the forward pass: its gradient stays nan. "
                                   "Replace the masked scores (masked_fill or torch.where) instead of adding to them.")
    assert_close_to_reference(gradient, expected_gradients["scores"], where, rtol=1e-7, atol=1e-10,
                              hint="The weights are right but do not depend on the scores as the softmax does: "
                                   "no .detach(), no numpy round trip, no in-place writes into the scores.")


PER_QUERY_MASK = torch.tensor([[True, False, True, False, True]] * 3 +
                              [[False, True, True, True, False]] * 3).reshape(2, 3, 5)
"""A (B, Tq, Tk) = (2, 3, 5) mask: every query of a sentence sees the same keys, each sentence others."""

MASKED_SOFTMAX = Exercise(
    grade_id="masked_softmax_tests", title="Exercise 5 (masks)", name="masked_softmax",
    reference=masked_softmax, judge=_judge_masked, run=with_gradients(wrt=("scores",)), allow=SOFTMAX_ALLOWED,
    passed="masked keys get weight 0, every row sums to 1, and the gradient matches",
    visible=lambda: [_masked(_scores(30, 2, 3, 4), None),
                     _masked(_scores(31, 2, 3, 5), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, :]),
                     _masked(_scores(32, 2, 3, 5), PER_QUERY_MASK)],
    hidden=lambda rng: [
        _masked(_scores(int(rng.integers(1 << 30)), 3, 4, 6),
                torch.from_numpy((rng.random((3, 4, 6)) < 0.5) | (np.arange(6) == 2))),  # column 2 always visible
        _masked(_scores(int(rng.integers(1 << 30)), 3, 4, 6), torch.ones(4, 6, dtype=torch.bool).tril(2)),  # (Tq, Tk)
        _masked(_scores(int(rng.integers(1 << 30)), 3, 1, 6), torch.from_numpy(np.arange(6) == 4)),  # one key: weight 1
        _masked(_scores(int(rng.integers(1 << 30)), 5), torch.tensor([True, True, False, True, False]))],  # 1-D
)
MASKED_SOFTMAX_EMPTY = Exercise(
    grade_id="masked_softmax_empty_tests", title="Exercise 5 (a query that may see no key)", name="masked_softmax",
    reference=masked_softmax, judge=_judge_masked, run=with_gradients(wrt=("scores",)), allow=SOFTMAX_ALLOWED,
    passed="a query with every key masked gets zero weights and a zero gradient, never nan",
    visible=lambda: [_masked(_scores(33, 2, 2, 3), torch.tensor([[[True, True, False], [False, False, False]],
                                                                 [[True, False, False], [True, True, True]]]))],
    hidden=lambda rng: [
        _masked(_scores(int(rng.integers(1 << 30)), 3, 2, 4), torch.tensor([True, True, False])[:, None, None]),
        _masked(_scores(int(rng.integers(1 << 30)), 3, 2, 4), torch.zeros(3, 2, 4, dtype=torch.bool))],
)


# ----------------------------------------------------------------------------- the bound H <= log n+, two numbers

JENSEN_WEIGHTS = np.array([0.5, 0.3, 0.2, 0.0, 0.0])
"""The question's weights: three visible keys, two masked."""
PADDING = (10, 4)
"""The question's memory: Tk = 10 positions, 4 of them padding."""


JENSEN = Exercise(
    grade_id="jensen_tests", title="Exercise 4 (the mean of X)", name="mean_of_x", run=answer,
    reference=float(np.count_nonzero(JENSEN_WEIGHTS)),
    judge=number_judge({
        float(JENSEN_WEIGHTS.size): "keys with weight 0 are never drawn, so they add nothing to E[X]: the sum runs "
                                    "over the keys with w > 0 only.",
        1.0: "that is the sum of the weights; E[X] sums w_i times X's value 1 / w_i.",
        math.log(3): "that is log E[X], the bound itself; the question asks for E[X].",
    }, "E[X] = sum over the keys with w_i > 0 of w_i * (1 / w_i)."),
    passed="right: every visible key adds w * (1/w) = 1, so E[X] counts the visible keys and H <= log n+",
    visible=lambda: [Case("`mean_of_x`")], hidden=lambda rng: [],
)
PADDING_BOUND = Exercise(
    grade_id="padding_bound_tests", title="Exercise 4 (the bound with padding)", name="padding_bound", run=answer,
    reference=math.log(PADDING[0] - PADDING[1]),
    judge=number_judge({
        math.log(PADDING[0]): "padding keys get weight 0, so they do not count: n+ is the number of real keys.",
        float(PADDING[0] - PADDING[1]): "that is n+ itself; the largest entropy is log n+ (in nats).",
        math.log2(PADDING[0] - PADDING[1]): "that is in bits (log base 2); the course uses nats, the natural log.",
        math.log(PADDING[1]): "that counts the padding keys; n+ counts the keys the query may see.",
    }, "The largest entropy over n+ visible keys is log n+, reached by uniform weights over them."),
    passed="right: log of the number of keys the query may see, reached by uniform weights over them",
    visible=lambda: [Case("`padding_bound`")], hidden=lambda rng: [],
)

EXERCISES = Exercises("02_spotlight", [ENTROPY, ENTROPY_ZEROS, SCALED_SCORES, TEMPERATURE, TEMPERATURE_EXTREMES,
                                       MASKED_SOFTMAX, MASKED_SOFTMAX_EMPTY, JENSEN, PADDING_BOUND])
check = EXERCISES.check
record = EXERCISES.record
