"""Helpers for grading-outcome tests: make notebook variants from a chapter source and grade them.

Typical use in ``tests/chapters/<chapter>/test_checks.py``::

    nb = solution_notebook("01_library_lookup")
    broken = replace_solution(nb, "relevance_solution", "return query @ keys")  # forgot the scale
    scores = grade_scores(broken, "01_library_lookup", tmp_path)
    assert scores["relevance_tests"] == 0
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.grader.build import find_chapters, master_notebook, notebook_bytes, release_notebooks
from xattn_edu.grader.report import GradeReport
from xattn_edu.grader.selfgrade import grade_notebook

FIXTURE_SOLUTIONS = Path(__file__).parent / "fixtures" / "solutions"
"""Two tiny chapters the pipeline tests use (00_fixture, 01_fixture_two)."""

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def solution_notebook(chapter: str, solutions: Path | None = None) -> NotebookNode:
    """The master notebook of ``chapter`` (solutions and hidden tests), as a student with full marks."""
    return master_notebook(find_chapters([chapter], solutions)[0])


def release_notebook(chapter: str, solutions: Path | None = None) -> NotebookNode:
    """The student release of ``chapter``, built fresh (stubs, no hidden tests)."""
    content = release_notebooks({chapter: solution_notebook(chapter, solutions)})[chapter]
    return nbformat.reads(content.decode("utf-8"), as_version=4)


def cell_by_id(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    """The cell whose nbgrader ``grade_id`` is ``grade_id``."""
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(f"no cell with grade_id {grade_id!r}")


def replace_solution(notebook: NotebookNode, grade_id: str, code: str) -> NotebookNode:
    """A copy of ``notebook`` where the solution region of cell ``grade_id`` is ``code``.

    ``code`` is written without indentation; it is indented like the ``### BEGIN SOLUTION`` line.
    Works on the solution notebook (markers present) and on the release (the stub
    ``raise NotImplementedError()`` is replaced).
    """
    result = copy.deepcopy(notebook)
    cell = cell_by_id(result, grade_id)
    lines = cell.source.split("\n")
    if any(BEGIN in line for line in lines):
        start = next(i for i, line in enumerate(lines) if BEGIN in line)
        stop = next(i for i, line in enumerate(lines) if END in line)
    else:
        start = next(i for i, line in enumerate(lines) if "YOUR CODE HERE" in line)
        stop = next(i for i, line in enumerate(lines) if "raise NotImplementedError()" in line)
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    body = textwrap.indent(textwrap.dedent(code).strip("\n"), indent).split("\n")
    cell.source = "\n".join(lines[:start] + body + lines[stop + 1 :])
    return result


def replace_cell(notebook: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    """A copy of ``notebook`` where cell ``grade_id`` has the source ``source``."""
    result = copy.deepcopy(notebook)
    cell_by_id(result, grade_id).source = source
    return result


def delete_cell(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    """A copy of ``notebook`` without cell ``grade_id``."""
    result = copy.deepcopy(notebook)
    result.cells = [c for c in result.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id]
    return result


def write_notebook(notebook: NotebookNode, path: Path) -> Path:
    """Save ``notebook`` at ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(notebook_bytes(notebook))
    return path


def grade(
    notebook: NotebookNode, chapter: str, tmp_path: Path, *, solutions: Path | None = None, **kwargs
) -> GradeReport:
    """Save ``notebook`` as ``tmp_path/<chapter>.ipynb`` and self-grade it (kwargs go to grade_notebook)."""
    path = write_notebook(notebook, tmp_path / f"{chapter}.ipynb")
    return grade_notebook(path, solutions=solutions, **kwargs)


def grade_scores(notebook: NotebookNode, chapter: str, tmp_path: Path, *, solutions: Path | None = None) -> dict:
    """``{grade_id: score}`` of ``notebook`` graded against ``chapter``'s hidden tests."""
    report = grade(notebook, chapter, tmp_path, solutions=solutions)
    return {exercise.grade_id: exercise.score for exercise in report.exercises}


def points_of(chapter: str, solutions: Path | None = None) -> dict[str, float]:
    """``{grade_id: points}`` of every graded cell in ``chapter``'s source, in notebook order."""
    cells = solution_notebook(chapter, solutions).cells
    return {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"]
            for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
