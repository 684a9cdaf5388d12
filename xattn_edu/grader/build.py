"""The course build: one source of truth per chapter.

``solutions/NN_slug.py`` (jupytext percent format, nbgrader cell metadata) is the instructor source:
solutions, visible tests and hidden tests. The build converts it to a notebook (the *master* copy),
runs nbgrader ``generate_assignment`` on it in a throwaway course, and writes the student release
``course/NN_slug/NN_slug.ipynb``: solution code replaced by stubs, hidden tests removed, outputs
stripped. Everything volatile is normalized (cell ids, notebook and cell metadata, JSON layout), so
building twice gives byte-identical files and a test can compare a fresh build with ``course/``.

The self-grader uses :func:`master_notebook` too, so grading always runs against the same master.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError
from xattn_edu.common.paths import repo_root

CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
"""A chapter is named ``NN_slug`` (two digits, lower-case slug)."""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
_CELL_METADATA_KEPT = ("nbgrader", "deletable", "editable", "tags", "jupyter", "slideshow")
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RAISES_TAG = "raises-exception"
"""Tag on every graded test cell: JupyterLab's Run All goes on past a test that fails (an exercise not done yet)."""


@dataclass(frozen=True)
class Chapter:
    """One chapter of the course."""

    name: str  # "NN_slug", e.g. "01_library_lookup": assignment and notebook name
    source: Path  # its instructor source, solutions/NN_slug.py


def solutions_dir() -> Path:
    """The repository's ``solutions/`` folder (the build and the grader need a checkout)."""
    root = repo_root()
    if root is None:
        raise UserError("solutions/ not found: run xattn from a checkout of the course repository")
    return root / "solutions"


def find_chapters(names: Sequence[str] = (), solutions: Path | None = None) -> list[Chapter]:
    """The chapters in ``solutions`` (default: the repository's), sorted; only ``names`` if given."""
    folder = solutions if solutions is not None else solutions_dir()
    found = {p.stem: Chapter(p.stem, p) for p in sorted(folder.glob("*.py")) if CHAPTER_NAME.match(p.stem)}
    if not names:
        return list(found.values())
    unknown = [name for name in names if name not in found]
    if unknown:
        known = ", ".join(found) or "none"
        raise UserError(f"no chapter named {', '.join(unknown)} in {folder} (chapters: {known})")
    return [found[name] for name in names]


def master_notebook(chapter: Chapter) -> NotebookNode:
    """The instructor notebook of ``chapter`` (solutions and hidden tests), normalized."""
    import jupytext

    try:
        notebook = jupytext.read(chapter.source, fmt="py:percent")
    except Exception as err:  # jupytext reports malformed headers/metadata in many ways
        raise UserError(f"cannot read {chapter.source}: {err}") from err
    _check_nbgrader_metadata(notebook, chapter.source)
    return normalize(notebook, chapter.name)


def _check_nbgrader_metadata(notebook: NotebookNode, source: Path) -> None:
    """Fail with the cell's place in ``source`` when its nbgrader metadata would abort nbgrader."""
    from nbgrader.nbgraderformat import MetadataValidator, SchemaTooOldError, ValidationError

    validator = MetadataValidator()
    for index, cell in enumerate(notebook.cells):
        if "nbgrader" not in cell.metadata:
            continue
        first_line = cell.source.strip().split("\n", 1)[0][:60]
        where = f"{source}, cell {index} ({first_line!r})"
        if not isinstance(cell.metadata["nbgrader"], dict):
            raise UserError(f"{where}: nbgrader metadata must be a JSON object")
        try:
            validator.validate_cell(cell)
        except SchemaTooOldError as err:
            raise UserError(
                f'{where}: nbgrader metadata lacks "schema_version": 3; write the full metadata '
                "(grade, grade_id, locked, solution, task, schema_version; nbgrader={} is not enough)"
            ) from err
        except ValidationError as err:
            raise UserError(f"{where}: invalid nbgrader metadata: {err}") from err


def _is_test_cell(metadata: dict) -> bool:
    meta = metadata.get("nbgrader", {})
    return isinstance(meta, dict) and bool(meta.get("grade")) and not meta.get("solution")


def normalize(notebook: NotebookNode, chapter_name: str) -> NotebookNode:
    """Make ``notebook`` deterministic: fixed notebook metadata, cell ids, cell metadata, no outputs.

    Cell ids are the nbgrader ``grade_id`` where there is one, else ``cell-<index>``. Only Jupyter's
    own cell metadata survives (jupytext's layout hints are dropped). Graded test cells get the
    ``raises-exception`` tag, so Run All reaches the end of a notebook whose exercises are not done yet.
    ``metadata.xattn.chapter`` names the chapter so the grader can tell chapters apart.
    """
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}, "xattn": {"chapter": chapter_name}}
    )
    for index, cell in enumerate(notebook.cells):
        kept = {key: cell.metadata[key] for key in _CELL_METADATA_KEPT if key in cell.metadata}
        if _is_test_cell(kept) and RAISES_TAG not in kept.get("tags", []):
            kept["tags"] = [*kept.get("tags", []), RAISES_TAG]
        cell.metadata = nbformat.from_dict(kept)
        grade_id = str(kept.get("nbgrader", {}).get("grade_id", ""))
        cell.id = grade_id if _CELL_ID.match(grade_id) else f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None)
    return notebook


def notebook_bytes(notebook: NotebookNode) -> bytes:
    """The file content of ``notebook``: sorted keys, indent 1, UTF-8, one trailing newline."""
    text = nbformat.writes(notebook, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def release_notebooks(chapters: Sequence[Chapter]) -> dict[str, bytes]:
    """``{chapter name: release notebook bytes}``, each made by nbgrader ``generate_assignment``."""
    from xattn_edu.grader.course import temp_course

    releases = {}
    with temp_course() as course:
        for chapter in chapters:
            course.add_source(chapter.name, master_notebook(chapter))
            release = course.generate_assignment(chapter.name)
            releases[chapter.name] = notebook_bytes(normalize(release, chapter.name))
    return releases


def build(
    names: Sequence[str] = (),
    out_dir: Path | None = None,
    *,
    solutions: Path | None = None,
    nbgrader_source: Path | None = None,
) -> list[Path]:
    """Build the student release of each chapter (all by default) into ``out_dir`` (default ``course/``).

    With ``nbgrader_source``, also write each master notebook to ``<nbgrader_source>/NN_slug/NN_slug.ipynb``
    for instructors who run nbgrader themselves. Returns the written release paths.
    """
    chapters = find_chapters(names, solutions)
    if not chapters:
        raise UserError("no chapters to build: solutions/ has no NN_slug.py sources yet")
    if out_dir is None:
        root = repo_root()
        if root is None:
            raise UserError("give --out DIR: there is no repository checkout to write course/ into")
        out_dir = root / "course"
    written = []
    for name, content in release_notebooks(chapters).items():
        path = Path(out_dir) / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    if nbgrader_source is not None:
        for chapter in chapters:
            path = Path(nbgrader_source) / chapter.name / f"{chapter.name}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(notebook_bytes(master_notebook(chapter)))
    return written
