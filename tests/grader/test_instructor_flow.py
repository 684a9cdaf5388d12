"""The instructor loop of docs/instructor.md, with the standard ``nbgrader`` commands, on one machine.

A temporary course root (the repository's nbgrader_config.py plus a temporary ``Exchange.root``, one
chapter source in ``solutions/``) built with ``xattn build --course-root ROOT --nbgrader-source source``;
three simulated students with names in the gradebook: alice hands in a perfect notebook and bob a partial
one through the exchange (fetch → submit → collect → ... → release_feedback → fetch_feedback); carol's
empty notebook arrives as an LMS download (``zip_collect``). Then autograde, feedback (hidden tests not
shown) and the CSV export are checked. Every Jupyter path (config, data with the exchange cache, runtime),
``HOME`` and the xattn cache point into the test's temporary folder, and a test checks that the user's own
Jupyter folders were left alone. One build and one pass through the loop are shared by all tests here.
"""

from __future__ import annotations

import copy
import csv
import html
import logging
import os
import re
import shutil
import subprocess
import zipfile
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir

from tests.helpers.grading import FIXTURE_SOLUTIONS, cell_by_id
from xattn_edu.cli import main
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import find_chapters, master_notebook
from xattn_edu.grader.settings import COURSE_ROOT_ENV

REPO = repo_root()
REAL = find_chapters(solutions=REPO / "solutions")
CHAPTER = REAL[0] if REAL else find_chapters(["00_fixture"], FIXTURE_SOLUTIONS)[0]
NAME = CHAPTER.name
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's gradebook chatter
CANVAS_REGEXP = r".*/(?P<student_id>[a-z]+)_\d+_\d+_(?P<file_id>\d\d_[a-z0-9_]+?)(-\d+)?\.ipynb$"
STUDENTS = {"alice": ("Alice", "Liddell"), "bob": ("Bob", "Cratchit"), "carol": ("Carol", "Danvers")}
HOME_JUPYTER = [Path(jupyter_data_dir()), Path(jupyter_config_dir())]
"""The user's own Jupyter folders, read before any test here changes the environment."""


