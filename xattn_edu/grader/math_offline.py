"""Feedback that shows its formulas offline: LaTeX in markdown cells becomes MathML.

nbconvert's HTML loads MathJax from a CDN to typeset ``$...$``; a student who opens feedback without
the network sees raw LaTeX. :class:`RenderMathOffline` converts every ``$...$`` and ``$$...$$`` of a
markdown cell to MathML with latex2mathml before the HTML export; browsers draw MathML themselves.
Code (fenced blocks and inline code spans) is left as it is, and a formula latex2mathml cannot read
stays as written.
"""

from __future__ import annotations

import re

from latex2mathml.converter import convert

from xattn_edu.grader.nbgrader_fixes import FeedbackStep

_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)
_MATH = re.compile(r"(?<![\\$])\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\$)", re.S)


def _to_mathml(match: re.Match) -> str:
    block, inline = match.group(1), match.group(2)
    try:
        return convert(block if block is not None else inline, display="block" if block is not None else "inline")
    except Exception:  # noqa: BLE001 - latex2mathml raises many types; the formula then stays as LaTeX
        return match.group(0)


def mathml(markdown: str) -> str:
    """``markdown`` with its LaTeX formulas (outside code) replaced by MathML."""
    parts = _CODE.split(markdown)
    return "".join(part if index % 2 else _MATH.sub(_to_mathml, part) for index, part in enumerate(parts))


class RenderMathOffline(FeedbackStep):
    """Converts the LaTeX of markdown cells to MathML (see the module docstring)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = mathml(cell.source)
        return cell, resources
