"""JupyterLab started the way the README and the instructor guide start it: in the course root, with
nbgrader's extensions reading the course's nbgrader_config.py. Its kernels run the real experiments:
fast mode (``XATTN_FAST``) and the grading seed belong to grading kernels only.

No browser is needed: a kernel is started through the server's REST API, as JupyterLab starts one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from harness import LabServer

from xattn_edu.common.paths import repo_root
from xattn_edu.common.protocol import FAST_ENV, SEED_ENV

pytestmark = pytest.mark.timeout(300)
REPO = repo_root()
NOTEBOOK = "course/01_library_lookup/01_library_lookup.ipynb"


def test_kernels_of_a_lab_started_in_the_course_root_are_not_in_fast_mode(tmp_path: Path) -> None:
    root = tmp_path / "course-root"
    (root / Path(NOTEBOOK).parent).mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    # `jupyter lab course/01_library_lookup/01_library_lookup.ipynb`, from the course root (README)
    with LabServer(course_root=root, args=(NOTEBOOK,), env={FAST_ENV: None, SEED_ENV: None}) as server:
        assert "Manage Assignments" in server.get_page("/formgrader/manage_assignments")  # reads the course config
        checked = server.api("POST", "/assignments/validate", body={"path": NOTEBOOK}, timeout=240)  # so does Validate
        assert checked["success"], checked
        printed = server.run_in_new_kernel(
            f"import json, os; print(json.dumps([os.environ.get({FAST_ENV!r}), os.environ.get({SEED_ENV!r})]))")
    assert json.loads(printed) == [None, None], f"a student's kernel inherited grading settings: {printed}"
