"""Graded exercises, declared once: the visible test, the hidden record and the verdict come from one place.

A chapter declares each graded test cell as an :class:`Exercise`: the inputs it tries (``visible``
cases, small and explained, and ``hidden`` cases drawn from a seed the grader picks for every grading
run), how the student's code is exercised on one input (``run``), the correct implementation
(``reference``, exercised the same way) and how a result is judged (``judge``: raise :class:`Wrong`
with a message written for students).

The declaration is used in three places:

* **the visible test** (:meth:`Exercises.check`, in the test cell): runs the visible cases in the
  student's kernel and stops at the first wrong result with the judge's message, shown in one line;
* **the hidden record** (:meth:`Exercises.record`, in the test cell's hidden part, active only while
  grading): runs every case, visible and hidden, and publishes what the student's code returned
  (plain values, :mod:`~xattn_edu.chapters.support.values`) as a display output of that cell;
* **the verdict** (:mod:`xattn_edu.chapters.support.verify`): a separate process that the grader
  starts and in which no submitted code ever runs draws the same cases from the same seed, computes
  the reference results and judges every recorded result. The grader keeps a test cell's points only
  if its verdict passes.

Code in a submission can therefore break its own test cells, and lose their points, but cannot
raise a score: the verdict is decided where that code cannot reach. The in-kernel guard against
calling the reference (:mod:`~xattn_edu.chapters.support.guard`) teaches honest students; the
grader's static scan of the submission (``xattn_edu.grader.scan``) is what stops a student who
switches the guard off.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from xattn_edu.chapters.support.guard import forbid_reference
from xattn_edu.chapters.support.values import Opaque, Raised, plain, raised
from xattn_edu.common.protocol import RECORD_MIME, SEED_ENV


class Wrong(AssertionError):
    """A result is wrong; the message says what was expected and how to fix it (one line in the notebook)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class NotDone(Wrong):
    """The exercise still holds its ``raise NotImplementedError()`` stub."""


@dataclass(frozen=True)
class Case:
    """One input on which the student's code is tried."""

    label: str  # how messages name the call, e.g. "`stable_softmax(scores, axis=0)` with scores of shape (3, 4)"
    args: tuple = ()  # positional inputs (numpy arrays, tensors, numbers, strings)
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # keyword inputs
    note: Any = None  # anything else the run or the judge needs (e.g. "should raise ValueError")


def call(implementation: Callable, case: Case) -> Any:
    """The default way to exercise a function: ``implementation(*case.args, **case.kwargs)``."""
    return implementation(*case.args, **case.kwargs)


def answer(value: Any, case: Case) -> Any:
    """The ``run`` of a question answered with a value (a number, a string, an array) instead of a function.

    The test cell passes the answer variable itself (``grading.check("bound_tests", padding_bound)``);
    the answer cell sets it to ``None`` before the student's code, so ``None`` means "not done yet".
    """
    if value is None:
        raise NotImplementedError("no answer yet")
    return value


def expect_value(got: Any, case: Case, expected: str = "a result") -> Any:
    """``got`` itself, or :class:`Wrong` when the code raised or returned something that is not data.

    The grader's expectation comes first; an exception raised by the student's own code follows,
    labelled as theirs, so their message is never mistaken for the grader's verdict.
    """
    if isinstance(got, Raised):
        if got.name in ("Wrong", "ReferenceCallError"):  # raised by the grader's own checks around the call
            raise Wrong(got.message)
        theirs = f" (its message: {got.message!r})" if got.message else ""
        raise Wrong(f"{case.label} should return {expected}; your code raised {got.name} instead{theirs}.")
    if isinstance(got, Opaque):
        raise Wrong(f"{case.label} should return {expected}, not a {got.type_name} object.")
    return got


def expect_raise(got: Any, case: Case, exception: str, why: str) -> None:
    """Nothing when the code raised ``exception`` (a class name); else :class:`Wrong` saying ``why`` it should."""
    if isinstance(got, Raised) and got.name == exception:
        return
    if isinstance(got, Raised) and got.name in ("Wrong", "ReferenceCallError"):
        raise Wrong(got.message)
    if isinstance(got, Raised):
        theirs = f" (its message: {got.message!r})" if got.message else ""
        raise Wrong(f"{case.label} should raise {exception}: {why}; your code raised {got.name} instead{theirs}.")
    raise Wrong(f"{case.label} should raise {exception}: {why}; your code returned {_shown(got)}.")


def _shown(got: Any) -> str:
    """A short description of a returned plain value: small arrays in full, anything else by its type."""
    if isinstance(got, Opaque):
        return got.type_name
    try:
        array = np.asarray(got)
    except (ValueError, TypeError):  # nested results of different shapes, e.g. (scores, {name: gradient})
        array = None
    if array is None or array.dtype == object or array.size > 20:
        items = f" of {len(got)} items" if isinstance(got, tuple | list) else ""
        return f"a {type(got).__name__}{items}"
    return np.array2string(array, precision=4)


def _judge_nothing(case: Case, got: Any, expected: Any) -> None:
    raise NotImplementedError("this exercise declares no judge")


def _unchanged(original: Any, passed: Any) -> bool:
    """Whether an input the student's code received still equals the original (arrays and tensors)."""
    if isinstance(original, np.ndarray):
        return np.array_equal(original, passed, equal_nan=np.issubdtype(original.dtype, np.inexact))
    if type(original).__module__ == "torch" and hasattr(original, "detach"):
        import torch

        return original.shape == passed.shape and bool(torch.equal(original.detach(), passed.detach()) or
                                                       torch.isnan(original).any())
    return True


