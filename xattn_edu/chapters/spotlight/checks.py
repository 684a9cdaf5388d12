"""Checks for Chapter 2, "The spotlight".

Test cells call ``check_<exercise>(fn)`` (visible: small, explained inputs) and
``check_<exercise>_hidden(fn)`` (edge cases). Each computes the expected result with the
references in :mod:`xattn_edu.chapters.spotlight.reference` and :mod:`xattn_edu.nn.attention` first, then runs the
student's function with the references forbidden (:func:`xattn_edu.chapters.support.checks.call_student`).

The exercises and the mistake each cell is built to catch (and nothing else):

* ``attention_entropy``: the formula (``entropy`` cell); exact zeros, ``0 log 0 = 0`` (``entropy_zeros``).
* ``scaled_scores``: the ``1/sqrt(d)`` scale.
* ``temperature_softmax``: dividing by T (``temperature``); tiny temperatures, which overflow
  without the max subtraction (``temperature_extremes``).
* ``masked_attention`` (torch): scores, scale and shapes without a mask (``masked_attention``);
  the mask applied to the scores before the softmax (``masked_attention_mask``); a query whose
  every key is masked gets zeros, not NaN (``masked_attention_empty``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    call_student,
    student_name,
    wrong_axis_mistakes,
)
from xattn_edu.chapters.support.guard import import_target
from xattn_edu.nn.attention import scaled_dot_product_attention


def _existing(*names: str) -> tuple[str, ...]:
    """The dotted names that can be imported here (``forbid_reference`` rejects the others)."""
    return tuple(name for name in names if import_target(name) is not None)


# Library calls that would do an exercise in one line, forbidden on top of the guard's defaults
# (which already forbid xattn_edu.chapters.library_lookup.reference, xattn_edu.nn.attention and every library softmax).
ENTROPY_FORBIDDEN = ("xattn_edu.chapters.spotlight.reference", *_existing(
    "scipy.stats.entropy", "scipy.special.entr", "scipy.special.xlogy", "torch.special.entr",
    "torch.special.xlogy", "torch.xlogy", "torch.Tensor.xlogy", "torch.distributions.Categorical.entropy",
))
SCORES_FORBIDDEN = ("xattn_edu.chapters.spotlight.reference",)
ATTENTION_FORBIDDEN = ("xattn_edu.chapters.spotlight.reference", "xattn_edu.nn.heads",
                       *_existing("torch.nn.functional.multi_head_attention_forward"))
# Writing a softmax was Chapter 1 (and `temperature_softmax` here); in `masked_attention` the point is
# the mask and the scale, so torch's softmax is allowed there.
ATTENTION_ALLOWED = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.special.softmax")

NATS_HINT = "H = -sum(w * log(w)) over the last axis, with the natural log np.log (nats)."
ZERO_HINT = ("np.log(0) is -inf and 0 * -inf is nan: count a zero weight as contributing 0 "
             "(e.g. take the log only where w > 0 with np.where, or mask those terms out).")
OVERFLOW_HINT = ("scores / T gets huge for a small temperature and np.exp overflows to inf (inf / inf = nan): "
                 "subtract the largest scaled score of each row before np.exp, as in Chapter 1.")


def _random_distributions(rng: np.random.Generator, shape: tuple[int, ...], spread: float = 1.0) -> np.ndarray:
    """Strictly positive distributions along the last axis (softmax of Gaussian scores)."""
    return softmax(spread * rng.standard_normal(shape), axis=-1)


# ----------------------------------------------------------------------------- attention_entropy

def _check_entropy_case(fn: Callable, weights: np.ndarray, hint: str = NATS_HINT) -> None:
    expected = ref.attention_entropy(weights)
    what = f"`{fn.__name__}(weights)` with weights of shape {weights.shape}"
    got = as_array(call_student(fn, weights, guard_extra=ENTROPY_FORBIDDEN), what)
    plogp = np.where(weights > 0, weights * np.log(np.where(weights > 0, weights, 1.0)), 0.0)
    mistakes = {
        "the sign is flipped: entropy is -sum(w log w), which is never negative.": -expected,
        "this is log base 2 (bits); the course measures entropy in nats with np.log.": expected / math.log(2),
        "this is log base 10; the course measures entropy in nats with np.log.": expected / math.log(10),
        "this averages -w log w over the keys; entropy is the sum.": -plogp.mean(axis=-1),
        "this is the total over every axis; give one entropy per distribution (sum over the last axis only).":
            np.broadcast_to(-plogp.sum(), expected.shape),
        **({} if weights.ndim < 2 else {
            f"summed over axis {axis} instead of the last axis (the keys).": -plogp.sum(axis=axis)
            for axis in range(weights.ndim - 1)
        }),
    }
    if np.any(weights == 0):
        assert_finite(got, what, ZERO_HINT)
    assert_close_to_reference(got, expected, what, rtol=1e-6, atol=1e-9, mistakes=mistakes,
                              hint="Return one number per distribution: shape = weights.shape[:-1]. " + hint)


def check_entropy(fn: Callable) -> None:
    """Visible: uniform, peaked and random positive weights, one distribution and a batch."""
    _check_entropy_case(fn, np.full(4, 0.25))  # uniform over 4 keys: log 4
    _check_entropy_case(fn, np.array([0.7, 0.2, 0.1]))
    _check_entropy_case(fn, _random_distributions(np.random.default_rng(20), (3, 5)))  # 3 queries, 5 keys -> shape (3,)
    print(f"{student_name(fn)}: uniform = log n, peaked < log n, one entropy per row (nats).")


def check_entropy_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_entropy``: inputs the visible check leaves out."""
    rng = np.random.default_rng(120)
    _check_entropy_case(fn, _random_distributions(rng, (2, 3, 4), spread=3.0))  # (B, Tq, Tk) -> (B, Tq)
    _check_entropy_case(fn, _random_distributions(rng, (4, 4)))  # square: a wrong axis keeps the shape
    _check_entropy_case(fn, np.array([[1.0], [1.0]]))  # one key: entropy 0
    _check_entropy_case(fn, np.full((2, 64), 1.0 / 64))  # uniform over 64: log 64
    _check_entropy_case(fn, _random_distributions(rng, (3, 6)).astype(np.float32))
    _check_entropy_case(fn, softmax(np.array([0.0, -700.0, -740.0])))  # nearly one-hot; tiny but positive weights


