"""The course through nbgrader's own buttons in JupyterLab: the instructor's Formgrader and the student's Validate.

One course root for the module, set up as docs/instructor.md says (the chapters built with
``xattn build --course-root ROOT --nbgrader-source source``, a student named in the gradebook), and one
JupyterLab started in it by its full path with a ``PATH`` that has no ``alembic`` (the environment not
activated), with nbgrader's extensions on:

* instructor: the Formgrader lists every chapter and shows its configuration (steps by name, not the
  ``[, , ]`` of class objects); Generate makes the student version; the release
  opened from it is not marked modified; a submission is autograded from the Formgrader, which shows
  the student's name and full marks;
* student: Validate on a release with one wrong exercise shows the one-line message written for
  students, with no grader traceback before it.

The server's kernels run in fast mode (``XATTN_FAST=1``), so that Validate takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from harness import _NOTEBOOK_READY_JS, LabServer

from tests.helpers.grading import replace_solution, solution_notebook
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import find_chapters

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
REPO = repo_root()
CHAPTERS = [chapter.name for chapter in find_chapters(solutions=REPO / "solutions")]
FIRST = CHAPTERS[0]
NO_ALEMBIC_PATH = "/usr/bin:/bin"
_HAS_FORMGRADER_JS = "() => !!window.jupyterapp && window.jupyterapp.commands.hasCommand('nbgrader:open-formgrader')"
_DIRTY_JS = "() => window.jupyterapp.shell.currentWidget.context.model.dirty"


def _xattn_env(root: Path) -> dict[str, str]:
    return {**os.environ, "PATH": NO_ALEMBIC_PATH, "PYTHONPATH": str(REPO), "JUPYTER_DATA_DIR": str(root / ".data"),
            "JUPYTER_CONFIG_DIR": str(root / ".config"), "OMP_NUM_THREADS": "1"}  # fmt: skip


@pytest.fixture(scope="module")
def course_lab(tmp_path_factory):
    """A course root with every chapter built for nbgrader and one named student, and a JupyterLab in it."""
    root = tmp_path_factory.mktemp("course-root")
    shutil.copytree(REPO / "solutions", root / "solutions")
    (root / "exchange").mkdir()
    config = (REPO / "nbgrader_config.py").read_text() + f"\nc.Exchange.root = {str(root / 'exchange')!r}\n"
    (root / "nbgrader_config.py").write_text(config)
    env = _xattn_env(root)
    for command in (["xattn_edu", "build", "--nbgrader-source", "source"],
                    ["nbgrader", "db", "student", "add", "alice", "--first-name=Alice", "--last-name=Liddell"]):
        subprocess.run([sys.executable, "-m", *command], cwd=root, env=env, check=True, capture_output=True,
                       timeout=600)  # fmt: skip
    server_env = {"PATH": NO_ALEMBIC_PATH, "XATTN_FAST": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "PYTHONPATH": str(REPO)}  # fmt: skip
    with LabServer(course_root=root, env=server_env) as server:
        yield server


@pytest.fixture
def tab(browser_context, course_lab, tmp_path, request):
    page = browser_context.new_page()
    page.set_default_timeout(60_000)
    yield page
    if getattr(request.node, "call_failed", False):
        page.screenshot(path=tmp_path / "failure.png", full_page=True)
        print(f"screenshot: {tmp_path / 'failure.png'}")
        print("server log (tail):", course_lab.log_tail(), sep="\n")
    page.close()
    course_lab.shutdown_kernels()


def _open_in_lab(page, server: LabServer, path: str) -> None:
    page.goto(server.lab_url(path))
    page.wait_for_function(_NOTEBOOK_READY_JS, arg=path, timeout=180_000, polling=200)


def _formgrader(page, server: LabServer):
    """The Formgrader, opened with JupyterLab's command (as nbgrader's menu does); returns its frame."""
    page.goto(f"{server.url}/lab?token={server.token}&reset")
    page.wait_for_function(_HAS_FORMGRADER_JS, timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('nbgrader:open-formgrader')")
    page.wait_for_selector("iframe", timeout=60_000)
    deadline = time.monotonic() + 60
    while True:  # the iframe can exist a moment before it has navigated to the Formgrader
        frame = next((frame for frame in page.frames if "/formgrader" in frame.url), None)
        if frame is not None:
            break
        assert time.monotonic() < deadline, f"no Formgrader frame after 60 s: {[f.url for f in page.frames]}"
        page.wait_for_timeout(200)
    frame.locator("#main-table tr td.name").first.wait_for(timeout=120_000)
    return frame


def _modal_text(frame, timeout_ms: float) -> str:
    modal = frame.locator(".modal-dialog").first
    modal.wait_for(timeout=timeout_ms)
    text = modal.inner_text()
    frame.locator(".modal-footer button").first.click()
    modal.wait_for(state="detached")
    return text


def test_instructor_generates_previews_and_autogrades_from_the_formgrader(tab, course_lab):
    frame = _formgrader(tab, course_lab)
    names = frame.locator("#main-table tr td.name").all_inner_texts()
    assert [name.strip() for name in names] == CHAPTERS  # the Formgrader lists the chapters (and loads at all)
    shown = json.loads(frame.locator("#collapseConfig pre").text_content())  # the configuration panel: JSON,
    assert "xattn_edu.grader.autograde.XattnExecute" in shown["Autograde"]["autograde_preprocessors"]  # not [, , ]

    frame.locator(f"#main-table tr:has-text('{FIRST}') td.assign a").click()
    assert "Successfully created the student version" in _modal_text(frame, 180_000)
    release = Path("release") / FIRST / f"{FIRST}.ipynb"
    assert (course_lab.root_dir / release).is_file()
    assert frame.locator(f"#main-table tr:has-text('{FIRST}') td.preview a").count() == 1

    # Preview: the release opens in JupyterLab unmodified (its kernel metadata is this environment's).
    _open_in_lab(tab, course_lab, str(release))
    time.sleep(2)  # JupyterLab writes the kernel's metadata into the model once it is connected
    assert tab.evaluate(_DIRTY_JS) is False, "the release shows as modified as soon as it is opened"

    # alice hands in a perfect notebook; the instructor autogrades it with the Formgrader's button.
    submitted = course_lab.root_dir / "submitted" / "alice" / FIRST
    submitted.mkdir(parents=True)
    nbformat.write(solution_notebook(FIRST, REPO / "solutions"), submitted / f"{FIRST}.ipynb")
    (submitted / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")
    frame = _formgrader(tab, course_lab)
    frame.goto(f"{course_lab.url}/formgrader/manage_submissions/{FIRST}")  # the chapter's submissions
    row = frame.locator("#main-table tr:has-text('alice')")
    row.locator("td.autograde a").click()
    assert "Successfully autograded" in _modal_text(frame, 600_000)
    assert row.locator("td.student-name").inner_text().strip() == "Liddell, Alice"  # not "None, None"
    score = row.locator("td.score").inner_text().strip()
    points, top = (float(part) for part in score.split("/"))
    assert points == top > 0, score


def test_student_validate_shows_the_one_line_message_first(tab, course_lab):
    release = nbformat.read(REPO / "course" / FIRST / f"{FIRST}.ipynb", as_version=4)
    wrong = replace_solution(release, "relevance_solution", "return keys @ query.T")  # transposed for a batch
    path = Path("work") / f"{FIRST}.ipynb"
    (course_lab.root_dir / path.parent).mkdir(exist_ok=True)
    nbformat.write(wrong, course_lab.root_dir / path)
    _open_in_lab(tab, course_lab, str(path))
    tab.locator(".jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).click()
    dialog = tab.locator(".jp-Dialog")
    dialog.wait_for(timeout=300_000)
    errors = dialog.locator(".validation-failed .jp-RenderedText pre").all_inner_texts()[1::2]  # (cell, error) pairs
    assert errors, dialog.inner_text()
    first = errors[0].strip()
    assert first.startswith("Wrong: ") and "\n" not in first, first
    assert "transposed" in first
    assert "Traceback" not in dialog.inner_text() and "File \"" not in dialog.inner_text()
