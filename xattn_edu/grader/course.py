"""A throwaway nbgrader course, driven through nbgrader's Python converters.

The course build, the self-grader and the class grader's workers all run nbgrader the same way:
in a temporary course directory whose ``source/<chapter>/<chapter>.ipynb`` is the master copy
(solutions and hidden tests), with its own sqlite gradebook. ``generate_assignment`` records the
master cells and their checksums in that gradebook and writes the student release;
``autograde`` then restores locked cells and hidden tests from the gradebook before it runs a
submission. The course settings (stub text, timeouts, ``add_missing_cells``...) are those of the course
root's ``nbgrader_config.py``, the file instructors use, over the package's defaults
(:mod:`xattn_edu.grader.settings`), so the two never disagree.

nbgrader's log never reaches the user: it is captured, and a failure becomes one
:class:`~xattn_edu.common.errors.UserError` sentence.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from traitlets.config import Config

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import write_atomic
from xattn_edu.common.paths import cache_root
from xattn_edu.grader.nbgrader_fixes import find_alembic_head_in_process
from xattn_edu.grader.settings import find_course_root, load_settings

STUDENT_ID = "student"
"""The one student of a throwaway course."""

_LOG = logging.getLogger("xattn.nbgrader")
_LOG.propagate = False  # nbgrader's messages are only captured (see _Capture), never printed
_LOG.setLevel(logging.INFO)
_LOG.addHandler(logging.NullHandler())

_OLD_METADATA_HINT = (
    "the notebook uses an old version of the nbgrader metadata format: every nbgrader cell needs the "
    'full metadata with "schema_version": 3 (an empty nbgrader={} is not enough)'
)


def course_settings() -> Config:
    """The course settings: the defaults of :func:`~xattn_edu.grader.settings.course_config` with the course
    root's ``nbgrader_config.py`` read on top (where there is a course root)."""
    return load_settings(find_course_root())


class _Capture(logging.Handler):
    """Keeps nbgrader's log records so that a failure can be explained in one sentence."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def explain(self) -> str:
        """One line saying why nbgrader gave up, written from its log."""
        messages = [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]
        if any("old version" in m and "metadata" in m for m in messages):
            return _OLD_METADATA_HINT
        tracebacks = [m for m in messages if m.startswith("Traceback")]
        if tracebacks:
            lines = [line for line in tracebacks[-1].splitlines() if line.strip()]
            last = lines[-1].strip()
            if any(line.startswith("nbclient.exceptions.CellTimeoutError") for line in lines):
                # the cell went on past the timeout although the kernel was interrupted
                return "a cell ran past the time limit and did not stop when interrupted (catching KeyboardInterrupt?)"
            if "SchemaTooOld" in last:
                return _OLD_METADATA_HINT
            if "ValidationError" in last:
                return _validation_hint(self.records)
            if "DeadKernelError" in last:
                return "the kernel died while running the notebook (a cell crashed Python or called os._exit)"
            return last.removeprefix("RuntimeError: ")
        if any("kernel became unresponsive" in m for m in messages):
            return "the kernel stopped responding (a cell may loop forever while using up memory)"
        return messages[-1].strip() if messages else "nbgrader failed without saying why"


def _validation_hint(records: list[logging.LogRecord]) -> str:
    """nbgrader's metadata validator logs the real cause in a traceback before its generic message."""
    for record in records:
        message = record.getMessage()
        if message.startswith("Traceback") and "ValidationError" in message:
            cause = [line for line in message.splitlines() if line.strip()][-1]
            return f"the notebook has invalid nbgrader cell metadata ({cause.split(':', 1)[-1].strip()})"
    return "the notebook has invalid nbgrader cell metadata"