def check_entropy_zeros(fn: Callable) -> None:
    """Visible: weights of exactly 0 (masked keys, a saturated softmax) contribute 0, never NaN."""
    _check_entropy_case(fn, np.array([1.0, 0.0, 0.0]), ZERO_HINT)  # one-hot: entropy 0
    _check_entropy_case(fn, np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]), ZERO_HINT)
    print(f"{student_name(fn)}: zero weights give 0 log 0 = 0 (no nan).")


def check_entropy_zeros_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_entropy_zeros``: inputs the visible check leaves out."""
    rng = np.random.default_rng(121)
    masked = _random_distributions(rng, (2, 3, 5)) * (rng.random((2, 3, 5)) < 0.6)
    masked[..., 0] += 1e-3  # every row keeps a key
    _check_entropy_case(fn, masked / masked.sum(axis=-1, keepdims=True), ZERO_HINT)
    _check_entropy_case(fn, np.zeros((2, 4)), ZERO_HINT)  # every key masked: all-zero rows, entropy 0
    _check_entropy_case(fn, np.eye(5), ZERO_HINT)  # five one-hot rows
    _check_entropy_case(fn, np.array([0.0, 1e-300, 1.0 - 1e-300]), ZERO_HINT)


# ----------------------------------------------------------------------------- scaled_scores

def _check_scaled_scores_case(fn: Callable, query: np.ndarray, keys: np.ndarray) -> None:
    expected = ref.scaled_scores(query, keys)
    d, n = keys.shape[1], keys.shape[0]
    what = f"`{fn.__name__}(query, keys)` with query {query.shape} and keys {keys.shape}"
    got = as_array(call_student(fn, query, keys, guard_extra=SCORES_FORBIDDEN), what)
    raw = relevance_scores(query, keys)
    mistakes = {
        f"these are the raw dot products: divide them by sqrt(d) = sqrt({d}).": raw,
        f"divided by d = {d}; divide by its square root, sqrt(d), instead.": raw / d,
        f"divided by sqrt(n) = sqrt({n}) (the number of keys); the scale uses the width d = {d}.": raw / math.sqrt(n),
        f"multiplied by sqrt(d) = sqrt({d}) instead of dividing by it.": raw * math.sqrt(d),
    }
    if query.ndim == 2:
        mistakes["looks transposed: row t should hold query t's scores for every key, shape (Tq, n)."] = expected.T
    assert_close_to_reference(got, expected, what, mistakes=mistakes,
                              hint="scores[..., i] = query · keys[i] / sqrt(d), d = keys.shape[-1].")


def check_scaled_scores(fn: Callable) -> None:
    """Visible: one query and a batch of queries; the scores are divided by sqrt(d)."""
    keys = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, -2.0, 0.0, 2.0]])
    _check_scaled_scores_case(fn, np.array([2.0, 0.0, 0.0, 2.0]), keys)  # d = 4: divide by 2
    rng = np.random.default_rng(21)
    _check_scaled_scores_case(fn, rng.standard_normal((2, 16)), rng.standard_normal((5, 16)))
    print(f"{student_name(fn)}: scores divided by sqrt(d), shapes (n,) and (Tq, n).")


def check_scaled_scores_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_scaled_scores``: inputs the visible check leaves out."""
    rng = np.random.default_rng(122)
    _check_scaled_scores_case(fn, rng.standard_normal(256), rng.standard_normal((7, 256)))
    _check_scaled_scores_case(fn, rng.standard_normal((4, 9)), rng.standard_normal((4, 9)))  # Tq == n
    _check_scaled_scores_case(fn, rng.standard_normal((3, 2)), rng.standard_normal((1, 2)))  # one key
    _check_scaled_scores_case(fn, rng.standard_normal(1), rng.standard_normal((5, 1)))  # d = 1: scale 1


