"""The course settings (grader.settings), the course root, and the nbgrader workarounds (grader.nbgrader_fixes)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from xattn_edu.common.errors import UserError
from xattn_edu.common.paths import repo_root
from xattn_edu.common.protocol import FAST_ENV
from xattn_edu.grader import nbgrader_fixes
from xattn_edu.grader.settings import (
    COURSE_ROOT_ENV,
    course_config,
    find_course_root,
    load_settings,
    pin_course_root,
    settings_bytes,
)

REPO = repo_root()


def _steps(config: Config) -> list[str]:
    return [*config.GenerateAssignment.preprocessors, *config.Autograde.autograde_preprocessors,
            *config.GenerateFeedback.preprocessors]  # fmt: skip


def test_the_settings_are_plain_json_and_name_importable_steps():
    config = load_settings(REPO)
    json.dumps(config)  # what the Formgrader's configuration panel does (class objects make it "not serializable")
    steps = _steps(config)
    assert steps and all(isinstance(step, str) for step in steps)
    for step in steps:
        assert isinstance(import_item(step), type), step
    assert config.CourseDirectory.root == str(REPO)
    assert "xattn_edu.grader.autograde.XattnExecute" in config.Autograde.autograde_preprocessors


def test_reading_the_course_config_sets_no_environment_variable(monkeypatch):
    monkeypatch.delenv(FAST_ENV, raising=False)
    before = dict(os.environ)
    load_settings(REPO)
    assert dict(os.environ) == before, "nbgrader_config.py changed the environment of the process that read it"
    assert FAST_ENV not in os.environ


def test_the_course_root_is_found_upward_pinned_or_absent(tmp_path, monkeypatch):
    monkeypatch.setenv(COURSE_ROOT_ENV, "")  # unset, and restored after the test (pin_course_root sets it)
    (tmp_path / "course" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "course" / "nbgrader_config.py").write_text("c = get_config()\nc.ExecutePreprocessor.timeout = 7\n")
    assert find_course_root(tmp_path / "course" / "deep" / "er") == (tmp_path / "course").resolve()
    assert find_course_root(tmp_path) is None
    settings = load_settings(find_course_root(tmp_path / "course"))
    assert settings.ExecutePreprocessor.timeout == 7  # the root's file is read on top of the defaults...
    assert settings.ClearSolutions.code_stub == course_config().ClearSolutions.code_stub  # ...which stay
    assert settings_bytes(settings) != settings_bytes(course_config())

    monkeypatch.chdir(tmp_path)
    assert pin_course_root(tmp_path / "course") == (tmp_path / "course").resolve()
    assert os.environ[COURSE_ROOT_ENV] == str((tmp_path / "course").resolve())  # grading workers inherit it
    assert find_course_root() == (tmp_path / "course").resolve()
    with pytest.raises(UserError, match="not a course root"):
        pin_course_root(tmp_path)


def test_a_broken_course_config_is_one_user_error(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.Exchange.root = undefined_name\n")
    with pytest.raises(UserError, match=r"cannot read .*nbgrader_config.py: NameError"):
        load_settings(tmp_path)


def test_the_alembic_head_read_in_process_is_the_one_alembic_reports():
    from nbgrader.dbutil import _temp_alembic_ini

    alembic = shutil.which("alembic")
    if alembic is None:
        pytest.skip("no alembic command on PATH to compare with")
    with _temp_alembic_ini("sqlite:////tmp/unused.db") as ini:
        reported = subprocess.run([alembic, "-c", ini, "heads"], capture_output=True, text=True, check=True).stdout
    assert reported.split()[0] == nbgrader_fixes.alembic_head()


def test_nbgrader_creates_the_course_gradebook_without_alembic_on_path(tmp_path):
    """nbgrader 0.9.6 runs `alembic` from PATH; the course config makes it unnecessary (JupyterLab started
    by its full path, without the environment activated)."""
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    env = {**os.environ, "PATH": "/usr/bin:/bin", "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}  # fmt: skip
    assert shutil.which("alembic", path=env["PATH"]) is None, "this test needs a PATH without alembic"
    run = subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "list"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    import sqlite3

    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(nbgrader_fixes.alembic_head(),)]


@pytest.mark.parametrize("step", ["xattn_edu.grader.hide_hidden_tests.HideHiddenTests",
                                  "xattn_edu.grader.math_offline.RenderMathOffline"])
def test_feedback_steps_take_the_html_exporters_config_without_a_warning(step, caplog):
    """nbconvert's HTMLExporter configures NbConvertBase.display_data_priority; a step that does not declare
    it configurable makes Generate Feedback warn that the option is not recognised."""
    from nbconvert.exporters import HTMLExporter

    config = HTMLExporter().default_config
    log = logging.getLogger("feedback-step-test")
    with caplog.at_level(logging.WARNING, logger=log.name):
        import_item(step)(config=config, log=log)
    assert not [r for r in caplog.records if "display_data_priority" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger=log.name):  # the check has teeth: nbgrader's own base warns
        from nbgrader.preprocessors import NbGraderPreprocessor

        type("Plain", (NbGraderPreprocessor,), {})(config=config, log=log)
    assert [r for r in caplog.records if "display_data_priority" in r.getMessage()]
