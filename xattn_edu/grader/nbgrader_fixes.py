"""Workarounds for faults of nbgrader 0.9.6 itself, each named with the fault it works around.

* **A gradebook needs ``alembic`` on ``PATH``.** ``nbgrader.api.Gradebook`` asks for the migration head by
  running the ``alembic`` command (``get_alembic_version``). When JupyterLab is started by its full path,
  without the environment activated, the command is missing: the Formgrader's first gradebook is created
  without its migration table and the page stays on "Loading…" (the same holds for every nbgrader
  command and for ``xattn grade``). :func:`find_alembic_head_in_process` makes nbgrader read the head
  with alembic's Python API instead; the course's ``nbgrader_config.py`` calls it, so every process that
  reads the course settings (the Formgrader included) creates gradebooks without ``PATH``.
* **A feedback step of ours makes Generate Feedback warn** "Config option ``display_data_priority`` not
  recognized". nbconvert's HTML exporter configures ``NbConvertBase.display_data_priority``, and
  ``NbGraderPreprocessor`` redeclares that trait without ``config=True`` (nbgrader's own ``GetGrades``
  redeclares it as configurable; other subclasses do not). :class:`FeedbackStep` does the same as ``GetGrades``.
"""

from __future__ import annotations

from functools import cache

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List


@cache
def alembic_head() -> str:
    """The newest revision of nbgrader's gradebook schema, read from its migration scripts in this process."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


def find_alembic_head_in_process() -> None:
    """Make this process's nbgrader create gradebooks without running ``alembic`` from ``PATH`` (see module)."""
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


class FeedbackStep(NbGraderPreprocessor):
    """Base of our steps that run before nbgrader's HTML export (see the module docstring)."""

    display_data_priority = List(NbGraderPreprocessor.display_data_priority.default()).tag(config=True)
