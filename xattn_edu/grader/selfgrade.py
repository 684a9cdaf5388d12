"""Self-grading, offline, hidden tests included: ``xattn grade NOTEBOOK``.

A copy of the student's notebook is autograded by nbgrader in a throwaway course whose master copy is
the chapter's source from ``solutions/`` (see :mod:`xattn_edu.grader.build`). Autograde therefore restores
every locked cell, re-inserts deleted test cells and runs the hidden tests, exactly as an instructor's
``nbgrader autograde`` would; the grading kernel gets ``XATTN_FAST=1``. The student's file is only
read, never written.

The chapter is recognised by the notebook's nbgrader grade ids, and must agree with the chapter its
file name (``NN_slug.ipynb``) or its metadata claims. Every failure a student can fix (missing file,
not a notebook, a notebook of another course or chapter) is a :class:`~xattn_edu.common.errors.UserError`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError
from xattn_edu.grader.build import CHAPTER_NAME, Chapter, find_chapters, master_notebook
from xattn_edu.grader.hide_hidden_tests import error_line

GRADER_ENV = {"XATTN_FAST": "1"}
"""Environment of the grading kernel: notebooks shrink their experiments."""


@dataclass(frozen=True)
class ExerciseResult:
    """The outcome of one graded test cell."""

    grade_id: str  # nbgrader grade_id of the test cell, e.g. "relevance_tests"
    score: float  # points earned
    max_score: float  # points available
    reason: str  # why points were lost, one line for the student ("" at full marks)


@dataclass(frozen=True)
class GradeReport:
    """The grade of one notebook."""

    chapter: str  # "NN_slug"
    score: float  # points earned, all exercises
    max_score: float  # points available, all exercises
    exercises: tuple[ExerciseResult, ...]  # in notebook order

    def to_dict(self) -> dict:
        """JSON-ready: ``{"chapter", "score", "max_score", "exercises": [{grade_id, score, max_score, reason}]}``."""
        return {
            "chapter": self.chapter,
            "score": self.score,
            "max_score": self.max_score,
            "exercises": [asdict(exercise) for exercise in self.exercises],
        }

    def table(self) -> str:
        """A plain-text table: one row per exercise, then the total."""
        width = max([len("exercise"), *(len(e.grade_id) for e in self.exercises)])
        rows = [f"{self.chapter}", f"  {'exercise':<{width}}  {'points':>9}  result"]
        for e in self.exercises:
            points = f"{_num(e.score)} / {_num(e.max_score)}"
            rows.append(f"  {e.grade_id:<{width}}  {points:>9}  {e.reason or 'ok'}")
        total = f"{_num(self.score)} / {_num(self.max_score)}"
        rows.append(f"  {'total':<{width}}  {total:>9}")
        return "\n".join(rows)


def _num(value: float) -> str:
    return f"{value:g}"


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
    folder of chapter sources (default: the repository's ``solutions/``).
    """
    from xattn_edu.grader.course import temp_course

    path = Path(path)
    raw = _read_bytes(path)
    notebook = _parse(raw, path)
    chapter = identify_chapter(notebook, path, find_chapters(solutions=solutions))
    master = master_notebook(chapter)
    if repair_metadata(notebook, master):
        raw = nbformat.writes(notebook).encode("utf-8")
    with temp_course() as course:
        if timeout is not None:
            course.config.ExecutePreprocessor.timeout = timeout
        course.add_master(chapter.name, master)
        course.add_submission(chapter.name, raw)
        graded_path = course.autograde(chapter.name, env=GRADER_ENV)
        report = make_report(chapter.name, course.scores(chapter.name), nbformat.read(graded_path, as_version=4))
        if html is not None:
            feedback = course.generate_feedback(chapter.name)
            Path(html).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(feedback, html)
    return report


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    return path.read_bytes()


def _parse(raw: bytes, path: Path) -> NotebookNode:
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a notebook (the file is not valid notebook JSON: {err})") from err
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as err:  # nbformat raises several types for JSON that is not a notebook
        raise UserError(f"{path}: not a Jupyter notebook ({type(err).__name__})") from err


def grade_ids(notebook: NotebookNode) -> list[str]:
    """The nbgrader grade ids of ``notebook``'s cells, in order."""
    ids = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and meta.get("grade_id"):
            ids.append(str(meta["grade_id"]))
    return ids


