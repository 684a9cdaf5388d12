"""Every graded test cell of every chapter is one declared exercise, and every declaration holds up.

A graded cell that no declaration covers would be scored by nbgrader alone, inside the student's
kernel; a test cell that records under another cell's grade_id would be judged against the wrong
exercise. The references must also pass their own hidden cases for any seed the grader may pick.
"""

import re

import pytest

from tests.helpers.grading import solution_notebook
from xattn_edu.chapters.support.verify import declared_chapters
from xattn_edu.grader.build import find_chapters
from xattn_edu.grader.metadata import grade_id, is_graded

CHAPTERS = [chapter.name for chapter in find_chapters()]
DECLARED = declared_chapters()


def graded_cells(chapter):
    return {grade_id(cell): cell.source for cell in solution_notebook(chapter).cells if is_graded(cell)}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_graded_cell_is_a_declared_exercise_that_checks_and_records_itself(chapter):
    assert chapter in DECLARED, f"{chapter}: xattn_edu.chapters.<name>.checks declares no EXERCISES"
    cells = graded_cells(chapter)
    assert set(cells) == set(DECLARED[chapter].by_id), "graded cells and declared exercises differ"
    for cell_id, source in cells.items():
        visible, _, hidden = source.partition("### BEGIN HIDDEN TESTS")
        assert re.search(rf'grading\.check\("{cell_id}", \w+\)', visible), f"{cell_id}: no visible check of itself"
        assert re.search(rf'grading\.record\("{cell_id}", \w+\)', hidden), f"{cell_id}: no hidden record of itself"


@pytest.mark.parametrize("chapter", sorted(DECLARED))
def test_every_reference_passes_its_hidden_cases_for_any_seed(chapter):
    for exercise in DECLARED[chapter]:
        if exercise.reference is None:
            continue
        for seed in (0, 1, 2**31 - 1, 123456789):
            for case in exercise.cases(seed):
                got = exercise.result_of(exercise.reference, case, student=False)
                assert exercise.verdict(case, got) == "", f"{exercise.grade_id}, seed {seed}: {case.label}"