# ----------------------------------------------------------------------------- temperature_softmax

def _check_temperature_case(fn: Callable, scores: np.ndarray, temperature: float, hint: str = "") -> np.ndarray:
    expected = ref.temperature_softmax(scores, temperature)
    what = f"`{fn.__name__}(scores, {temperature:g})` with scores of shape {scores.shape}"
    got = as_array(call_student(fn, scores, temperature, guard_extra=SCORES_FORBIDDEN), what)
    assert_shape(got, scores.shape, what, "The weights have the shape of the scores.")
    assert_finite(got, what, hint or OVERFLOW_HINT)
    mistakes = {
        "the temperature is ignored: divide the scores by it before the softmax.": softmax(scores),
        "the scores are multiplied by the temperature; divide them by it (a high T must flatten the weights).":
            softmax(scores * temperature),
        **wrong_axis_mistakes(lambda x, axis: ref.temperature_softmax(x, temperature, axis=axis), scores, -1,
                              hint="Each row (one query) must sum to 1 over the keys, the last axis."),
    }
    assert_close_to_reference(got, expected, what, rtol=1e-6, atol=1e-12, mistakes=mistakes,
                              hint=hint or "weights = softmax(scores / T) over the last axis.")
    assert_rows_sum_to_one(got, what)
    return got


def _check_rejects_temperature(fn: Callable, temperature: float) -> None:
    what = f"`{fn.__name__}(scores, {temperature!r})`"
    try:
        call_student(fn, np.array([1.0, 2.0]), temperature, guard_extra=SCORES_FORBIDDEN)
    except ValueError:
        return
    except ZeroDivisionError:
        pass
    raise AssertionError(f"{what} should raise ValueError: a temperature must be positive "
                         "(check it before dividing, e.g. `if not temperature > 0: raise ValueError(...)`).")


def check_temperature(fn: Callable) -> None:
    """Visible: T = 1 is the plain softmax, T < 1 sharpens, T > 1 flattens; T <= 0 is rejected."""
    scores = np.array([2.0, 1.0, 0.0, -1.0])
    for temperature in (1.0, 0.5, 4.0):
        _check_temperature_case(fn, scores, temperature)
    _check_temperature_case(fn, np.random.default_rng(23).standard_normal((3, 5)), 2.0)  # one distribution per row
    _check_rejects_temperature(fn, 0.0)
    print(f"{student_name(fn)}: softmax(scores / T) per row; T <= 0 raises ValueError.")


