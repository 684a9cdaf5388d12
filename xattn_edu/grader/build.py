"""The course build: one source of truth per chapter.

``solutions/NN_slug.py`` (jupytext percent format, nbgrader cell metadata) is the instructor source:
solutions, visible tests and hidden tests. The build converts it to a notebook (the *master* copy),
runs nbgrader ``generate_assignment`` on it in a throwaway course, and writes the student release
``course/NN_slug/NN_slug.ipynb``: solution code replaced by stubs, hidden tests removed, outputs
stripped. Everything volatile is normalized (cell ids, notebook and cell metadata, JSON layout), so
building twice gives byte-identical files and a test can compare a fresh build with ``course/``.

Grading reads the same master through :func:`xattn_edu.grader.master.load_master`, so it always runs
against what the release was made from; :mod:`xattn_edu.grader.metadata` checks the source's nbgrader metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import write_atomic
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.metadata import check_source, grade_id

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
    """The chapters in ``solutions`` (default: the repository's), sorted; only ``names`` if given.

    A name is a chapter's full name (``01_library_lookup``) or its number (``01`` or ``1``).
    """
    folder = solutions if solutions is not None else solutions_dir()
    found = {p.stem: Chapter(p.stem, p) for p in sorted(folder.glob("*.py")) if CHAPTER_NAME.match(p.stem)}
    if not names:
        return list(found.values())
    numbered = {int(name[:2]): chapter for name, chapter in found.items()}
    chosen = [found.get(name) or (numbered.get(int(name)) if name.isdigit() else None) for name in names]
    unknown = [name for name, chapter in zip(names, chosen, strict=True) if chapter is None]
    if unknown:
        known = ", ".join(found) or "none"
        raise UserError(f"no chapter named {', '.join(unknown)} in {folder} (chapters: {known})")
    return chosen


def master_notebook(chapter: Chapter) -> NotebookNode:
    """The instructor notebook of ``chapter`` (solutions and hidden tests), normalized."""
    import jupytext

    try:
        notebook = jupytext.read(chapter.source, fmt="py:percent")
    except Exception as err:  # jupytext reports malformed headers/metadata in many ways
        raise UserError(f"cannot read {chapter.source}: {err}") from err
    check_source(notebook, chapter.source)
    return normalize(notebook, chapter.name)


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
        cell_id = grade_id(cell) or ""
        cell.id = cell_id if _CELL_ID.match(cell_id) else f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None)
    return notebook


def notebook_bytes(notebook: NotebookNode) -> bytes:
    """The file content of ``notebook``: sorted keys, indent 1, UTF-8, one trailing newline."""
    text = nbformat.writes(notebook, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def release_notebooks(masters: Mapping[str, NotebookNode]) -> dict[str, bytes]:
    """``{chapter name: release notebook bytes}`` of ``{chapter name: master notebook}``, made by nbgrader
    ``generate_assignment``."""
    from xattn_edu.grader.course import temp_course

    releases = {}
    with temp_course() as course:
        for name, master in masters.items():
            course.add_source(name, master)
            releases[name] = notebook_bytes(normalize(course.generate_assignment(name), name))
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
    masters = {chapter.name: master_notebook(chapter) for chapter in chapters}  # all checked before any write
    written = []
    for name, content in release_notebooks(masters).items():
        path = Path(out_dir) / name / f"{name}.ipynb"
        write_atomic(path, content)
        written.append(path)
    if nbgrader_source is not None:
        for name, master in masters.items():
            write_atomic(Path(nbgrader_source) / name / f"{name}.ipynb", notebook_bytes(master))
    return written
