"""The instructor loop of docs/instructor.md, with the standard ``nbgrader`` commands, on one machine.

A temporary course root (the repository's nbgrader_config.py plus a temporary ``Exchange.root``),
three simulated students: alice hands in a perfect notebook and bob a partial one through the
exchange (fetch → submit → collect); carol's empty notebook arrives as an LMS download
(``zip_collect``). Then autograde, feedback (hidden tests not shown) and the CSV export are checked.
One build and one pass through the loop are shared by all tests of this module.
"""

from __future__ import annotations

import copy
import csv
import html
import os
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests.helpers.grading import FIXTURE_SOLUTIONS, cell_by_id
from xattn_edu.cli import main
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import find_chapters, master_notebook

REAL = find_chapters()
CHAPTER = REAL[0] if REAL else find_chapters(["00_fixture"], FIXTURE_SOLUTIONS)[0]
NAME = CHAPTER.name
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's gradebook chatter
CANVAS_REGEXP = r".*/(?P<student_id>[a-z]+)_\d+_\d+_(?P<file_id>\d\d_[a-z0-9_]+?)(-\d+)?\.ipynb$"


def _nbgrader(cwd: Path, *args: str, env: dict[str, str]) -> None:
    """``nbgrader ARGS`` run in ``cwd`` with ``env``, in this process (a fresh interpreter per command
    would cost seconds each); fails the test if the command fails."""
    from jupyter_core.application import NoStart
    from nbgrader.apps.nbgraderapp import NbGraderApp

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    app = NbGraderApp()
    try:
        app.initialize(list(args))
        app.start()
    except NoStart:  # how jupyter apps finish after running a subcommand
        pass
    except SystemExit as exit_:  # nbgrader apps exit(1) on failure
        assert not exit_.code, f"nbgrader {' '.join(args)} failed (exit {exit_.code})"
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        if app.subapp is not None:
            type(app.subapp).clear_instance()
        NbGraderApp.clear_instance()


def _solution_cells(master: nbformat.NotebookNode) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in master.cells if c.metadata.get("nbgrader", {}).get("solution")]


def _answer(release_path: Path, master: nbformat.NotebookNode, how_many: int) -> nbformat.NotebookNode:
    """The release with the first ``how_many`` solution cells filled in from the master copy."""
    notebook = nbformat.read(release_path, as_version=4)
    for grade_id in _solution_cells(master)[:how_many]:
        cell_by_id(notebook, grade_id).source = copy.deepcopy(cell_by_id(master, grade_id).source)
    return notebook


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _hidden_lines(source: str) -> list[str]:
    regions = re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, flags=re.S)
    return [line.strip() for region in regions for line in region.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """Runs the whole loop once; returns the course root, CSV rows and maximum score."""
    tmp = tmp_path_factory.mktemp("instructor")
    root, exchange = tmp / "course", tmp / "exchange"
    root.mkdir()
    exchange.mkdir(mode=0o777)
    config = (repo_root() / "nbgrader_config.py").read_text()
    config += f"\nc.Exchange.root = {str(exchange)!r}\nc.FileNameCollectorPlugin.named_regexp = {CANVAS_REGEXP!r}\n"
    (root / "nbgrader_config.py").write_text(config)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"), "OMP_NUM_THREADS": "1"}
    env.pop("XATTN_FAST", None)  # nbgrader_config.py must set it for the grading kernels

    # Instructor: master notebooks → nbgrader source/, generate, release.
    solutions = CHAPTER.source.parent
    assert main(["build", NAME, "--out", str(tmp / "release_check"), "--solutions", str(solutions),
                 "--nbgrader-source", str(root / "source")]) == 0  # fmt: skip
    _nbgrader(root, "generate_assignment", NAME, "--force", env=env)
    _nbgrader(root, "release_assignment", NAME, env=env)

    # Students alice (perfect) and bob (partial): fetch, work, submit through the exchange.
    master = master_notebook(CHAPTER)
    student_config = f"c = get_config()\nc.CourseDirectory.course_id = 'xattn'\nc.Exchange.root = {str(exchange)!r}\n"
    for student, filled in (("alice", len(_solution_cells(master))), ("bob", 1)):
        home = tmp / student
        home.mkdir()
        (home / "nbgrader_config.py").write_text(student_config)
        _nbgrader(home, "fetch_assignment", NAME, env=env)
        notebook_path = home / NAME / f"{NAME}.ipynb"
        nbformat.write(_answer(notebook_path, master, filled), notebook_path)
        _nbgrader(home, "submit", NAME, f"--student={student}", env=env)
    _nbgrader(root, "collect", NAME, env=env)

    # carol (empty) hands in through the LMS: a zip of files named like a Canvas download.
    archive = root / "downloaded" / NAME / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        zf.write(root / "release" / NAME / f"{NAME}.ipynb", f"carol_1001_2002_{NAME}.ipynb")
    _nbgrader(root, "zip_collect", NAME, env=env)

    _nbgrader(root, "autograde", NAME, env=env)
    _nbgrader(root, "generate_feedback", NAME, env=env)
    _nbgrader(root, "export", "--to", str(root / "grades.csv"), env=env)
    with open(root / "grades.csv", newline="") as fh:
        rows = {row["student_id"]: row for row in csv.DictReader(fh)}
    graded = [c.metadata["nbgrader"] for c in master.cells if c.metadata.get("nbgrader", {}).get("grade")]
    max_score = sum(float(meta["points"]) for meta in graded)
    yield {"root": root, "rows": rows, "max_score": max_score}
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_release_nbgrader_makes_has_the_same_cells_as_course(course):
    released = nbformat.read(course["root"] / "release" / NAME / f"{NAME}.ipynb", as_version=4)
    built = nbformat.read(course["root"].parent / "release_check" / NAME / f"{NAME}.ipynb", as_version=4)
    assert [c.source for c in released.cells] == [c.source for c in built.cells]


def test_exported_csv_scores(course):
    rows, top = course["rows"], course["max_score"]
    assert sorted(rows) == ["alice", "bob", "carol"]
    assert all(float(row["max_score"]) == top for row in rows.values())
    assert float(rows["alice"]["score"]) == top
    assert 0 < float(rows["bob"]["score"]) < top
    assert float(rows["carol"]["score"]) == 0


def test_feedback_shows_results_but_no_hidden_test_code(course):
    hidden = _hidden_lines(CHAPTER.source.read_text())
    assert hidden, "the chapter has hidden tests, so this check has teeth"
    for student in ("alice", "bob", "carol"):
        page = (course["root"] / "feedback" / student / NAME / f"{NAME}.html").read_text()
        text = _visible_text(page)
        assert "hidden tests ran here" in text
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{student}'s feedback shows hidden test code: {leaked[:3]}"