def check_temperature_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_temperature``: inputs the visible check leaves out."""
    rng = np.random.default_rng(123)
    _check_temperature_case(fn, rng.standard_normal((2, 3, 4)), 0.7)
    _check_temperature_case(fn, rng.standard_normal((4, 4)), 3.0)  # square: a wrong axis keeps the shape
    _check_temperature_case(fn, np.array([[0.3]]), 0.5)  # one key: weight 1
    _check_temperature_case(fn, np.full((2, 3), 1.5), 0.9)  # equal scores: uniform at any T
    _check_rejects_temperature(fn, -1.0)


def check_temperature_extremes(fn: Callable) -> None:
    """Visible: a tiny temperature gives (nearly) the argmax without overflowing; a huge one, uniform."""
    scores = np.array([1.0, 3.0, 2.0])
    _check_temperature_case(fn, scores, 0.001, OVERFLOW_HINT)  # weights ~ (0, 1, 0): the argmax
    _check_temperature_case(fn, scores, 1000.0, "At a huge temperature the weights approach uniform 1/n.")
    print(f"{student_name(fn)}: T -> 0 approaches the argmax, T -> inf approaches uniform, no overflow.")


def check_temperature_extremes_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_temperature_extremes``: inputs the visible check leaves out."""
    rng = np.random.default_rng(124)
    _check_temperature_case(fn, rng.standard_normal((3, 6)), 1e-4, OVERFLOW_HINT)
    _check_temperature_case(fn, np.array([[2.0, 2.0, -1.0]]), 0.001, OVERFLOW_HINT)  # a tie shares the weight
    _check_temperature_case(fn, np.array([[-5.0, -6.0, -7.0]]), 0.002, OVERFLOW_HINT)  # every exp underflows
    _check_temperature_case(fn, np.array([[1000.0, 999.0], [-3.0, 4.0]]), 1.0, OVERFLOW_HINT)
    _check_temperature_case(fn, rng.standard_normal((2, 5)), 1e6)


# ----------------------------------------------------------------------------- masked_attention

def _attention_inputs(seed: int, batch: int, q_len: int, k_len: int, dim: int, d_value: int,
                      dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, q_len, dim, generator=generator, dtype=dtype)  # (B, Tq, D)
    keys = torch.randn(batch, k_len, dim, generator=generator, dtype=dtype)  # (B, Tk, D)
    values = torch.randn(batch, k_len, d_value, generator=generator, dtype=dtype)  # (B, Tk, Dv)
    return query, keys, values


