"""The master copy of a chapter, read once and passed to whatever grades against it.

A :class:`Master` is the instructor notebook of a chapter (solutions and hidden tests, from
``solutions/NN_slug.py``, or the grading master shipped with the package: stubs and hidden tests)
together with what grading needs to know about it: its graded exercises and a digest. The digest covers
the master notebook's file content and the course settings (:mod:`xattn_edu.grader.settings` with the
course root's ``nbgrader_config.py``: stub text, delimiters, timeouts, grading steps), i.e. everything a
grade depends on besides the submission. The class gradebook records it with every grade (a rerun
regrades a student when it changes), and the throwaway nbgrader courses cache their prepared gradebook under it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nbformat import NotebookNode

from xattn_edu.grader.build import Chapter, master_notebook, notebook_bytes
from xattn_edu.grader.course import course_settings
from xattn_edu.grader.metadata import exercises, grade_id, grade_ids, is_graded
from xattn_edu.grader.settings import settings_bytes


@dataclass(frozen=True)
class Master:
    """One chapter's master copy; build it with :func:`load_master`. Treat ``notebook`` as read-only."""

    chapter: str  # "NN_slug"
    notebook: NotebookNode  # the normalized master notebook: solutions (or their stubs) and hidden tests
    digest: str  # 16 hex digits of SHA-256 over the notebook file and the course settings
    exercises: tuple[tuple[str, float], ...]  # (grade_id, points) of each graded cell, in notebook order

    @property
    def max_score(self) -> float:
        """Points available in the chapter."""
        return sum(points for _, points in self.exercises)


def master_digest(notebook: NotebookNode) -> str:
    """The digest of a master ``notebook`` under the course settings (see the module docstring)."""
    content = notebook_bytes(notebook) + settings_bytes(course_settings())
    return hashlib.sha256(content).hexdigest()[:16]


def load_master(chapter: Chapter) -> Master:
    """Read ``chapter``'s source into a :class:`Master` (one jupytext parse).

    Raises:
        UserError: the source cannot be read or its nbgrader metadata is invalid.
    """
    notebook = master_notebook(chapter)
    return Master(chapter.name, notebook, master_digest(notebook), exercises(notebook))


def load_masters(chapters: Sequence[Chapter]) -> dict[str, Master]:
    """``{chapter name: Master}`` of ``chapters``, each read once."""
    return {chapter.name: load_master(chapter) for chapter in chapters}


def grade_ids_by_chapter(masters: Mapping[str, Master]) -> dict[str, frozenset[str]]:
    """``{chapter name: the grade ids of its master}``: what recognising a notebook's chapter needs."""
    return {name: frozenset(grade_ids(master.notebook)) for name, master in masters.items()}


def exercise_titles(notebook: NotebookNode) -> dict[str, str]:
    """``{grade_id: "Exercise 2 — stable_softmax (3 points): softmax_tests"}`` for each graded cell.

    The title is the last markdown heading before the cell (markdown marks removed), so reports and
    feedback name exercises the way the chapter does.
    """
    titles, heading = {}, ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
            heading = re.sub(r"[`*]", "", found[-1]) if found else heading
        elif is_graded(cell):
            titles[grade_id(cell)] = f"{heading}: {grade_id(cell)}" if heading else grade_id(cell)
    return titles
