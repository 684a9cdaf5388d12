"""The course's nbgrader settings and the course root they apply to.

One definition of the settings, :func:`course_config`, serves every nbgrader that grades this course:
the course root's ``nbgrader_config.py`` merges it (so ``nbgrader`` commands, the Formgrader and
Validate in JupyterLab read it), and ``xattn build``, ``xattn grade`` and ``xattn grade-class`` start
from it too, so a student who installed the package without a course checkout grades with the same
settings. Steps of ours are named by import string, never as class objects: the configuration stays
plain JSON, which the Formgrader can show (class objects show as ``[, , ]``).

The *course root* is the folder holding ``nbgrader_config.py``: the one given with ``--course-root``
(exported to the grader's worker processes as ``$XATTN_COURSE_ROOT``), else the nearest one from
the working directory upward (:func:`find_course_root`). Its ``solutions/`` holds the chapter sources,
``course/`` the student release, ``source/`` nbgrader's masters; its ``nbgrader_config.py`` is read
on top of :func:`course_config` (:func:`load_settings`).

Nothing here sets environment variables for the process that reads the settings: fast mode reaches
grading kernels only (:class:`xattn_edu.grader.autograde.XattnExecute` sets it in their environment).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from xattn_edu.common.errors import UserError

CONFIG_FILE = "nbgrader_config.py"
COURSE_ROOT_ENV = "XATTN_COURSE_ROOT"
"""Environment variable: the course root chosen with ``--course-root``, inherited by grading workers."""


def _nbgrader(*names: str) -> list[str]:
    return [f"nbgrader.preprocessors.{name}" for name in names]


def _import_strings(classes: list[type]) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in classes]


def course_config() -> Config:
    """The course's nbgrader settings, relative to no particular folder (the course root adds its own)."""
    from nbgrader.converters import GenerateAssignment

    c = Config()
    c.CourseDirectory.course_id = "xattn"
    # Where nbgrader keeps each stage, relative to the course root.
    c.CourseDirectory.source_directory = "source"  # masters, written by `xattn build --nbgrader-source source`
    c.CourseDirectory.release_directory = "release"  # what students fetch
    c.CourseDirectory.submitted_directory = "submitted"
    c.CourseDirectory.autograded_directory = "autograded"
    c.CourseDirectory.feedback_directory = "feedback"

    # What a student sees in place of solution code.
    c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
    c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
    c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

    # The note "generated from solutions/NN_slug.py: edit there" heads each master in source/; it never
    # reaches the release or the gradebook.
    c.GenerateAssignment.preprocessors = [
        "xattn_edu.grader.generated.DropGeneratedNote",
        *_import_strings(GenerateAssignment.class_traits()["preprocessors"].default()),  # nbgrader's own steps
    ]

    # Autograding: a cell that runs longer than this many seconds is interrupted and scores 0.
    c.ExecutePreprocessor.timeout = 120
    # A test cell the student deleted is put back from the master copy (and graded) instead of vanishing.
    c.OverwriteCells.add_missing_cells = True

    # nbgrader's autograde steps, with the course's two: XattnExecute runs grading kernels in fast mode
    # (experiments shrink to seconds; only grading kernels, never a student's or instructor's own) with the
    # run's seed for the hidden cases; VerifyResults keeps a test cell's points only if the verifier, a
    # process no submitted code runs in, agrees with what the cell recorded, and applies the static scan of
    # the student's cells (docs/instructor.md, "What the grader guarantees").
    c.Autograde.autograde_preprocessors = [
        "xattn_edu.grader.autograde.XattnExecute", "xattn_edu.grader.autograde.VerifyResults",
        *_nbgrader("IgnorePattern"), "nbconvert.preprocessors.ClearMetadataPreprocessor",
        *_nbgrader("LimitOutput", "SaveAutoGrades", "AssignLatePenalties", "CheckCellMetadata"),
    ]
    # What code flagged by the scan costs: "zero" (the test cells after it score 0) or "review" (scores stand).
    c.VerifyResults.on_flag = "zero"

    # Feedback shows the hidden tests' verdicts but not their code (nbgrader would show it, issue #917).
    # Formulas are MathML, so feedback reads offline (no MathJax from a CDN).
    c.GenerateFeedback.preprocessors = [
        *_nbgrader("GetGrades"), "xattn_edu.grader.hide_hidden_tests.HideHiddenTests",
        "xattn_edu.grader.math_offline.RenderMathOffline", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
    # nbconvert's HTML exporter, with its templates compiled once per process rather than once per page.
    c.GenerateFeedback.exporter_class = "xattn_edu.grader.html_export.FeedbackHTMLExporter"
    return c


def find_course_root(start: Path | None = None) -> Path | None:
    """The course root: ``$XATTN_COURSE_ROOT`` if set, else the nearest folder from ``start`` (default: the
    working directory) upward that holds ``nbgrader_config.py``; None when there is none.

    Raises:
        UserError: ``$XATTN_COURSE_ROOT`` names a folder without ``nbgrader_config.py``.
    """
    pinned = os.environ.get(COURSE_ROOT_ENV)
    if pinned:
        return checked_root(Path(pinned))
    here = (start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / CONFIG_FILE).is_file()), None)


def checked_root(path: Path) -> Path:
    """``path``, resolved, if it is a course root (holds ``nbgrader_config.py``).

    Raises:
        UserError: it is not.
    """
    root = Path(path).expanduser().resolve()
    if not (root / CONFIG_FILE).is_file():
        raise UserError(f"{path} is not a course root: it has no {CONFIG_FILE}")
    return root


def pin_course_root(path: Path) -> Path:
    """Make ``path`` (given with ``--course-root``) the course root of this process and of the processes it
    starts (grading workers); returns it resolved.

    Raises:
        UserError: ``path`` has no ``nbgrader_config.py``.
    """
    root = checked_root(path)
    os.environ[COURSE_ROOT_ENV] = str(root)
    return root


def load_settings(root: Path | None) -> Config:
    """:func:`course_config` with ``root``'s ``nbgrader_config.py`` (if ``root`` is given) read on top."""
    config = course_config()
    if root is not None:
        path = root / CONFIG_FILE
        try:
            config.merge(PyFileConfigLoader(path.name, path=str(root)).load_config())
        except Exception as err:  # a config file can fail in any way; name it
            raise UserError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    return config


def settings_bytes(config: Config) -> bytes:
    """``config`` as canonical JSON: what a grade depends on besides the master and the submission.

    The course root (``CourseDirectory.root``) is left out: moving a course does not change its grades.
    """
    plain = json.loads(json.dumps(config, default=repr))
    plain.get("CourseDirectory", {}).pop("root", None)
    return json.dumps(plain, sort_keys=True).encode("utf-8")
