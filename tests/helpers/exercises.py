"""Helpers for testing a chapter's exercise declarations directly (no notebook, no nbgrader: milliseconds).

    verdicts(grading.EXERCISES, "softmax_tests", my_softmax, seeds=range(5))
    -> "" when every case (visible, and hidden for each seed) passes, else the first judge's message

``outcomes`` does that for every cell that grades one student function, so a test can assert that a
mistake loses exactly the cells it should, each with its message. ``solution_functions`` executes the
solution cells of a chapter source, so tests grade the very code the chapter ships.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from tests.helpers.grading import solution_notebook
from xattn_edu.chapters.support.exercise import Exercises


def verdicts(exercises: Exercises, grade_id: str, implementation: Any, seeds: Iterable[int] = (0,), *,
             student: bool = True) -> str:
    """The first judge's message over the visible cases and the hidden cases of every seed; "" when all pass.

    ``student=False`` runs ``implementation`` as the grader runs the reference (no guard, no copies).
    """
    exercise = exercises[grade_id]
    for seed in seeds:
        cases = exercise.cases(seed)
        for case in cases:
            message = exercise.verdict(case, exercise.result_of(implementation, case, student=student))
            if message:
                return message
    return ""


def outcomes(exercises: Exercises, name: str, implementation: Any, seeds: Iterable[int] = (0,)) -> dict[str, str]:
    """``{grade_id: verdict}`` for every cell grading the student's ``name``: "" passes, else the message."""
    seeds = tuple(seeds)
    return {exercise.grade_id: verdicts(exercises, exercise.grade_id, implementation, seeds)
            for exercise in exercises if exercise.name == name}


def lost(exercises: Exercises, name: str, implementation: Any, seeds: Iterable[int] = (0,)) -> dict[str, str]:
    """The cells of ``name`` that ``implementation`` fails, with their messages."""
    return {grade_id: message for grade_id, message in outcomes(exercises, name, implementation, seeds).items()
            if message}


@functools.cache
def solution_functions(chapter: str) -> dict[str, Any]:
    """The namespace left by running the setup cell and every solution cell of ``chapter``'s source."""
    namespace: dict[str, Any] = {}
    for cell in solution_notebook(chapter).cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if grade_id == "setup" or (cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")):
            exec(cell.source, namespace)  # noqa: S102 - our own chapter source
    return namespace


def assert_loses_exactly(exercises: Exercises, name: str, implementation: Any, expected: dict[str, str]) -> None:
    """``implementation`` fails exactly the cells in ``expected`` (grade_id -> a fragment of the message)."""
    messages = lost(exercises, name, implementation)
    assert set(messages) == set(expected), messages
    for grade_id, fragment in expected.items():
        assert fragment in messages[grade_id], messages[grade_id]
