"""Every notebook runs top to bottom on CPU in fast mode.

* The instructor notebook of each chapter (from ``solutions/`` via jupytext) runs with no error.
* The student release in ``course/`` runs too; its only errors may be in solution cells and graded
  test cells (``NotImplementedError`` from the stubs; ``AssertionError``, or the checks' own ``NotDone``
  and ``Wrong``, from tests of unwritten code). Any other cell (setup, demos, plots, widgets,
  experiments) must run clean, so a student who has not finished an exercise can still read the rest
  of the chapter.

The fixture chapter is always included, so this machinery is tested even before chapters exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import nbformat
import pytest

from tests.helpers.grading import FIXTURE_SOLUTIONS
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import find_chapters, master_notebook

CELL_TIMEOUT_S = 300
NOTEBOOK_TIMEOUT_S = 600
ALLOWED_IN_EXERCISES = {"NotImplementedError", "AssertionError", "NotDone", "Wrong"}  # an unwritten exercise

SOURCES = [pytest.param(c, id=c.name) for c in find_chapters(solutions=FIXTURE_SOLUTIONS) + find_chapters()]
RELEASES = sorted((repo_root() / "course").glob("*/*.ipynb"))


def _execute(notebook: nbformat.NotebookNode, workdir: Path, allow_errors: bool) -> nbformat.NotebookNode:
    """Run ``notebook`` in a fresh kernel that sees XATTN_FAST=1 and OMP_NUM_THREADS=1."""
    from nbclient import NotebookClient

    env = {"XATTN_FAST": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"}
    with mock.patch.dict(os.environ, env):  # the kernel inherits this process's environment
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            allow_errors=allow_errors,
            resources={"metadata": {"path": str(workdir)}},
        )
        return client.execute()


def _errors(cell) -> list[str]:
    return [o["ename"] for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _describe(index: int, cell) -> str:
    first = cell.source.strip().split("\n", 1)[0][:70]
    return f"cell {index} ({first!r})"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("chapter", SOURCES)
def test_solution_notebook_runs_clean(chapter, tmp_path):
    executed = _execute(master_notebook(chapter), tmp_path, allow_errors=True)
    failures = [f"{_describe(i, c)}: {_errors(c)}" for i, c in enumerate(executed.cells) if _errors(c)]
    assert not failures, f"{chapter.name} solution notebook raised: {failures}"
    stderr = [
        _describe(i, c)
        for i, c in enumerate(executed.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
        and any(o.get("name") == "stderr" for o in c.get("outputs", []))
    ]
    assert not stderr, f"graded cells wrote to stderr (nbgrader scores that 0): {stderr}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", RELEASES, ids=[p.parent.name for p in RELEASES])
def test_release_notebook_runs_with_errors_only_in_exercises(path, tmp_path):
    executed = _execute(nbformat.read(path, as_version=4), tmp_path, allow_errors=True)
    _assert_errors_only_in_exercises(executed, path.parent.name)


def test_fixture_release_errors_only_in_exercises(tmp_path):
    from tests.helpers.grading import release_notebook

    executed = _execute(release_notebook("00_fixture", FIXTURE_SOLUTIONS), tmp_path, allow_errors=True)
    errors = {c.metadata["nbgrader"]["grade_id"]: _errors(c) for c in executed.cells if _errors(c)}
    assert errors == {"add_tests": ["NotImplementedError"], "norm_tests": ["NotImplementedError"]}
    _assert_errors_only_in_exercises(executed, "00_fixture")


def _assert_errors_only_in_exercises(executed: nbformat.NotebookNode, name: str) -> None:
    bad = []
    for index, cell in enumerate(executed.cells):
        names = _errors(cell)
        if not names:
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        exercise = meta.get("solution") or meta.get("grade")
        if not exercise or set(names) - ALLOWED_IN_EXERCISES:
            bad.append(f"{_describe(index, cell)}: {names}")
    assert not bad, f"{name}: cells outside the exercises must run clean in the release: {bad}"
