"""Grading one notebook against its chapter's master copy, hidden tests included: ``xattn grade NOTEBOOK``.

A copy of the submission is autograded by nbgrader in a throwaway course whose master copy is the
chapter's source from the course root's ``solutions/``, or, where there is none (a student's install), the
grading master shipped with the package, which holds no solution code and gives the same gradebook
(a :class:`~xattn_edu.grader.master.Master`; see :mod:`xattn_edu.grader.build`). Autograde therefore
restores every locked cell, re-inserts deleted test cells and runs the hidden tests, exactly as an
instructor's ``nbgrader autograde`` would, with the course's autograde steps
(:mod:`xattn_edu.grader.autograde`: fast mode in the grading kernel, verdicts decided out of process). Nbgrader metadata
that would make nbgrader fail the whole notebook is repaired first (:func:`xattn_edu.grader.metadata.repair`).

Two entry points:

* :func:`grade_notebook` is ``xattn grade``: it reads a file and recognises its chapter from the
  notebook's grade ids, which must agree with the chapter its file name (``NN_slug.ipynb``) or its
  metadata claims. The student's file is only read, never written.
* :func:`grade_submission` grades bytes against a master the caller already holds (the class grader's
  workers: one master per run, not one per notebook); it refuses a notebook of another chapter.

Every failure a student can fix (missing file, not a notebook, a notebook of another course or chapter)
is a :class:`~xattn_edu.common.errors.UserError`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import write_atomic
from xattn_edu.grader.build import CHAPTER_NAME, find_chapters
from xattn_edu.grader.feedback import name_test_cells
from xattn_edu.grader.master import Master, exercise_titles, grade_ids_by_chapter, load_masters
from xattn_edu.grader.metadata import grade_ids, repair
from xattn_edu.grader.report import GradeReport, make_report


def grade_notebook(
    path: str | Path,
    *,
    html: str | Path | None = None,
    timeout: int | None = None,
    solutions: Path | None = None,
) -> GradeReport:
    """Autograde the notebook at ``path`` against its chapter's master copy, hidden tests included.

    ``html``: also write nbgrader feedback there (hidden test code left out). ``timeout``: seconds a
    cell may run (default: ``ExecutePreprocessor.timeout`` of nbgrader_config.py). ``solutions``: the
    folder of chapter masters (default: the course root's ``solutions/``, else the package's grading masters).

    Raises:
        UserError: the file is missing or not a notebook, belongs to no chapter, or its file name or
            metadata names another chapter than its exercises.
    """
    path = Path(path)
    raw = _read_bytes(path)
    notebook = parse_notebook(raw, str(path))
    masters = load_masters(find_chapters(solutions=solutions))
    file_name = path.stem if CHAPTER_NAME.match(path.stem) and path.stem in masters else None
    claims = {"file name": file_name, "metadata": _metadata_chapter(notebook)}
    chapter = identify_chapter(notebook, grade_ids_by_chapter(masters), str(path), claims)
    return _autograde(raw, notebook, masters[chapter], html=html, timeout=timeout)


def grade_submission(
    content: bytes,
    master: Master,
    *,
    chapters: Mapping[str, frozenset[str]],
    html: str | Path | None = None,
    timeout: int | None = None,
    name: str = "the notebook",
) -> GradeReport:
    """Autograde the notebook file ``content`` against ``master``.

    ``chapters``: the grade ids of every chapter of the course
    (:func:`~xattn_edu.grader.master.grade_ids_by_chapter`), to recognise a notebook of another chapter.
    ``name``: how messages call the notebook. ``html`` and ``timeout`` as in :func:`grade_notebook`.

    Raises:
        UserError: ``content`` is not a notebook, or it is a notebook of another chapter or course.
    """
    notebook = parse_notebook(content, name)
    found = identify_chapter(notebook, chapters, name, {"metadata": _metadata_chapter(notebook)})
    if found != master.chapter:
        raise UserError(f"{name}: its exercises are those of {found}, not of {master.chapter}")
    return _autograde(content, notebook, master, html=html, timeout=timeout)


def _autograde(
    raw: bytes, notebook: NotebookNode, master: Master, *, html: str | Path | None, timeout: int | None
) -> GradeReport:
    """Grade ``raw`` (whose parsed form is ``notebook``) in a throwaway nbgrader course holding ``master``."""
    from xattn_edu.grader.course import temp_course

    if repair(notebook, master.notebook):
        raw = nbformat.writes(notebook).encode("utf-8")
    with temp_course() as course:
        if timeout is not None:
            course.config.ExecutePreprocessor.timeout = timeout
        course.add_master(master.chapter, master.notebook, master.digest)
        course.add_submission(master.chapter, raw)
        graded = nbformat.read(course.autograde(master.chapter), as_version=4)
        report = make_report(master.chapter, course.scores(master.chapter), graded)
        if html is not None:
            page = course.generate_feedback(master.chapter).read_text(encoding="utf-8")
            write_atomic(html, name_test_cells(page, exercise_titles(master.notebook)).encode("utf-8"))
    return report


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    return path.read_bytes()


def parse_notebook(raw: bytes, name: str) -> NotebookNode:
    """The notebook in the file content ``raw``; ``name`` says which file in messages.

    Raises:
        UserError: ``raw`` is not UTF-8 JSON, or not a Jupyter notebook.
    """
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{name}: not a notebook (the file is not valid notebook JSON: {err})") from err
    try:
        with warnings.catch_warnings():
            # Missing or repeated cell ids: nbformat fixes them and warns on stderr, which would only
            # puzzle a student (the grader renumbers them anyway).
            warnings.simplefilter("ignore")
            return nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as err:  # nbformat raises several types for JSON that is not a notebook
        raise UserError(f"{name}: not a Jupyter notebook ({type(err).__name__})") from err


def _metadata_chapter(notebook: NotebookNode) -> str | None:
    """The chapter the notebook's metadata names (``metadata.xattn.chapter``, set by the build), if any."""
    meta = notebook.metadata.get("xattn")
    chapter = meta.get("chapter") if isinstance(meta, dict) else None
    return str(chapter) if chapter else None


def identify_chapter(
    notebook: NotebookNode, chapters: Mapping[str, frozenset[str]], name: str, claims: Mapping[str, str | None]
) -> str:
    """The chapter whose exercises ``notebook`` holds, among ``chapters`` (``{chapter: its grade ids}``).

    The match counts grade ids shared with each chapter, ignoring ids every chapter has (such as
    ``setup``). ``claims`` (``{"file name": chapter or None, ...}``) must agree with it.

    Raises:
        UserError: no chapter is known, none matches, or a claim names another chapter.
    """
    if not chapters:
        raise UserError("no chapter masters found (no solutions/, no grading masters): nothing to grade against")
    common = frozenset.intersection(*chapters.values()) if len(chapters) > 1 else frozenset()
    submitted = set(grade_ids(notebook))
    overlap = {chapter: len((ids - common) & submitted) for chapter, ids in chapters.items()}
    best = max(overlap, key=lambda chapter: overlap[chapter])
    if overlap[best] == 0:
        raise UserError(f"{name}: not a notebook of this course (none of its cells belongs to a chapter)")
    for source, claimed in claims.items():
        if claimed is not None and claimed != best:
            raise UserError(f"{name}: its {source} says chapter {claimed}, but its exercises are those of {best}")
    return best