class TempCourse:
    """An nbgrader course in a temporary directory; use :func:`temp_course` to get one.

    ``config`` is the course settings (:func:`course_settings`) with this directory as the course root and
    the gradebook inside it; callers may add settings (e.g. ``config.ExecutePreprocessor.timeout``) before
    running a step.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = course_settings()
        self.config.CourseDirectory.root = str(root)
        self.config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
        self.config.Exchange.root = str(root / "exchange")
        self.config.Exchange.cache = str(root / "exchange-cache")
        if "iopub_timeout" not in self.config.Execute:
            # nbclient waits 4 s for a cell's last output after its reply, then nbgrader fails the whole
            # notebook; a busy machine (grading in parallel) can take longer than that
            self.config.Execute.iopub_timeout = 30
        _copy_empty_gradebook(root / "gradebook.db", self.config.CourseDirectory.course_id)
        self.log = _LOG

    def add_source(self, chapter: str, notebook: NotebookNode) -> Path:
        """Write the master notebook of ``chapter`` (solutions + hidden tests) into ``source/``."""
        path = self.root / "source" / chapter / f"{chapter}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        return path

    def generate_assignment(self, chapter: str) -> NotebookNode:
        """Run ``generate_assignment``: records the master cells in the gradebook, returns the release."""
        from nbgrader.converters import GenerateAssignment

        self._run(GenerateAssignment, chapter, STUDENT_ID, what=f"generate_assignment for {chapter}")
        return nbformat.read(self.root / "release" / chapter / f"{chapter}.ipynb", as_version=4)

    def add_master(self, chapter: str, notebook: NotebookNode, digest: str) -> None:
        """Make ``notebook`` (the master copy, see :class:`~xattn_edu.grader.master.Master`) the assignment ``chapter``.

        Its source copy plus its cells in the gradebook. Creating a gradebook costs seconds (nbgrader runs
        ``alembic`` in a subprocess), so the gradebook left by ``generate_assignment`` is cached under the
        master's ``digest`` (which covers the settings) and nbgrader's version. It replaces the course's
        gradebook: call it once, before the other steps.
        """
        self.add_source(chapter, notebook)
        cached = _gradebook_cache() / f"{chapter}-{digest}.db"
        gradebook = self.root / "gradebook.db"
        if cached.is_file():
            shutil.copyfile(cached, gradebook)
            return
        self.generate_assignment(chapter)
        for stale in cached.parent.glob(f"{chapter}-*.db"):  # gradebooks of earlier versions
            stale.unlink(missing_ok=True)
        _save_to_cache(gradebook, cached)

    def add_submission(self, chapter: str, notebook_bytes: bytes, student: str = STUDENT_ID) -> Path:
        """Place a student's notebook (raw bytes, copied as is) in ``submitted/``."""
        path = self.root / "submitted" / student / chapter / f"{chapter}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(notebook_bytes)
        return path

    def autograde(self, chapter: str, student: str = STUDENT_ID) -> Path:
        """Run ``autograde`` with the course's steps; returns the autograded notebook's path."""
        from nbgrader.converters import Autograde

        with _quiet_kernels():
            self._run(Autograde, chapter, student, what=f"autograde of {chapter}")
        return self.root / "autograded" / student / chapter / f"{chapter}.ipynb"

    def generate_feedback(self, chapter: str, student: str = STUDENT_ID) -> Path:
        """Run ``generate_feedback`` with the course's preprocessors; returns the HTML path."""
        from nbgrader.converters import GenerateFeedback

        self.config.HTMLExporter.template_name = "feedback"
        self._run(GenerateFeedback, chapter, student, what=f"feedback for {chapter}")
        return self.root / "feedback" / student / chapter / f"{chapter}.html"

    def scores(self, chapter: str, student: str = STUDENT_ID) -> dict[str, tuple[float, float]]:
        """``{grade_id: (score, max_score)}`` of every graded cell, read from the gradebook."""
        from nbgrader.api import Gradebook

        with Gradebook(self.config.CourseDirectory.db_url, self.config.CourseDirectory.course_id) as gb:
            notebook = gb.find_submission_notebook(chapter, chapter, student)
            return {grade.cell.name: (float(grade.score or 0), float(grade.max_score)) for grade in notebook.grades}

    def _run(self, converter_class: type, chapter: str, student: str, *, what: str) -> None:
        from nbgrader.coursedir import CourseDirectory

        config = copy.deepcopy(self.config)
        config.CourseDirectory.assignment_id = chapter
        config.CourseDirectory.student_id = student
        coursedir = CourseDirectory(config=config, log=self.log)
        converter = converter_class(coursedir=coursedir, config=config, log=self.log)
        converter.force = True
        capture = _Capture()
        self.log.addHandler(capture)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sqlalchemy chatter from nbgrader's gradebook
                converter.start()
        except Exception as err:  # nbgrader logs the cause and raises a generic error
            raise UserError(f"nbgrader {what} failed: {capture.explain()}") from err
        finally:
            self.log.removeHandler(capture)


def _gradebook_cache() -> Path:
    import nbgrader

    return cache_root() / "gradebooks" / f"nbgrader-{nbgrader.__version__}"


def _save_to_cache(path: Path, cached: Path) -> None:
    """Copy ``path`` to ``cached`` atomically (concurrent graders never see half a file)."""
    try:
        write_atomic(cached, path.read_bytes())
    except OSError:
        pass  # an unwritable cache only costs time


def _copy_empty_gradebook(path: Path, course_id: str) -> None:
    """Start ``path`` as an empty gradebook of ``course_id``, created once and then copied.

    nbgrader creates a gradebook by running ``alembic`` in a subprocess, which costs seconds (here
    the migration head is read in this process instead: :mod:`xattn_edu.grader.nbgrader_fixes`).
    """
    cached = _gradebook_cache() / f"empty-{course_id}.db"
    if not cached.is_file():
        from nbgrader.api import Gradebook

        find_alembic_head_in_process()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Gradebook(f"sqlite:///{path}", course_id).close()
        _save_to_cache(path, cached)
        return
    shutil.copyfile(cached, path)


@contextmanager
def temp_course() -> Iterator[TempCourse]:
    """A :class:`TempCourse` in a fresh temporary directory, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="xattn-nbgrader-"))
    previous = os.getcwd()
    try:
        yield TempCourse(root)
    finally:
        os.chdir(previous)  # nbgrader's converters chdir into the course root
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _quiet_kernels() -> Iterator[None]:
    """Send this process's stderr (file descriptor 2, which kernels inherit) to /dev/null meanwhile.

    Kernels log start-up chatter there; what students need (errors in cells) is in the notebook.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