def _weight_mistakes(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Weights that known mistakes produce, keyed by the message that explains each."""
    dim, k_len = query.shape[-1], keys.shape[-2]
    raw = query @ keys.transpose(-2, -1)  # (B, Tq, Tk)
    mistakes = {
        f"the scores are not divided by sqrt(d) = sqrt({dim}); scale them before the softmax.":
            _ref_weights(query, keys, mask, scale=1.0),
        f"the scores are divided by d = {dim}; divide by sqrt(d) instead.":
            _ref_weights(query, keys, mask, scale=1 / dim),
        f"the scores are divided by sqrt(Tk) = sqrt({k_len}); the scale uses the width d = {dim}.":
            _ref_weights(query, keys, mask, scale=k_len**-0.5),
    }
    if mask is not None:
        full = torch.broadcast_to(mask, raw.shape)
        mistakes["the mask is ignored: masked keys still get weight. Set their scores to -inf before the softmax."] = \
            _ref_weights(query, keys, None)
        mistakes[("the mask is applied after the softmax: masked keys are zeroed but the rows no longer sum "
                  "to 1. Set masked scores to -inf *before* the softmax.")] = \
            torch.softmax(raw / math.sqrt(dim), dim=-1) * full
        mistakes["the mask is inverted: True means the query MAY attend to that key."] = \
            _ref_weights(query, keys, ~full)
    return {message: as_array(wrong, message) for message, wrong in mistakes.items()}


def _ref_weights(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None, scale: float | None = None):
    """Reference (B, Tq, Tk) weights: values are not needed for them."""
    values = keys[..., :1]
    return scaled_dot_product_attention(query, keys, values, mask, scale=scale, return_weights=True)[1]


def _run_masked_attention(fn: Callable, query, keys, values, mask):
    """The student's (output, weights) as numpy arrays, after checking their types and shapes."""
    shapes = f"query {tuple(query.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}"
    shapes += "" if mask is None else f", mask {tuple(mask.shape)}"
    what = f"`{fn.__name__}(query, keys, values, mask)` with {shapes}"
    result = call_student(fn, query, keys, values, mask, guard_extra=ATTENTION_FORBIDDEN, guard_allow=ATTENTION_ALLOWED)
    output, weights = as_pair(result, what, ("output", "weights"))
    for name, tensor in (("output", output), ("weights", weights)):
        if not isinstance(tensor, torch.Tensor):
            raise AssertionError(f"the {name} from {what} should be a torch tensor, got {type(tensor).__name__}; "
                                 "use torch operations (@, torch.exp, masked_fill, ...).")
    batch, q_len, k_len, d_value = query.shape[0], query.shape[1], keys.shape[1], values.shape[2]
    weights_np = as_array(weights, f"the weights from {what}")
    output_np = as_array(output, f"the output from {what}")
    assert_shape(weights_np, (batch, q_len, k_len), f"the weights from {what}", "Weights are (B, Tq, Tk).")
    assert_shape(output_np, (batch, q_len, d_value), f"the output from {what}", "The output is (B, Tq, Dv).")
    return output_np, weights_np, what


def _check_masked_attention_case(fn: Callable, query, keys, values, mask) -> None:
    """Compare with the reference everywhere (no fully masked rows here)."""
    # The student's function may take any broadcastable mask; the reference takes one axis per score axis.
    full = None if mask is None else torch.broadcast_to(mask, (*query.shape[:-1], keys.shape[-2]))  # (B, Tq, Tk)
    expected_out, expected_w = scaled_dot_product_attention(query, keys, values, full, return_weights=True)
    mistakes = _weight_mistakes(query, keys, full)
    output, weights, what = _run_masked_attention(fn, query, keys, values, mask)
    tolerance = {"rtol": 1e-4, "atol": 1e-6} if query.dtype == torch.float32 else {"rtol": 1e-7, "atol": 1e-10}
    if mask is not None:
        hidden = ~torch.broadcast_to(mask, expected_w.shape).numpy()
        if np.any(weights[hidden] != 0):
            leaked = float(np.abs(weights[hidden]).max())
            message = next((m for m, wrong in mistakes.items() if "mask" in m and np.allclose(weights, wrong,
                            **tolerance)), "masked keys must get weight exactly 0 (set their scores to -inf "
                                           "before the softmax; exp(-inf) = 0).")
            raise AssertionError(f"the weights from {what}: {message} (a masked key has weight {leaked:.3g})")
    assert_close_to_reference(weights, as_array(expected_w, "reference"), f"the weights from {what}",
                              mistakes=mistakes, hint="weights = softmax(query @ keys^T / sqrt(d)) over the keys.",
                              **tolerance)
    assert_rows_sum_to_one(weights, f"the weights from {what}", atol=1e-4)
    assert_close_to_reference(output, as_array(expected_out, "reference"), f"the output from {what}",
                              hint="output = weights @ values, shape (B, Tq, Dv).", **tolerance)


def check_masked_attention(fn: Callable) -> None:
    """Visible: no mask (None) and an all-True mask: scaled dot-product attention over (B, Tq, Tk)."""
    query, keys, values = _attention_inputs(30, batch=2, q_len=3, k_len=4, dim=8, d_value=5)
    _check_masked_attention_case(fn, query, keys, values, None)
    _check_masked_attention_case(fn, query, keys, values, torch.ones(2, 3, 4, dtype=torch.bool))
    print(f"{student_name(fn)}: shapes (B, Tq, Dv) and (B, Tq, Tk), scores scaled by 1/sqrt(d).")


def check_masked_attention_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_masked_attention``: inputs the visible check leaves out."""
    _check_masked_attention_case(fn, *_attention_inputs(130, 1, 1, 1, 4, 2), None)  # a single key: weight 1
    _check_masked_attention_case(fn, *_attention_inputs(131, 3, 5, 5, 64, 3, torch.float64), None)  # Tq == Tk
    _check_masked_attention_case(fn, *_attention_inputs(132, 2, 4, 7, 16, 16), torch.ones(1, 1, 7, dtype=torch.bool))


def check_masked_attention_mask(fn: Callable) -> None:
    """Visible: padding (B, 1, Tk) and per-query (B, Tq, Tk) masks; masked keys get exactly 0."""
    query, keys, values = _attention_inputs(31, batch=2, q_len=3, k_len=5, dim=8, d_value=4)
    lengths = torch.tensor([5, 3])  # the second memory has 2 padding keys
    padding = (torch.arange(5)[None, :] < lengths[:, None])[:, None, :]  # (B, 1, Tk)
    _check_masked_attention_case(fn, query, keys, values, padding)
    per_query = torch.tensor([[True, False, True, False, True]] * 3 + [[False, True, True, True, False]] * 3)
    _check_masked_attention_case(fn, query, keys, values, per_query.reshape(2, 3, 5))
    print(f"{student_name(fn)}: masked keys get weight 0 and every row still sums to 1.")


def check_masked_attention_mask_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_masked_attention_mask``: inputs the visible check leaves out."""
    query, keys, values = _attention_inputs(133, 3, 4, 6, 16, 3, torch.float64)
    generator = torch.Generator().manual_seed(134)
    mask = torch.rand(3, 4, 6, generator=generator) < 0.5
    mask[..., 2] = True  # every row keeps a key
    _check_masked_attention_case(fn, query, keys, values, mask)
    causal = torch.ones(4, 6, dtype=torch.bool).tril(diagonal=2)  # (Tq, Tk), broadcast over the batch
    _check_masked_attention_case(fn, query, keys, values, causal)
    only_one = torch.zeros(3, 1, 6, dtype=torch.bool)
    only_one[:, :, 4] = True  # a single visible key: weight 1 on it, output = its value
    _check_masked_attention_case(fn, query, keys, 100 * values, only_one)


def _check_empty_rows_case(fn: Callable, query, keys, values, mask) -> None:
    """Fully masked rows: zero weights and zero output. Other rows: finite, not all zero."""
    output, weights, what = _run_masked_attention(fn, query, keys, values, mask)
    empty = ~torch.broadcast_to(mask, (query.shape[0], query.shape[1], keys.shape[1])).any(dim=-1).numpy()  # (B, Tq)
    hint = ("a query whose every key is masked has nothing to attend to: softmax of all -inf is 0/0 = nan. "
            "Give such rows zero weights (e.g. torch.nan_to_num(weights, nan=0.0) or masked_fill).")
    assert_finite(weights, f"the weights from {what}", hint)
    assert_finite(output, f"the output from {what}", hint)
    if np.any(weights[empty] != 0) or np.any(output[empty] != 0):
        raise AssertionError(f"{what}: a query with every key masked must get weights 0 and output 0 "
                             "(it attends to nothing), not a uniform average.")
    if np.any(weights[~empty].sum(axis=-1) <= 0):
        raise AssertionError(f"{what}: a query that may attend to some key got all-zero weights; only fully "
                             "masked rows are zero.")


def check_masked_attention_empty(fn: Callable) -> None:
    """Visible: a query with every key masked gets zero weights and output, and no NaN anywhere."""
    query, keys, values = _attention_inputs(32, batch=2, q_len=2, k_len=3, dim=4, d_value=2)
    mask = torch.tensor([[[True, True, False], [False, False, False]],
                         [[True, False, False], [True, True, True]]])  # (B, Tq, Tk): query (0, 1) sees nothing
    _check_empty_rows_case(fn, query, keys, values, mask)
    print(f"{student_name(fn)}: a fully masked query gets zeros, never nan.")


def check_masked_attention_empty_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_masked_attention_empty``: inputs the visible check leaves out."""
    query, keys, values = _attention_inputs(135, 3, 2, 4, 8, 3, torch.float64)
    _check_empty_rows_case(fn, query, keys, values, torch.tensor([True, True, False])[:, None, None].expand(3, 1, 4))
    _check_empty_rows_case(fn, query, keys, values, torch.zeros(3, 2, 4, dtype=torch.bool))  # nothing visible
