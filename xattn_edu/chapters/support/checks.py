"""Comparisons that judge a student's result, with failure messages written for students.

Every helper raises :class:`~xattn_edu.chapters.support.exercise.Wrong` (an ``AssertionError``) with
one line that says what is wrong and what to try, never a bare ``assert a == b``. Chapters combine
them in the judges of their exercise declarations (``xattn_edu.chapters.<chapter>.checks``):

    got = as_array(expect_value(got, case), case.label)
    assert_close_to_reference(got, expected, case.label,
                              mistakes=wrong_axis_mistakes(softmax, scores, axis=-1))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xattn_edu.chapters.support.exercise import Wrong, expect_value


def as_array(result: Any, what: str) -> np.ndarray:
    """``result`` as a float numpy array (torch tensors are converted), or a teaching failure."""
    if result is None:
        raise Wrong(f"{what} returned None; did you forget the `return` statement?")
    if hasattr(result, "detach"):
        result = result.detach().cpu().numpy()
    try:
        return np.asarray(result, dtype=float)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should return a numpy array, got {type(result).__name__}") from None


def as_pair(result: Any, what: str, names: tuple[str, str]) -> tuple[Any, Any]:
    """Unpack a function result that must be a 2-tuple, e.g. ``(output, weights)``."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Wrong(f"{what} should return a pair `({names[0]}, {names[1]})`, got {type(result).__name__}")
    return result[0], result[1]


def assert_shape(got: np.ndarray, expected: tuple[int, ...], what: str, hint: str = "") -> None:
    """Fail unless ``got.shape == expected``."""
    if got.shape != tuple(expected):
        raise Wrong(f"{what} has shape {got.shape}, expected {tuple(expected)}. {hint}".rstrip())


def assert_finite(got: np.ndarray, what: str, hint: str = "") -> None:
    """Fail if ``got`` holds NaN or infinity (typically an overflow in ``exp``)."""
    bad = ~np.isfinite(got)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise Wrong(
            f"{what} contains {got[index]} (at index {index}) where a finite number was expected. {hint}".rstrip()
        )


def assert_rows_sum_to_one(weights: np.ndarray, what: str, axis: int = -1, atol: float = 1e-6) -> None:
    """Fail unless ``weights`` are non-negative and sum to 1 along ``axis``."""
    if (weights < 0).any():
        raise Wrong(f"{what} has negative weights (smallest {weights.min():.3g}); weights are never negative.")
    totals = weights.sum(axis=axis)
    worst = np.max(np.abs(totals - 1.0)) if totals.size else 0.0
    if not worst <= atol:
        raise Wrong(
            f"{what} does not sum to 1 along axis {axis} (a sum is off by {worst:.3g}); "
            "divide each exponential by the sum over that axis."
        )


def wrong_axis_mistakes(reference: Callable, x: np.ndarray, axis: int, *, hint: str = "") -> dict[str, np.ndarray]:
    """Outputs of ``reference(x, axis=a)`` for every axis ``a`` other than ``axis``, keyed by a teaching message.

    Pass the result as ``mistakes=`` to :func:`assert_close_to_reference`.
    """
    wanted = axis % x.ndim
    return {
        f"normalised along axis {other} instead of axis {axis}. {hint}".rstrip(): reference(x, axis=other)
        for other in range(x.ndim)
        if other != wanted
    }


