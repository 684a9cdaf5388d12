"""The course build: one source of truth per chapter.

``solutions/NN_slug.py`` (jupytext percent format, nbgrader cell metadata) is the instructor source:
solutions, visible tests and hidden tests. The build converts it to a notebook (the *master* copy),
runs nbgrader ``generate_assignment`` on it in a throwaway course, and writes the student release
``course/NN_slug/NN_slug.ipynb``: solution code replaced by stubs, hidden tests removed, outputs
stripped. Everything volatile is normalized (cell ids, notebook and cell metadata, JSON layout), so
building twice gives byte-identical files and a test can compare a fresh build with ``course/``.

Grading reads the same master through :func:`xattn_edu.grader.master.load_master`, so it always runs
against what the release was made from; :mod:`xattn_edu.grader.metadata` checks the source's nbgrader metadata.

Everything is relative to the course root (:mod:`xattn_edu.grader.settings`): the sources are its
``solutions/``, the release goes to its ``course/``. The build also writes two kinds of masters:

* for instructors who run nbgrader themselves, ``source/NN_slug/NN_slug.ipynb``, headed by a note saying
  it is generated (:mod:`xattn_edu.grader.generated`); an edited one is not overwritten unless forced;
* the *grading masters* shipped in the package, ``xattn_edu/grader/masters/NN_slug.ipynb``: the master
  with the content of every solution region replaced by the stub students see (markers kept, hidden tests
  kept). ``generate_assignment`` gives the same release and gradebook from it as from the full master,
  so ``xattn grade`` grades from it where there is no ``solutions/`` and a student who can self-grade
  does not hold the answers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import write_atomic
from xattn_edu.grader.generated import edited_since_generated, generated_master
from xattn_edu.grader.metadata import check_source, grade_id, nbgrader_meta
from xattn_edu.grader.settings import find_course_root

CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
"""A chapter is named ``NN_slug`` (two digits, lower-case slug)."""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
_CELL_METADATA_KEPT = ("nbgrader", "deletable", "editable", "tags", "jupyter", "slideshow")
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
GRADING_MASTERS = Path(__file__).resolve().parent / "masters"
"""The grading masters shipped with this package (no solution code; see the module docstring)."""
RAISES_TAG = "raises-exception"
"""Tag on every graded test cell: JupyterLab's Run All goes on past a test that fails (an exercise not done yet)."""


@dataclass(frozen=True)
class Chapter:
    """One chapter of the course."""

    name: str  # "NN_slug", e.g. "01_library_lookup": assignment and notebook name
    source: Path  # its master: the instructor source solutions/NN_slug.py, or a grading master NN_slug.ipynb


def solutions_dir(root: Path | None = None) -> Path:
    """The ``solutions/`` folder of ``root`` (default: the course root), which the build needs.

    Raises:
        UserError: there is no course root, or it has no ``solutions/``.
    """
    root = root if root is not None else find_course_root()
    if root is None:
        raise UserError("no course root here: no nbgrader_config.py in this folder or above it (give --course-root)")
    if not (root / "solutions").is_dir():
        raise UserError(f"the course root {root} has no solutions/ folder (the chapter sources)")
    return root / "solutions"


def masters_folder() -> Path:
    """Where graders read the chapters: the course root's ``solutions/`` where there is one, else the grading
    masters shipped with the package (:data:`GRADING_MASTERS`)."""
    root = find_course_root()
    return root / "solutions" if root is not None and (root / "solutions").is_dir() else GRADING_MASTERS


def find_chapters(names: Sequence[str] = (), solutions: Path | None = None) -> list[Chapter]:
    """The chapters in ``solutions`` (default: :func:`masters_folder`), sorted; only ``names`` if given.

    A chapter is ``NN_slug.py`` (a source) or ``NN_slug.ipynb`` (a grading master); the source wins.
    A name is a chapter's full name (``01_library_lookup``) or its number (``01`` or ``1``).
    """
    folder = solutions if solutions is not None else masters_folder()
    found: dict[str, Chapter] = {}
    for path in sorted(folder.glob("*.ipynb")) + sorted(folder.glob("*.py")):
        if CHAPTER_NAME.match(path.stem):
            found[path.stem] = Chapter(path.stem, path)
    found = dict(sorted(found.items()))
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
    """The master notebook of ``chapter`` (solutions, or stubs in a grading master, and hidden tests), normalized."""
    import jupytext

    try:
        if chapter.source.suffix == ".ipynb":
            notebook = nbformat.read(chapter.source, as_version=4)
        else:
            notebook = jupytext.read(chapter.source, fmt="py:percent")
    except Exception as err:  # jupytext and nbformat report malformed files in many ways
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


