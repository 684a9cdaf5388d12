"""`xattn grade`: offline self-grading with hidden tests, on the fixture chapters (and real ones), with the
chapter sources or with the grading masters shipped in the package (no solutions)."""

from __future__ import annotations

import copy
import hashlib
import json

import nbformat
import pytest

from tests.helpers.grading import (
    FIXTURE_SOLUTIONS,
    cell_by_id,
    delete_cell,
    grade,
    release_notebook,
    replace_cell,
    replace_solution,
    solution_notebook,
    write_notebook,
)
from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import GRADING_MASTERS, build
from xattn_edu.grader.metadata import repair
from xattn_edu.grader.selfgrade import grade_notebook
from xattn_edu.grader.settings import COURSE_ROOT_ENV

CHAPTER = "00_fixture"


@pytest.fixture(scope="module")
def release():
    return release_notebook(CHAPTER, FIXTURE_SOLUTIONS)


def _scores(report):
    return {e.grade_id: (e.score, e.max_score) for e in report.exercises}


def _reasons(report):
    return {e.grade_id: e.reason for e in report.exercises}


def test_solution_scores_full_marks_via_cli_json_and_file_is_untouched(tmp_path, capsys):
    path = write_notebook(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS), tmp_path / f"{CHAPTER}.ipynb")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    status = main(["grade", str(path), "--json", "--solutions", str(FIXTURE_SOLUTIONS)])
    out = capsys.readouterr().out
    assert status == 0
    result = json.loads(out)  # exactly one JSON object on stdout
    assert result == {
        "chapter": CHAPTER,
        "score": 5.0,
        "max_score": 5.0,
        "exercises": [
            {"grade_id": "add_tests", "score": 2.0, "max_score": 2.0, "reason": ""},
            {"grade_id": "norm_tests", "score": 3.0, "max_score": 3.0, "reason": ""},
        ],
        "course_root": str(repo_root()),  # where the settings came from (this checkout: pytest runs in it)
        "masters": str(FIXTURE_SOLUTIONS),
    }
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_untouched_release_scores_zero_with_not_implemented(release, tmp_path, capsys):
    path = write_notebook(release, tmp_path / "my_copy.ipynb")
    assert main(["grade", str(path), "--solutions", str(FIXTURE_SOLUTIONS)]) == 0
    table = capsys.readouterr().out
    assert "not implemented yet" in table
    assert "0 / 5" in table.splitlines()[-1]


def test_hidden_failure_restored_tests_and_feedback_without_hidden_code(tmp_path):
    nb = solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)
    nb = replace_solution(nb, "add_solution", "return abs(a) + abs(b)")  # passes visible, fails hidden
    nb = replace_solution(nb, "norm_solution", "return x + y")  # wrong
    nb = replace_cell(nb, "norm_tests", "pass  # the student emptied the locked test cell")
    html = tmp_path / "feedback" / "fb.html"
    report = grade(nb, CHAPTER, tmp_path, solutions=FIXTURE_SOLUTIONS, html=html)
    assert _scores(report) == {"add_tests": (0.0, 2.0), "norm_tests": (0.0, 3.0)}
    assert _reasons(report) == {
        "add_tests": "add must handle negative numbers",  # the hidden test's message
        "norm_tests": "norm(3, 4) should be 5",  # the restored visible test ran
    }
    feedback = html.read_text()
    assert "add must handle negative numbers" in feedback  # the verdict is shown...
    source = (FIXTURE_SOLUTIONS / f"{CHAPTER}.py").read_text()
    hidden = source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    assert "fixture-hidden-add" in hidden
    for marker in ("fixture-hidden-add", "fixture-hidden-norm", "BEGIN HIDDEN TESTS", "add(-4, 4)"):
        assert marker not in feedback  # ...but not the hidden code, nor a traceback quoting it


def test_deleted_test_cell_old_metadata_stderr_and_timeouts(tmp_path):
    nb = solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)
    nb = delete_cell(nb, "add_tests")
    nb = replace_solution(nb, "add_solution", 'import sys\nprint("debugging", file=sys.stderr)\nreturn a + b')
    nb = replace_solution(nb, "norm_solution", "import time\ntime.sleep(60)")
    del cell_by_id(nb, "setup").metadata["nbgrader"]["schema_version"]  # would abort plain nbgrader
    report = grade(nb, CHAPTER, tmp_path, solutions=FIXTURE_SOLUTIONS, timeout=3)
    assert _scores(report) == {"add_tests": (0.0, 2.0), "norm_tests": (0.0, 3.0)}
    reasons = _reasons(report)
    assert reasons["add_tests"] == "the cell wrote to stderr, which scores 0: debugging"
    assert reasons["norm_tests"] == "cell timed out"


def test_repair_metadata_restores_known_ids_and_drops_unknown(release):
    master = solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)
    student = copy.deepcopy(release)
    assert not repair(student, master)  # a valid notebook is left alone
    cell_by_id(student, "add_tests").metadata["nbgrader"] = {"grade_id": "add_tests", "grade": True}
    student.cells[0].metadata["nbgrader"] = {}
    assert repair(student, master)
    assert cell_by_id(student, "add_tests").metadata["nbgrader"] == cell_by_id(master, "add_tests").metadata["nbgrader"]
    assert "nbgrader" not in student.cells[0].metadata


