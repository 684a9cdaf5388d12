"""nbgrader cell metadata: what makes it valid, read in one place.

nbgrader keeps its grading instructions in each cell's ``metadata.nbgrader`` (``grade``, ``grade_id``,
``locked``, ``points``, ``solution``, ``task``, ``schema_version``). Metadata that nbgrader's own
validator refuses aborts a whole nbgrader run, and a grade id that appears twice makes nbgrader 0.9.6
fail the whole submission (``KeyError: 'grade_id'`` in ``OverwriteCells``). :func:`problems` finds
both, so that

* the build refuses a chapter source with the cell's place in it (:func:`check_source`), and
* self-grading repairs a student's copy instead of failing it (:func:`repair`).

The readers (:func:`grade_id`, :func:`grade_ids`, :func:`is_graded`, :func:`exercises`) are the one
definition of "a graded cell" that the build, the self-grader and the class grader share.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError

_OLD_SCHEMA = (
    'nbgrader metadata lacks "schema_version": 3; write the full metadata '
    "(grade, grade_id, locked, solution, task, schema_version; nbgrader={} is not enough)"
)


@dataclass(frozen=True)
class Problem:
    """Cell metadata that nbgrader would not accept."""

    index: int  # position of the cell in the notebook
    grade_id: str | None  # the grade id the cell claims, if it names one
    duplicate: bool  # True: valid metadata whose grade id an earlier cell already has
    message: str  # one line saying what is wrong


def nbgrader_meta(cell: NotebookNode) -> dict:
    """The cell's ``metadata.nbgrader`` when it is a JSON object, else ``{}``."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader grade id, or None when it has none."""
    value = nbgrader_meta(cell).get("grade_id")
    return str(value) if value else None


def grade_ids(notebook: NotebookNode) -> list[str]:
    """The nbgrader grade ids of ``notebook``'s cells, in order."""
    return [value for value in map(grade_id, notebook.cells) if value is not None]


def is_graded(cell: NotebookNode) -> bool:
    """Whether nbgrader scores the cell: a code cell marked ``grade`` (an autograded test cell)."""
    return bool(nbgrader_meta(cell).get("grade")) and cell.get("cell_type") == "code"


def exercises(notebook: NotebookNode) -> tuple[tuple[str, float], ...]:
    """``(grade_id, points)`` of every graded cell of ``notebook``, in notebook order."""
    return tuple(
        (str(nbgrader_meta(cell)["grade_id"]), float(nbgrader_meta(cell).get("points", 0)))
        for cell in notebook.cells
        if is_graded(cell)
    )


@cache
def _validator():
    from nbgrader.nbgraderformat import MetadataValidator

    return MetadataValidator()


def cell_problem(cell: NotebookNode) -> str | None:
    """Why nbgrader would refuse the cell's own metadata (one line), or None when it accepts it."""
    from nbgrader.nbgraderformat import SchemaTooNewError, SchemaTooOldError, ValidationError

    if "nbgrader" not in cell.get("metadata", {}):
        return None
    if not isinstance(cell.metadata["nbgrader"], dict):
        return "nbgrader metadata must be a JSON object"
    try:
        _validator().validate_cell(cell)
    except SchemaTooOldError:
        return _OLD_SCHEMA
    except SchemaTooNewError as err:
        return f"nbgrader metadata from a newer nbgrader: {err}"
    except ValidationError as err:
        return f"invalid nbgrader metadata: {err.message}"
    except (KeyError, TypeError, AttributeError) as err:  # the validator indexes fields the schema may lack
        return f"invalid nbgrader metadata ({type(err).__name__}: {err})"
    return None


def problems(notebook: NotebookNode) -> list[Problem]:
    """Every cell of ``notebook`` whose nbgrader metadata is invalid or repeats an earlier grade id."""
    found, seen = [], set()
    for index, cell in enumerate(notebook.cells):
        message = cell_problem(cell)
        claimed = grade_id(cell)
        if message is not None:
            found.append(Problem(index, claimed, False, message))
        elif claimed is not None and claimed in seen:
            found.append(Problem(index, claimed, True, f"grade id {claimed!r} appears in an earlier cell too"))
        elif claimed is not None:
            seen.add(claimed)
    return found


def check_source(notebook: NotebookNode, source: Path) -> None:
    """Refuse a chapter source whose nbgrader metadata nbgrader would not accept.

    Raises:
        UserError: naming ``source``, the cell's index and first line, and what is wrong.
    """
    for problem in problems(notebook):
        first_line = notebook.cells[problem.index].source.strip().split("\n", 1)[0][:60]
        raise UserError(f"{source}, cell {problem.index} ({first_line!r}): {problem.message}")


def repair(notebook: NotebookNode, master: NotebookNode) -> bool:
    """Fix, in place, the nbgrader metadata of a submission so that nbgrader grades it; True if anything changed.

    A cell with invalid metadata (``{}``, an old schema, a missing field) gets the master's metadata
    for its grade id, or loses its metadata when the id is unknown; autograde then restores or
    re-inserts the master's cells as usual. A later cell repeating a grade id (a copied cell) loses
    its metadata and becomes an ordinary cell.
    """
    known = {grade_id(cell): nbgrader_meta(cell) for cell in master.cells if grade_id(cell)}
    invalid = [problem for problem in problems(notebook) if not problem.duplicate]
    for problem in invalid:
        cell = notebook.cells[problem.index]
        if problem.grade_id in known:
            cell.metadata["nbgrader"] = nbformat.from_dict(dict(known[problem.grade_id]))
        else:
            del cell.metadata["nbgrader"]
    duplicates = [problem for problem in problems(notebook) if problem.duplicate]  # after the restores above
    for problem in duplicates:
        del notebook.cells[problem.index].metadata["nbgrader"]
    return bool(invalid or duplicates)