def grading_master(master: NotebookNode, settings) -> NotebookNode:
    """``master`` with the content of each solution region replaced by the stub students see, markers kept.

    ``settings``: the course settings (their ``ClearSolutions`` delimiters and stubs). A solution cell without
    markers becomes the stub as a whole, as nbgrader's ``ClearSolutions`` does with it.
    """
    clear = settings.ClearSolutions
    stubs = {"code": clear.code_stub["python"], "markdown": clear.text_stub}
    result = copy.deepcopy(master)
    for cell in result.cells:
        if nbgrader_meta(cell).get("solution") and cell.cell_type in stubs:
            cell.source = _stub_regions(cell.source, clear.begin_solution_delimeter, clear.end_solution_delimeter,
                                        stubs[cell.cell_type])  # fmt: skip
    return result


def _stub_regions(source: str, begin: str, end: str, stub: str) -> str:
    lines = source.split("\n")
    if not any(begin in line for line in lines):
        return stub
    kept, inside = [], False
    for line in lines:
        if begin in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            kept += [line, *(indent + stub_line for stub_line in stub.split("\n"))]
        elif end in line:
            inside = False
            kept.append(line)
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def grading_masters(masters: Mapping[str, NotebookNode]) -> dict[str, bytes]:
    """``{chapter name: grading master bytes}`` of ``{chapter name: master notebook}``."""
    from xattn_edu.grader.course import course_settings

    settings = course_settings()
    return {name: notebook_bytes(grading_master(master, settings)) for name, master in masters.items()}


def _shown(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies inside it (how the generated note names the source)."""
    try:
        return str(path.resolve().relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def _nbgrader_masters(chapters: Sequence[Chapter], masters: Mapping[str, NotebookNode], folder: Path,
                      force: bool) -> dict[Path, bytes]:  # fmt: skip
    """``{path: bytes}`` of the masters for nbgrader's ``source/``, each headed by its generated note.

    Raises:
        UserError: one of them was edited since the build wrote it (and ``force`` is not set).
    """
    root = find_course_root()
    files = {}
    for chapter in chapters:
        master = generated_master(masters[chapter.name], _shown(chapter.source, root))
        files[folder / chapter.name / f"{chapter.name}.ipynb"] = notebook_bytes(master)
    edited = [path for path, content in files.items()
              if path.is_file() and path.read_bytes() != content and edited_since_generated(path)]  # fmt: skip
    if edited and not force:
        names = ", ".join(str(path) for path in edited)
        raise UserError(f"{names}: edited since xattn build wrote it; make the edits in solutions/ (the next build "
                        "would lose them) or run xattn build --force to overwrite")
    return files


def build(
    names: Sequence[str] = (),
    out_dir: Path | None = None,
    *,
    solutions: Path | None = None,
    nbgrader_source: Path | None = None,
    grading_masters_dir: Path | None = None,
    force: bool = False,
) -> list[Path]:
    """Build the student release of each chapter (all by default) into ``out_dir`` (default: the course
    root's ``course/``), from ``solutions`` (default: the course root's ``solutions/``).

    With ``nbgrader_source``, also write each master, headed by its generated note, to
    ``<nbgrader_source>/NN_slug/NN_slug.ipynb`` for instructors who run nbgrader themselves; with
    ``grading_masters_dir``, each grading master to ``<grading_masters_dir>/NN_slug.ipynb``. Nothing is
    written unless every chapter is valid and no master in ``nbgrader_source`` was edited since the build
    wrote it (``force`` overwrites edited ones). Returns the written paths.

    Raises:
        UserError: no chapters, an invalid source, or an edited master in ``nbgrader_source``.
    """
    chapters = find_chapters(names, solutions if solutions is not None else solutions_dir())
    if not chapters:
        raise UserError("no chapters to build: solutions/ has no NN_slug.py sources yet")
    if out_dir is None:
        out_dir = solutions_dir().parent / "course"
    masters = {chapter.name: master_notebook(chapter) for chapter in chapters}  # all checked before any write
    files = {Path(out_dir) / name / f"{name}.ipynb": content for name, content in release_notebooks(masters).items()}
    if nbgrader_source is not None:
        files.update(_nbgrader_masters(chapters, masters, Path(nbgrader_source), force))
    if grading_masters_dir is not None:
        files.update({Path(grading_masters_dir) / f"{name}.ipynb": content
                      for name, content in grading_masters(masters).items()})  # fmt: skip
    for path, content in files.items():
        write_atomic(path, content)
    return list(files)