def identify_chapter(notebook: NotebookNode, path: Path, chapters: list[Chapter]) -> Chapter:
    """The chapter whose exercises ``notebook`` holds; it must match its file name and metadata.

    The match counts grade ids shared with each chapter's master copy, ignoring ids every chapter
    has (such as ``setup``).
    """
    if not chapters:
        raise UserError("no chapter sources found in solutions/: nothing to grade against")
    masters = {chapter.name: set(grade_ids(master_notebook(chapter))) for chapter in chapters}
    common = set.intersection(*masters.values()) if len(masters) > 1 else set()
    submitted = set(grade_ids(notebook))
    overlap = {name: len((ids - common) & submitted) for name, ids in masters.items()}
    best = max(overlap, key=lambda name: overlap[name])
    if overlap[best] == 0:
        raise UserError(f"{path}: not a notebook of this course (none of its cells belongs to a chapter)")
    claimed = {
        "file name": path.stem if CHAPTER_NAME.match(path.stem) and path.stem in masters else None,
        "metadata": notebook.metadata.get("xattn", {}).get("chapter"),
    }
    for source, name in claimed.items():
        if name is not None and name != best:
            raise UserError(f"{path}: its {source} says chapter {name}, but its exercises are those of {best}")
    return next(chapter for chapter in chapters if chapter.name == best)


def repair_metadata(notebook: NotebookNode, master: NotebookNode) -> bool:
    """Fix nbgrader cell metadata that would make nbgrader abort; True if anything changed.

    A cell whose metadata is incomplete or from an old nbgrader (e.g. ``{}``, no ``schema_version``)
    gets the master's metadata for its grade id, or loses it if the id is unknown; autograde then
    restores or re-inserts the master's cells as usual. A grade id that appears again (a copied cell)
    is taken off the later copies, which become ordinary cells: nbgrader 0.9.6 would otherwise fail the
    whole submission (``KeyError: 'grade_id'`` in ``OverwriteCells``).
    """
    from nbgrader.nbgraderformat import MetadataValidator, SchemaTooOldError, ValidationError

    validator = MetadataValidator()
    known = {cell.metadata["nbgrader"]["grade_id"]: cell.metadata["nbgrader"] for cell in master.cells if _has_id(cell)}
    changed = False
    for cell in notebook.cells:
        if "nbgrader" not in cell.get("metadata", {}):
            continue
        try:
            validator.validate_cell(cell)
            continue
        except (SchemaTooOldError, ValidationError, KeyError, TypeError, AttributeError):
            pass
        meta = cell.metadata["nbgrader"]
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if grade_id in known:
            cell.metadata["nbgrader"] = nbformat.from_dict(dict(known[grade_id]))
        else:
            del cell.metadata["nbgrader"]
        changed = True
    seen = set()
    for cell in notebook.cells:
        if _has_id(cell):
            if cell.metadata["nbgrader"]["grade_id"] in seen:
                del cell.metadata["nbgrader"]
                changed = True
            else:
                seen.add(cell.metadata["nbgrader"]["grade_id"])
    return changed


def _has_id(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader")
    return isinstance(meta, dict) and bool(meta.get("grade_id"))


def make_report(chapter: str, scores: dict[str, tuple[float, float]], graded: NotebookNode) -> GradeReport:
    """The report of one autograded notebook: gradebook ``scores`` plus reasons read from its outputs."""
    cells = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in graded.cells if _is_graded(cell)}
    order = [grade_id for grade_id in cells if grade_id in scores]
    order += [grade_id for grade_id in scores if grade_id not in cells]
    exercises = []
    for grade_id in order:
        score, max_score = scores[grade_id]
        reason = "" if score >= max_score else failure_reason(cells.get(grade_id))
        exercises.append(ExerciseResult(grade_id, score, max_score, reason))
    return GradeReport(
        chapter=chapter,
        score=sum(e.score for e in exercises),
        max_score=sum(e.max_score for e in exercises),
        exercises=tuple(exercises),
    )


def _is_graded(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and cell.cell_type == "code"


def failure_reason(cell: NotebookNode | None) -> str:
    """One line telling a student why a graded cell lost its points."""
    if cell is None:
        return "the test cell is missing from the graded notebook"
    outputs = cell.get("outputs", [])
    errors = [output for output in outputs if output.get("output_type") == "error"]
    if any(e.get("ename") in ("CellTimeoutError", "KeyboardInterrupt") for e in errors):
        return "cell timed out"  # nbgrader interrupts the kernel when a cell runs past the timeout
    for output in errors:
        name = output.get("ename", "")
        if name == "NotImplementedError":
            return "not implemented yet"
        message = [line for line in str(output.get("evalue", "")).splitlines() if line.strip()]
        if name == "AssertionError":
            return message[-1].strip() if message else "a test failed (AssertionError without a message)"
        return error_line({"ename": name, "evalue": message[-1] if message else ""})
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            first = next((line for line in output.get("text", "").splitlines() if line.strip()), "")
            return f"the cell wrote to stderr, which scores 0: {first.strip()}"
    return "the tests did not pass"
