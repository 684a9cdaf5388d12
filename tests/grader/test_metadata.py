"""The one nbgrader-metadata validator: what it finds, how the build refuses, how a submission is repaired."""

from __future__ import annotations

import copy
import re

import pytest

from tests.helpers.grading import FIXTURE_SOLUTIONS, cell_by_id, solution_notebook
from xattn_edu.common.errors import UserError
from xattn_edu.grader.build import build
from xattn_edu.grader.metadata import exercises, problems, repair

CHAPTER = "00_fixture"


@pytest.fixture
def master():
    return solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)


def test_a_valid_notebook_has_no_problems_and_its_exercises_are_its_graded_cells(master):
    assert problems(master) == []
    assert exercises(master) == (("add_tests", 2.0), ("norm_tests", 3.0))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, '"schema_version": 3'),
        ("not an object", "must be a JSON object"),
        ({"grade": True, "grade_id": "add_tests", "locked": True, "solution": False, "schema_version": 3},
         "does not have points"),
        ({"grade": "yes", "grade_id": "add_tests", "locked": True, "solution": False, "points": 2,
          "schema_version": 3}, "invalid nbgrader metadata"),
        ({"grade": False, "grade_id": "add_tests", "locked": True, "solution": False, "schema_version": 4},
         "newer nbgrader"),
    ],
)
def test_each_kind_of_invalid_metadata_is_one_line_naming_the_cell(master, metadata, message):
    cell = cell_by_id(master, "add_tests")
    cell.metadata["nbgrader"] = metadata
    [problem] = problems(master)
    assert (problem.index, problem.duplicate) == (master.cells.index(cell), False)
    assert message in problem.message and "\n" not in problem.message


def test_a_repeated_grade_id_is_a_problem_of_the_later_cell(master):
    copied = copy.deepcopy(cell_by_id(master, "norm_tests"))
    master.cells.append(copied)
    [problem] = problems(master)
    assert (problem.index, problem.grade_id, problem.duplicate) == (len(master.cells) - 1, "norm_tests", True)


def test_the_build_refuses_a_repeated_grade_id_with_the_cells_place(tmp_path):
    source = (FIXTURE_SOLUTIONS / f"{CHAPTER}.py").read_text()
    repeated = re.sub(r'"grade_id": "norm_tests"', '"grade_id": "add_tests"', source)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{CHAPTER}.py").write_text(repeated)
    with pytest.raises(UserError, match=r"00_fixture.py, cell 5 \('assert norm.*'add_tests' appears in an earlier"):
        build(out_dir=tmp_path / "out", solutions=tmp_path / "src")
    assert not (tmp_path / "out").exists()


def test_repair_restores_a_known_id_drops_an_unknown_one_and_unlinks_later_copies(master):
    student = copy.deepcopy(master)
    cell_by_id(student, "norm_tests").metadata["nbgrader"] = {"grade_id": "norm_tests"}  # incomplete
    student.cells[0].metadata["nbgrader"] = {"grade_id": "from_another_chapter"}
    copied = copy.deepcopy(cell_by_id(master, "add_tests"))
    student.cells.append(copied)
    assert repair(student, master)
    restored = cell_by_id(student, "norm_tests").metadata["nbgrader"]
    assert restored == cell_by_id(master, "norm_tests").metadata["nbgrader"]
    assert "nbgrader" not in student.cells[0].metadata
    assert "nbgrader" not in student.cells[-1].metadata  # the copy is an ordinary cell now
    assert "nbgrader" in cell_by_id(student, "add_tests").metadata  # the original keeps its grade
    assert problems(student) == [] and not repair(student, master)
