"""Hostile and broken submissions, graded in one class run beside honest ones (``grade_class``, 2 workers).

The invariants: no hostile submission earns a point it should not, every honest submission keeps its
exact score, each failure has a recorded reason, and the results on disk are the grader's own even
though a notebook attacked them. The cases and their expected outcomes are in ``hostile_catalogue``;
the default run grades a reduced set (the realistic path: one invocation, many notebooks), the slow
test the full catalogue.
"""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers.hostile_catalogue import (
    ATTACKS,
    CATALOGUE,
    CHAPTER,
    HONEST,
    Case,
    Place,
    expected_json,
    write_class,
)
from xattn_edu.grader.classgrade import grade_class
from xattn_edu.grader.pool import Limits
from xattn_edu.grader.sandbox import process_limit_available

REDUCED = {"tampered_tests", "reference_alias", "patched_checks", "os_exit", "infinite_loop", "memory_bomb",
           "fork_bomb", "vandal", "corrupt_json", "stderr_noise"}
LIMITS = Limits(workers=2, cell_timeout=10, notebook_timeout=150, memory_mb=3072, max_processes=128)


def _runnable(cases: list[Case]) -> list[Case]:
    return [case for case in cases if process_limit_available() or not case.needs_process_limit]


def _grade_and_check(cases: list[Case], tmp_path):
    place = Place(tmp_path / "submissions", tmp_path / "graded")
    write_class(cases, place)
    report = grade_class(CHAPTER, place.submissions, place.out, limits=LIMITS, progress=False)

    got = {g.student: {e.grade_id: e.score for e in g.exercises} for g in report.grades}
    expected = {case.student: case.expected_scores() for case in cases}
    assert got == expected, f"expected:\n{expected_json(cases)}\ngot:\n{json.dumps(got, indent=1)}"
    by_student = {g.student: g for g in report.grades}
    for case in cases:
        grade = by_student[case.student]
        assert grade.status == case.status, (case.student, grade.status, grade.reason)
        assert case.reason in grade.reason, (case.student, grade.reason)
        if grade.score < grade.max_score:
            assert grade.reason, case.student  # every lost point is explained

    # What a notebook did to the results folder during the run is undone: the files are the grader's.
    lines = (place.out / "gradebook.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["student"] for line in lines) == sorted(expected)
    with open(place.out / "grades.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert {s: float(rows[s]["score"]) for s in rows} == {s: sum(v.values()) for s, v in expected.items()}
    for case in cases:
        page = (place.out / "feedback" / f"{case.student}.html").read_text(encoding="utf-8")
        assert "grading.record(" not in page and "flagged for review" not in page, case.student  # hidden code, flags
    return report


def test_a_reduced_catalogue_of_hostile_submissions_earns_nothing_and_harms_no_one(tmp_path):
    cases = _runnable(HONEST + [case for case in CATALOGUE if case.student in REDUCED])
    _grade_and_check(cases, tmp_path)


def test_attacks_on_the_grader_itself_score_nothing_beside_honest_notebooks(tmp_path):
    """Issue 11's two kinds and their relatives: each loses every cell it meant to fake, honest ones keep theirs."""
    report = _grade_and_check(HONEST + ATTACKS, tmp_path)
    # code after the last test cell cannot change a verdict, so it costs nothing, but the instructor sees it
    flags = next(g.flags for g in report.grades if g.student == "record_rewritten_after_the_fact")
    assert any("from xattn_edu.chapters.library_lookup import checks" in flag["code"] for flag in flags), flags


@pytest.mark.slow
def test_the_full_catalogue_of_hostile_submissions_earns_nothing_and_harms_no_one(tmp_path):
    _grade_and_check(_runnable(HONEST + CATALOGUE), tmp_path)


def test_the_catalogue_covers_each_kind_of_attack():
    names = {case.student for case in CATALOGUE}
    assert REDUCED <= names
    assert {case.status for case in CATALOGUE} == {"graded", "error"}  # "timeout": see test_classgrade.py
    attacks = {case.student for case in ATTACKS}
    assert {"kind1_checks_switched_off", "kind2_guard_switched_off", "registry_patched", "record_forged", "settrace",
            "display_hooks", "sys_modules", "gc_walk", "frame_tricks", "answer_file", "result_of_patched",
            "guard_off_by_getattr", "record_rewritten_after_the_fact", "library_log_softmax", "thread_pool",
            "lazy_array", "reduce_getattr"} <= attacks