class _Log(logging.Handler):
    """Keeps the messages nbgrader's apps log."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def _nbgrader(cwd: Path, *args: str, env: dict[str, str], log: _Log) -> None:
    """``nbgrader ARGS`` run in ``cwd`` with ``env``, in this process (a fresh interpreter per command
    would cost seconds each), its log kept in ``log``; fails the test if the command fails."""
    from jupyter_core.application import NoStart
    from nbgrader.apps.nbgraderapp import NbGraderApp

    with _environment(env):
        os.chdir(cwd)
        app = NbGraderApp()
        loggers = [app.log]
        try:
            app.initialize(list(args))
            loggers += [app.subapp.log] if app.subapp is not None else []
            for logger in loggers:
                logger.addHandler(log)
            app.start()
        except NoStart:  # how jupyter apps finish after running a subcommand
            pass
        except SystemExit as exit_:  # nbgrader apps exit(1) on failure
            assert not exit_.code, f"nbgrader {' '.join(args)} failed (exit {exit_.code})"
        finally:
            for logger in loggers:
                logger.removeHandler(log)
            if app.subapp is not None:
                type(app.subapp).clear_instance()
            NbGraderApp.clear_instance()


@contextmanager
def _environment(env: dict[str, str]):
    """This process's environment is ``env`` meanwhile (and its working directory is restored afterwards)."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime)}`` of every file under ``folders``, leaving out ``runtime/`` (other programs'
    kernels and servers come and go there)."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else []:
            if path.is_file() and "runtime" not in path.relative_to(folder).parts:
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


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
    """Runs the whole loop once; returns the course root, the students' homes, CSV rows, log and maximum score."""
    home_before = _snapshot(HOME_JUPYTER)
    tmp = tmp_path_factory.mktemp("instructor")
    root, exchange = tmp / "course", tmp / "exchange"
    (root / "solutions").mkdir(parents=True)
    (tmp / "home").mkdir()
    exchange.mkdir(mode=0o777)
    shutil.copy(CHAPTER.source, root / "solutions")
    config = (REPO / "nbgrader_config.py").read_text()
    config += f"\nc.Exchange.root = {str(exchange)!r}\nc.FileNameCollectorPlugin.named_regexp = {CANVAS_REGEXP!r}\n"
    (root / "nbgrader_config.py").write_text(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(tmp / "home"), "XATTN_CACHE": str(tmp / "cache"),
           "JUPYTER_CONFIG_DIR": str(tmp / "jupyter" / "config"), "JUPYTER_DATA_DIR": str(tmp / "jupyter" / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter" / "runtime"), "PYTHONPATH": str(REPO)}  # fmt: skip
    env.pop("XATTN_FAST", None)  # XattnExecute sets it for the grading kernels
    env.pop(COURSE_ROOT_ENV, None)
    log = _Log()

    # Instructor: master notebooks → nbgrader source/ of this course root, generate, release.
    with _environment(env):
        assert main(["build", NAME, "--course-root", str(root), "--nbgrader-source", "source"]) == 0
    _nbgrader(root, "generate_assignment", NAME, "--force", env=env, log=log)
    _nbgrader(root, "release_assignment", NAME, env=env, log=log)
    for student, (first, last) in STUDENTS.items():
        _nbgrader(root, "db", "student", "add", student, f"--first-name={first}", f"--last-name={last}", env=env,
                  log=log)  # fmt: skip

    # Students alice (perfect) and bob (partial): fetch, work, submit through the exchange.
    master = master_notebook(CHAPTER)
    student_config = f"c = get_config()\nc.CourseDirectory.course_id = 'xattn'\nc.Exchange.root = {str(exchange)!r}\n"
    homes, envs = {}, {}
    for student, filled in (("alice", len(_solution_cells(master))), ("bob", 1)):
        homes[student] = home = tmp / student
        home.mkdir()
        # each student has their own account: HOME and Jupyter data (with nbgrader's exchange cache)
        envs[student] = {**env, "HOME": str(home), "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter")}
        (home / "nbgrader_config.py").write_text(student_config)
        _nbgrader(home, "fetch_assignment", NAME, env=envs[student], log=log)
        notebook_path = home / NAME / f"{NAME}.ipynb"
        nbformat.write(_answer(notebook_path, master, filled), notebook_path)
        _nbgrader(home, "submit", NAME, f"--student={student}", env=envs[student], log=log)
    _nbgrader(root, "collect", NAME, env=env, log=log)

    # carol (empty) hands in through the LMS: a zip of files named like a Canvas download.
    archive = root / "downloaded" / NAME / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        zf.write(root / "release" / NAME / f"{NAME}.ipynb", f"carol_1001_2002_{NAME}.ipynb")
    _nbgrader(root, "zip_collect", NAME, env=env, log=log)

    _nbgrader(root, "autograde", NAME, env=env, log=log)
    _nbgrader(root, "generate_feedback", NAME, env=env, log=log)
    for student, home in homes.items():
        # per student: nbgrader 0.9.6's release_feedback stops at carol, whose LMS submission has no timestamp.txt
        _nbgrader(root, "release_feedback", NAME, f"--student={student}", env=env, log=log)
        _nbgrader(home, "fetch_feedback", NAME, f"--student={student}", env=envs[student], log=log)
    _nbgrader(root, "export", "--to", str(root / "grades.csv"), env=env, log=log)
    with open(root / "grades.csv", newline="") as fh:
        rows = {row["student_id"]: row for row in csv.DictReader(fh)}
    graded = [c.metadata["nbgrader"] for c in master.cells if c.metadata.get("nbgrader", {}).get("grade")]
    max_score = sum(float(meta["points"]) for meta in graded)
    yield {"root": root, "homes": homes, "rows": rows, "max_score": max_score, "log": log.messages,
           "home_before": home_before}  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_release_nbgrader_makes_has_the_same_cells_as_course(course):
    released = nbformat.read(course["root"] / "release" / NAME / f"{NAME}.ipynb", as_version=4)
    built = nbformat.read(course["root"] / "course" / NAME / f"{NAME}.ipynb", as_version=4)
    assert [c.source for c in released.cells] == [c.source for c in built.cells]  # the master's note is left out
    master = nbformat.read(course["root"] / "source" / NAME / f"{NAME}.ipynb", as_version=4)
    assert "Generated from `solutions/" in master.cells[0].source
    assert "generated" not in released.metadata["xattn"]


def test_exported_csv_scores_and_names(course):
    rows, top = course["rows"], course["max_score"]
    assert sorted(rows) == ["alice", "bob", "carol"]
    assert {student: (row["first_name"], row["last_name"]) for student, row in rows.items()} == STUDENTS
    assert all(float(row["max_score"]) == top for row in rows.values())
    assert float(rows["alice"]["score"]) == top
    assert 0 < float(rows["bob"]["score"]) < top
    assert float(rows["carol"]["score"]) == 0


def _fetched_feedback(home: Path) -> list[Path]:
    return sorted((home / NAME / "feedback").glob(f"*/{NAME}.html"))


def test_feedback_shows_results_but_no_hidden_test_code(course):
    hidden = _hidden_lines(CHAPTER.source.read_text())
    assert hidden, "the chapter has hidden tests, so this check has teeth"
    pages = [course["root"] / "feedback" / student / NAME / f"{NAME}.html" for student in STUDENTS]
    pages += [page for home in course["homes"].values() for page in _fetched_feedback(home)]
    for page in pages:
        text = _visible_text(page.read_text())
        assert "hidden tests ran here" in text
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{page} shows hidden test code: {leaked[:3]}"


def test_students_fetch_their_released_feedback(course):
    for student, home in course["homes"].items():
        fetched = _fetched_feedback(home)
        assert len(fetched) == 1, f"{student} fetched {fetched}"
        assert fetched[0].read_bytes() == (course["root"] / "feedback" / student / NAME / f"{NAME}.html").read_bytes()


def test_nbgrader_logged_no_configuration_warning(course):
    unrecognised = [m for m in course["log"] if "not recognized" in m or "display_data_priority" in m]
    assert not unrecognised, unrecognised[:3]
    assert any("Applying preprocessor: HideHiddenTests" in m for m in course["log"])  # the log was captured


def test_each_passing_test_cell_says_so_once(course):
    graded = nbformat.read(course["root"] / "autograded" / "alice" / NAME / f"{NAME}.ipynb", as_version=4)
    tests = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade") and
             not c.metadata["nbgrader"].get("solution")]  # fmt: skip
    assert tests
    for cell in tests:
        # one print may arrive in several stream messages (the kernel flushes on a timer): join them first
        text = "".join(o["text"] for o in cell.outputs if o.get("output_type") == "stream")
        assert len(text.splitlines()) == 1, f"{cell.metadata['nbgrader']['grade_id']} printed {text!r}"


def test_the_users_own_jupyter_folders_are_untouched(course):
    changed = {path for path, stat in _snapshot(HOME_JUPYTER).items() if course["home_before"].get(path) != stat}
    changed |= set(course["home_before"]) - set(_snapshot(HOME_JUPYTER))
    assert not changed, f"the instructor tests wrote into the user's Jupyter folders: {sorted(changed)[:5]}"


def test_a_fetch_into_the_course_root_is_ignored_by_git():
    """A student (or an instructor trying the student's side) who fetches in a JupyterLab started at the course
    root gets NN_slug/ there: git must not offer it for a commit."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    fetched = f"{NAME}/{NAME}.ipynb"
    assert subprocess.run(["git", "check-ignore", "-q", fetched], cwd=REPO).returncode == 0, f"{fetched} not ignored"
    assert subprocess.run(["git", "check-ignore", "-q", f"course/{fetched}"], cwd=REPO).returncode == 1
