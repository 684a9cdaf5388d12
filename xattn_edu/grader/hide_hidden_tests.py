"""Keep hidden tests out of nbgrader's feedback HTML.

nbgrader's ``generate_feedback`` renders the autograded notebook, in which autograde restored the
hidden tests, so by default a student's feedback shows the hidden test source and tracebacks that
quote it (nbgrader issue #917). :class:`HideHiddenTests` runs before the HTML export: it replaces
every hidden-test region of a graded cell by one comment line, drops what the submission scan
flagged (the instructor's, not the student's), and cuts each error in a graded cell down to its last
line (``Wrong: <message written for students>``), so neither the test code nor the checking code in
``xattn_edu.chapters`` appears. The course's ``nbgrader_config.py``
puts it in ``GenerateFeedback.preprocessors``; ``xattn grade --html`` uses the same setting.
"""

from __future__ import annotations

from traitlets import Unicode

from xattn_edu.common.protocol import FLAG_MIME
from xattn_edu.grader.nbgrader_fixes import FeedbackStep

HIDDEN_PLACEHOLDER = "# (hidden tests ran here; their code is not shown)"


class HideHiddenTests(FeedbackStep):
    """Removes hidden-test regions and error tracebacks from graded cells (see module docstring)."""

    begin_delimiter = Unicode("BEGIN HIDDEN TESTS", help="Line marker opening a hidden-test region").tag(config=True)
    end_delimiter = Unicode("END HIDDEN TESTS", help="Line marker closing a hidden-test region").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if not cell.get("metadata", {}).get("nbgrader", {}).get("grade", False):
            return cell, resources
        cell.source = hide_regions(cell.source, self.begin_delimiter, self.end_delimiter)
        # what the submission scan flagged is for the instructor, never a guide for the student
        cell.outputs = [o for o in cell.get("outputs", []) if FLAG_MIME not in o.get("data", {})]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [error_line(output)]
        return cell, resources


def hide_regions(source: str, begin: str = "BEGIN HIDDEN TESTS", end: str = "END HIDDEN TESTS") -> str:
    """``source`` with each region between ``begin`` and ``end`` marker lines replaced by one comment."""
    kept: list[str] = []
    inside = False
    for line in source.split("\n"):
        if begin in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(indent + HIDDEN_PLACEHOLDER)
        elif end in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def error_line(output: dict) -> str:
    """``"Name: message"`` of an error output, without the traceback (and without ANSI colours)."""
    name = output.get("ename", "Error")
    value = str(output.get("evalue", "")).strip()
    return f"{name}: {value}" if value else name