def _matches(got: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> bool:
    candidate = np.asarray(candidate, dtype=float)
    return got.shape == candidate.shape and bool(np.allclose(got, candidate, rtol=rtol, atol=atol, equal_nan=True))


def assert_close_to_reference(
    got: np.ndarray,
    expected: np.ndarray,
    what: str,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    mistakes: Mapping[str, np.ndarray] | None = None,
    hint: str = "",
) -> None:
    """Fail unless ``got`` has ``expected``'s shape and values; name a known mistake when one fits.

    Args:
        got, expected: the student's result and the reference result.
        what: how the message names the result, e.g. ``"`stable_softmax(scores, axis=0)`"``.
        rtol, atol: tolerances of ``np.allclose``.
        mistakes: message -> the output a known mistake produces (wrong axis, transposed, ...).
            If ``got`` matches one, ``"{what}: {message}"`` is reported.
        hint: added to the generic message when no known mistake matches.
    """
    expected = np.asarray(expected, dtype=float)
    if _matches(got, expected, rtol, atol):
        return
    for message, wrong in (mistakes or {}).items():
        if _matches(got, wrong, rtol, atol):
            raise Wrong(f"{what}: {message}")
    assert_shape(got, expected.shape, what, hint)
    if np.isfinite(expected).all():
        assert_finite(got, what, hint)
    difference = np.abs(got - expected)
    difference[np.isnan(difference)] = np.inf
    index = tuple(int(i) for i in np.unravel_index(np.argmax(difference), difference.shape))
    raise Wrong(
        f"{what} is wrong at index {index}: got {got[index]:.6g}, expected {expected[index]:.6g}. {hint}".rstrip()
    )


def assert_same_structure_close(got: Any, expected: Any, what: str, *, rtol: float = 1e-5, atol: float = 1e-7,
                                hint: str = "") -> None:
    """Fail unless ``got`` has ``expected``'s structure (tuples, lists, dicts) and every array or number is close.

    The message names the first part that differs, e.g. ``"{what}, item 1 (the weights) ..."``; use it
    for results made of several arrays, such as ``(output, gradients)``.
    """
    if isinstance(expected, tuple | list):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            raise Wrong(f"{what} should be a sequence of {len(expected)} items, got {_kind(got)}. {hint}".rstrip())
        for index, (part, wanted) in enumerate(zip(got, expected, strict=True)):
            assert_same_structure_close(part, wanted, f"{what}, item {index}", rtol=rtol, atol=atol, hint=hint)
        return
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            raise Wrong(f"{what} should be a dict with keys {sorted(expected)}, got {_kind(got)}. {hint}".rstrip())
        for key in expected:
            assert_same_structure_close(got[key], expected[key], f"{what}[{key!r}]", rtol=rtol, atol=atol, hint=hint)
        return
    if expected is None or isinstance(expected, str | bool):
        if got != expected:
            raise Wrong(f"{what} should be {expected!r}, got {got!r}. {hint}".rstrip())
        return
    assert_close_to_reference(as_array(got, what), np.asarray(expected, dtype=float), what, rtol=rtol, atol=atol,
                              hint=hint)


def _kind(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def number_judge(mistakes: Mapping[float, str], hint: str, atol: float = 1e-4) -> Callable[[Any, Any, float], None]:
    """A judge for a question answered with a number (``Exercise(run=answer, reference=<the number>)``).

    Args:
        mistakes: wrong answers students give -> the message that explains each.
        hint: added when the answer is wrong in no known way.
        atol: how far from the reference (or from a known mistake) an answer may be.

    Returns:
        ``judge(case, got, expected)`` raising :class:`~xattn_edu.chapters.support.exercise.Wrong` for anything
        that is not a number within ``atol`` of ``expected``.
    """
    def judge(case: Any, got: Any, expected: float) -> None:
        got = expect_value(got, case, "a number")
        if isinstance(got, np.ndarray) and got.shape == () and np.issubdtype(got.dtype, np.number):
            got = float(got)
        if isinstance(got, bool) or not isinstance(got, int | float):
            raise Wrong(f"{case.label} should be a number (a Python float), got {type(got).__name__}.")
        if abs(got - expected) <= atol:
            return
        for wrong, message in mistakes.items():
            if abs(got - wrong) <= atol:
                raise Wrong(f"{case.label} = {got:.4g}: {message}")
        raise Wrong(f"{case.label} = {got:.4g} is not right. {hint}".rstrip())

    return judge