def test_rejects_missing_corrupt_foreign_and_mislabelled_notebooks(tmp_path):
    def rejects(path, message):
        with pytest.raises(UserError, match=message):
            grade_notebook(path, solutions=FIXTURE_SOLUTIONS)

    rejects(tmp_path / "nope.ipynb", "no such file")
    (tmp_path / "corrupt.ipynb").write_text('{"cells": [')
    rejects(tmp_path / "corrupt.ipynb", "not a notebook")
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    rejects(tmp_path / "list.ipynb", "not a Jupyter notebook")
    foreign = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    rejects(write_notebook(foreign, tmp_path / "foreign.ipynb"), "not a notebook of this course")
    solution = solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)
    rejects(write_notebook(solution, tmp_path / "01_fixture_two.ipynb"), "file name says chapter 01_fixture_two")
    solution.metadata["xattn"]["chapter"] = "01_fixture_two"
    rejects(write_notebook(solution, tmp_path / "renamed.ipynb"), "metadata says chapter 01_fixture_two")


def test_cli_prints_one_line_and_exits_2_on_user_error(tmp_path, cli_user_error):
    (tmp_path / "corrupt.ipynb").write_text("not json at all")
    cli_user_error("grade", str(tmp_path / "corrupt.ipynb"), "--solutions", str(FIXTURE_SOLUTIONS))


def test_a_dead_kernel_costs_only_the_cells_it_reached(tmp_path):
    nb = replace_solution(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS), "add_solution", "import os\nos._exit(1)")
    nb.cells.append(nbformat.v4.new_code_cell("print('after the crash')"))
    report = grade(nb, CHAPTER, tmp_path, solutions=FIXTURE_SOLUTIONS)
    assert _scores(report) == {"add_tests": (0.0, 2.0), "norm_tests": (0.0, 3.0)}
    assert "the kernel died while running this cell" in _reasons(report)["add_tests"]
    assert "before this cell ran" in _reasons(report)["norm_tests"]
    nb = replace_solution(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS), "norm_solution", "import os\nos._exit(1)")
    report = grade(nb, CHAPTER, tmp_path, solutions=FIXTURE_SOLUTIONS)
    assert _scores(report) == {"add_tests": (2.0, 2.0), "norm_tests": (0.0, 3.0)}  # completed cells keep their points


def test_a_cell_pasted_from_another_chapter_is_graded_as_an_ordinary_cell(tmp_path):
    nb = solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)
    pasted = solution_notebook("01_fixture_two", FIXTURE_SOLUTIONS)
    foreign = next(cell for cell in pasted.cells if cell.metadata.get("nbgrader", {}).get("solution"))
    nb.cells.insert(3, copy.deepcopy(foreign))  # valid metadata, a grade_id this chapter's master does not know
    report = grade(nb, CHAPTER, tmp_path, solutions=FIXTURE_SOLUTIONS)
    assert report.score == report.max_score == 5


def test_repeated_or_missing_cell_ids_leave_the_student_s_terminal_quiet(tmp_path, capsys):
    raw = json.loads(nbformat.writes(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS)))
    raw["cells"][2]["id"] = raw["cells"][1]["id"]
    del raw["cells"][3]["id"]
    path = tmp_path / f"{CHAPTER}.ipynb"
    path.write_text(json.dumps(raw))
    assert main(["grade", str(path), "--solutions", str(FIXTURE_SOLUTIONS)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "total" in captured.out


# --- self-grading without the answers: the grading masters ----------------------------------------------------


def test_self_grading_from_grading_masters_needs_no_solutions(tmp_path, monkeypatch, capsys):
    """A student's machine: no course root, no solutions/, only grading masters (here built for the fixtures)."""
    monkeypatch.setenv(COURSE_ROOT_ENV, "")
    masters = tmp_path / "masters"
    build(out_dir=tmp_path / "release", solutions=FIXTURE_SOLUTIONS, grading_masters_dir=masters)
    assert "fixture-solution-add" not in (masters / f"{CHAPTER}.ipynb").read_text()  # no answers to copy...
    home = tmp_path / "student"
    home.mkdir()
    monkeypatch.chdir(home)
    full = write_notebook(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS), home / f"{CHAPTER}.ipynb")
    assert main(["grade", str(full), "--json", "--solutions", str(masters)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["score"], result["max_score"], result["course_root"]) == (5.0, 5.0, None)  # ...yet full marks
    hidden_wrong = replace_solution(solution_notebook(CHAPTER, FIXTURE_SOLUTIONS), "add_solution",
                                    "return abs(a) + abs(b)")  # fmt: skip
    assert main(["grade", str(write_notebook(hidden_wrong, home / "mine.ipynb")), "--solutions", str(masters)]) == 0
    table = capsys.readouterr().out
    assert "add must handle negative numbers" in table  # the hidden tests ran from the grading master
    assert table.splitlines()[0].startswith("graded with the settings of no course root")


@pytest.mark.slow
def test_a_real_solution_self_grades_to_full_marks_outside_any_checkout(tmp_path, monkeypatch, capsys):
    """`xattn grade` run where there is no nbgrader_config.py (a student who installed the package and got
    course/): it grades against the grading masters shipped in the package, which hold no solutions."""
    monkeypatch.setenv(COURSE_ROOT_ENV, "")
    monkeypatch.chdir(tmp_path)
    chapter = "01_library_lookup"
    path = write_notebook(solution_notebook(chapter, repo_root() / "solutions"), tmp_path / f"{chapter}.ipynb")
    assert main(["grade", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["masters"] == str(GRADING_MASTERS) and result["course_root"] is None
    assert result["score"] == result["max_score"] > 0, result
