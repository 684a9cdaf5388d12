"""What a class-grading run gives back to people: feedback pages and the grades CSV.

* ``feedback/<student>.html`` (:func:`write_feedback`): nbgrader's feedback page (hidden test code already removed by
  :mod:`xattn_edu.grader.hide_hidden_tests`) headed by a table of the points per exercise and the reason
  for every point lost (:func:`feedback_html`); a file name that is safe whatever the student id is
  (:func:`feedback_name`).
* ``grades.csv``: student, score, max_score, one column per exercise, status, reason, and for the
  instructor the lines the submission scan flagged (:func:`write_csv`); feedback never shows those.

Both are written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path

from xattn_edu.common.files import write_atomic
from xattn_edu.grader.gradebook import StudentGrade


def write_feedback(folder: Path, grade: StudentGrade, nbgrader_html: str, titles: dict[str, str] | None = None) -> Path:
    """Write ``grade``'s feedback page into ``folder`` (see :func:`feedback_html`); returns its path."""
    path = folder / feedback_name(grade.student)
    write_atomic(path, feedback_html(grade, nbgrader_html, titles).encode("utf-8"))
    return path


def name_test_cells(nbgrader_html: str, titles: dict[str, str]) -> str:
    """nbgrader's feedback with each "Test cell" link of its summary named after its exercise."""
    def name(match: re.Match) -> str:
        return f'<a href="#{match[1]}">{html.escape(titles.get(match[1], match[1]))}</a>'

    return re.sub(r'<a href="#([A-Za-z0-9_-]+)">Test cell</a>', name, nbgrader_html)


def feedback_name(student: str) -> str:
    """A file name for ``student``'s feedback: the id itself when it is safe, else a safe form plus a hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", student).lstrip(".") or "student"
    if safe != student:
        safe += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return f"{safe}.html"


SUMMARY_STYLE = ("margin:1em;font-family:sans-serif;max-width:60em",
                 "border-collapse:collapse;width:100%;table-layout:fixed",
                 "vertical-align:top;white-space:normal;overflow-wrap:anywhere;border:1px solid #999;padding:4px")
"""Styles of the summary box, its table and its cells: long reasons wrap instead of being cut off."""


def summary_html(grade: StudentGrade, titles: dict[str, str] | None = None) -> str:
    """A table of the student's points per exercise (named as the chapter does), with the reason for each lost point."""
    box, table, cell = SUMMARY_STYLE
    rows = "".join(
        f"<tr><td style='{cell}'>{html.escape((titles or {}).get(e.grade_id, e.grade_id))}</td>"
        f"<td style='{cell}'>{e.score:g} / {e.max_score:g}</td>"
        f"<td style='{cell}'>{html.escape(e.reason) or 'ok'}</td></tr>"
        for e in grade.exercises
    )
    note = "" if grade.status == "graded" else f"<p><b>Not graded ({grade.status}):</b> {html.escape(grade.reason)}</p>"
    return (
        f'<div class="xattn-summary" style="{box}">'
        f"<h2>{html.escape(grade.student)}: {grade.score:g} / {grade.max_score:g}</h2>{note}"
        f"<table style='{table}'><col style='width:35%'><col style='width:10%'><col style='width:55%'>"
        "<tr><th>exercise</th><th>points</th><th>why points were lost</th></tr>"
        f"{rows}</table></div>"
    )


def feedback_html(grade: StudentGrade, nbgrader_html: str, titles: dict[str, str] | None = None) -> str:
    """nbgrader's feedback page (hidden tests already removed) with :func:`summary_html` at the top."""
    summary = summary_html(grade, titles)
    match = re.search(r"<body[^>]*>", nbgrader_html)
    if match is None:
        return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{summary}</body></html>"
    return nbgrader_html[: match.end()] + summary + nbgrader_html[match.end():]


def describe_flags(flags: Sequence[dict]) -> str:
    """The scan's flags in one line for the instructor: ``cell 12 line 3 (import): import sys | ...``."""
    return " | ".join(f"cell {f.get('cell', 0) + 1} line {f.get('line')} ({f.get('rule')}): {f.get('code')}"
                      for f in flags)


def write_csv(path: Path, grades: Sequence[StudentGrade], exercises: Sequence[tuple[str, float]]) -> None:
    """``grades.csv``: student, score, max_score, one column per exercise, status, reason, flags (atomic)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "score", "max_score", *(g for g, _ in exercises), "status", "reason", "flags"])
    for grade in grades:
        scores = {e.grade_id: e.score for e in grade.exercises}
        writer.writerow([grade.student, f"{grade.score:g}", f"{grade.max_score:g}",
                         *(f"{scores.get(g, 0.0):g}" for g, _ in exercises), grade.status, grade.reason,
                         describe_flags(grade.flags)])
    write_atomic(path, buffer.getvalue().encode("utf-8"))