@dataclass(frozen=True)
class Exercise:
    """One graded test cell: its inputs, how the code is exercised, and how the result is judged."""

    grade_id: str  # nbgrader grade_id of the test cell, e.g. "softmax_tests"
    title: str  # how reports name it, e.g. "Exercise 2: stable_softmax"
    name: str  # the student's function or class, as messages call it, e.g. "stable_softmax"
    visible: Callable[[], Sequence[Case]]  # the inputs the visible test tries (fixed, explained in the cell)
    hidden: Callable[[np.random.Generator], Sequence[Case]]  # more inputs, drawn from the grading run's seed
    judge: Callable[[Case, Any, Any], None] = _judge_nothing  # (case, result, reference result) -> raise Wrong
    reference: Any = None  # the correct implementation, exercised with `run` (None: the judge checks properties)
    run: Callable[[Any, Case], Any] = call  # (implementation, case) -> result; student code runs inside it
    passed: str = "all visible checks passed"  # printed by the visible test when every visible case passes
    forbid: tuple = ()  # references forbidden besides the guard's defaults while the student's code runs
    allow: tuple = ()  # defaults the exercise allows (e.g. a library softmax where writing one is not the point)

    def cases(self, seed: int) -> list[Case]:
        """The visible cases, then the hidden ones drawn from ``seed`` (the same on both sides)."""
        stream = np.random.default_rng([seed, zlib.crc32(self.grade_id.encode())])
        return [*self.visible(), *self.hidden(stream)]

    def result_of(self, implementation: Any, case: Case, *, student: bool = True) -> Any:
        """Run ``implementation`` on ``case``: its plain result, or :class:`Raised` if it raised.

        The student's code gets copies of the inputs, with the references forbidden and warnings
        silenced (anything on stderr would zero an nbgrader test cell); changing an input in place is
        reported as a mistake.
        """
        if not student:
            try:
                return plain(self.run(implementation, case))
            except Exception as error:  # noqa: BLE001 - the reference may be asked to raise
                return raised(error)
        if not callable(implementation) and self.run is not answer:
            return Raised("Wrong", f"expected the function or class `{self.name}`, got a "
                                   f"{type(implementation).__name__}; pass it without ()")
        args, kwargs = copy.deepcopy((case.args, dict(case.kwargs)))
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                with forbid_reference(*self.forbid, allow=self.allow, student=f"`{self.name}`"):
                    result = plain(self.run(implementation, dataclasses.replace(case, args=args, kwargs=kwargs)))
        except Exception as error:  # noqa: BLE001 - any exception is a result to judge
            return raised(error)
        pairs = [*zip(case.args, args, strict=True), *((case.kwargs[k], kwargs[k]) for k in case.kwargs)]
        if not all(_unchanged(original, passed) for original, passed in pairs):
            return Raised("Wrong", f"`{self.name}` changed one of its input arrays in place; compute a new "
                                   "array instead (e.g. `shifted = scores - top`, not `scores -= top`).")
        return result

    def expected(self, case: Case) -> Any:
        """The reference result for ``case`` (None when there is no reference)."""
        if self.reference is None:
            return None
        result = self.result_of(self.reference, case, student=False)
        if isinstance(result, Raised) and not (isinstance(case.note, dict) and case.note.get("raises")):
            raise RuntimeError(f"{self.title}: the reference raised on {case.label}: {result}")
        return result

    def verdict(self, case: Case, got: Any) -> str:
        """"" when ``got`` is right for ``case``, else the judge's message."""
        try:
            self.judge(case, got, self.expected(case))
        except AssertionError as wrong:  # Wrong, or a plain assert in a judge
            return str(wrong) or f"{case.label}: wrong result"
        return ""


class Exercises:
    """The graded exercises of one chapter, by grade_id; test cells call :meth:`check` and :meth:`record`."""

    def __init__(self, chapter: str, exercises: Sequence[Exercise]) -> None:
        self.chapter = chapter  # "NN_slug", as the notebook is named
        by_id = {exercise.grade_id: exercise for exercise in exercises}
        if len(by_id) != len(exercises):
            raise ValueError(f"{chapter}: two exercises share a grade_id")
        self.by_id = MappingProxyType(by_id)  # read-only: a notebook cannot swap an exercise for its own

    def __getitem__(self, grade_id: str) -> Exercise:
        return self.by_id[grade_id]

    def __iter__(self):
        return iter(self.by_id.values())

    def check(self, grade_id: str, student: Any) -> None:
        """The visible test: judge ``student`` on the visible cases; raise :class:`Wrong` at the first mistake."""
        exercise = self.by_id[grade_id]
        for case in exercise.visible():
            got = exercise.result_of(student, case)
            if isinstance(got, Raised) and got.name == "NotImplementedError":
                raise NotDone(f"{exercise.title} is not done yet: replace `raise NotImplementedError()` with "
                              "your code, run that cell, then run this one again.")
            message = exercise.verdict(case, got)
            if message:
                raise Wrong(message)
        print(f"{exercise.title}: {exercise.passed}.")

    def record(self, grade_id: str, student: Any) -> None:
        """The hidden record: while grading (the grader sets the seed), publish the student's results on every case.

        Outside grading it does nothing. It never judges: the grader's verifier does, elsewhere.
        """
        seed = os.environ.get(SEED_ENV)
        if seed is None:
            return
        from IPython.display import publish_display_data

        from xattn_edu.chapters.support.values import encode

        exercise = self.by_id[grade_id]
        results = [encode(exercise.result_of(student, case)) for case in exercise.cases(int(seed))]
        payload = {"chapter": self.chapter, "grade_id": grade_id, "seed": int(seed), "results": results}
        publish_display_data({RECORD_MIME: payload})
