"""Run All on an untouched student release goes to the end in JupyterLab (issue 13).

For each chapter's release in ``course/``, opened as a student opens it: JupyterLab's *Run All* must
execute every code cell (none left unexecuted below an unfinished exercise), the only errors must sit
in exercise cells (nbgrader solution or test cells, which the build tags ``raises-exception``), and each
test cell's error must be one of the checks' one-line verdicts (``NotDone`` for an exercise not written
yet) rather than a traceback through the grading modules; an answer cell may raise its own stub's
``NotImplementedError`` (a traceback of the student's own cell, two lines).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from harness import open_and_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

COURSE = Path(__file__).resolve().parents[2] / "course"
RELEASES = sorted(COURSE.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))
ONE_LINE_VERDICTS = ("NotDone", "Wrong")


def _exercise_cells(path: Path) -> tuple[set[int], set[int]]:
    """Indices of the cells nbgrader grades (test cells) and of those the student writes (answer cells)."""
    notebook = nbformat.read(path, as_version=4)
    meta = [cell.get("metadata", {}).get("nbgrader", {}) for cell in notebook.cells]
    return ({index for index, m in enumerate(meta) if m.get("grade") and not m.get("solution")},
            {index for index, m in enumerate(meta) if m.get("solution")})  # fmt: skip


@pytest.mark.parametrize("release", RELEASES, ids=[path.stem for path in RELEASES])
def test_run_all_reaches_the_end_of_an_untouched_release(release: Path, lab_page, lab_server) -> None:
    report = open_and_run(lab_page, lab_server, release, timeout_s=240)
    assert report.unexecuted == [], (f"{release.name}: Run All stopped; cells never ran: {report.unexecuted}; "
                                     f"errors: {report.errors}")
    tests, answers = _exercise_cells(release)
    errors = [(cell["index"], error) for cell in report.cells for error in cell["errors"]]
    assert errors, f"{release.name}: an untouched release should fail its exercises' tests"
    outside = [(index, error) for index, error in errors if index not in tests | answers]
    assert outside == [], f"{release.name}: errors outside exercise cells: {outside}"
    not_one_line = [(index, error) for index, error in errors
                    if not error.startswith(ONE_LINE_VERDICTS if index in tests else "NotImplementedError")]
    assert not_one_line == [], f"{release.name}: errors that are not the checks' one-line verdicts: {not_one_line}"
