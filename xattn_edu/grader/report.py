"""What a student reads: the grade of one autograded notebook, exercise by exercise.

:func:`make_report` combines the scores nbgrader recorded in its gradebook with a one-line reason for
each lost point, read from the autograded notebook's outputs (:func:`failure_reason`). Self-grading
prints the :class:`GradeReport`; the class grader stores its exercises in the class gradebook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nbformat import NotebookNode

from xattn_edu.common.protocol import FLAG_MIME
from xattn_edu.grader.hide_hidden_tests import error_line
from xattn_edu.grader.metadata import grade_id, is_graded


@dataclass(frozen=True)
class ExerciseResult:
    """The outcome of one graded test cell."""

    grade_id: str  # nbgrader grade_id of the test cell, e.g. "relevance_tests"
    score: float  # points earned
    max_score: float  # points available
    reason: str  # why points were lost, one line for the student ("" at full marks)


@dataclass(frozen=True)
class GradeReport:
    """The grade of one notebook."""

    chapter: str  # "NN_slug"
    score: float  # points earned, all exercises
    max_score: float  # points available, all exercises
    exercises: tuple[ExerciseResult, ...]  # in notebook order
    flags: tuple[dict, ...] = ()  # for the instructor only: what the submission scan flagged ({cell, line, rule, code})

    def to_dict(self, *, flags: bool = True) -> dict:
        """JSON-ready: ``{"chapter", "score", "max_score", "exercises": [...], "flags": [...]}``.

        ``flags=False`` leaves the scan's flags out: what a student may see.
        """
        record = {
            "chapter": self.chapter,
            "score": self.score,
            "max_score": self.max_score,
            "exercises": [asdict(exercise) for exercise in self.exercises],
        }
        return {**record, "flags": list(self.flags)} if flags else record

    @classmethod
    def from_dict(cls, record: dict) -> GradeReport:
        """Rebuild a report from :meth:`to_dict`'s output."""
        exercises = tuple(ExerciseResult(**exercise) for exercise in record["exercises"])
        return cls(record["chapter"], float(record["score"]), float(record["max_score"]), exercises,
                   tuple(record.get("flags", ())))

    def table(self) -> str:
        """A plain-text table: one row per exercise, then the total."""
        width = max([len("exercise"), *(len(e.grade_id) for e in self.exercises)])
        rows = [f"{self.chapter}", f"  {'exercise':<{width}}  {'points':>9}  result"]
        for e in self.exercises:
            points = f"{_num(e.score)} / {_num(e.max_score)}"
            rows.append(f"  {e.grade_id:<{width}}  {points:>9}  {e.reason or 'ok'}")
        total = f"{_num(self.score)} / {_num(self.max_score)}"
        rows.append(f"  {'total':<{width}}  {total:>9}")
        return "\n".join(rows)


def _num(value: float) -> str:
    return f"{value:g}"


def make_report(chapter: str, scores: dict[str, tuple[float, float]], graded: NotebookNode) -> GradeReport:
    """The report of one autograded notebook: gradebook ``scores`` plus reasons read from its outputs."""
    cells = {grade_id(cell): cell for cell in graded.cells if is_graded(cell)}
    order = [name for name in cells if name in scores]
    order += [name for name in scores if name not in cells]
    exercises = []
    for name in order:
        score, max_score = scores[name]
        reason = "" if score >= max_score else failure_reason(cells.get(name))
        exercises.append(ExerciseResult(name, score, max_score, reason))
    return GradeReport(
        chapter=chapter,
        score=sum(e.score for e in exercises),
        max_score=sum(e.max_score for e in exercises),
        exercises=tuple(exercises),
        flags=scan_flags(graded),
    )


def scan_flags(graded: NotebookNode) -> tuple[dict, ...]:
    """Every flag the submission scan wrote into the autograded notebook, once each, in notebook order."""
    found: dict[tuple, dict] = {}
    for cell in graded.cells:
        for output in cell.get("outputs", []):
            for flag in output.get("data", {}).get(FLAG_MIME, []):
                if isinstance(flag, dict):
                    found.setdefault((flag.get("cell"), flag.get("line"), flag.get("rule")), dict(flag))
    return tuple(found.values())


GRADER_ERRORS = ("AssertionError", "Wrong", "NotDone", "GraderVerdict", "KernelDied", "NotRun")
"""Errors whose message is the grader's own sentence for the student (the exercise API's and the autograde steps')."""


def failure_reason(cell: NotebookNode | None) -> str:
    """One line telling a student why a graded cell lost its points."""
    if cell is None:
        return "the test cell is missing from the graded notebook"
    outputs = cell.get("outputs", [])
    errors = [output for output in outputs if output.get("output_type") == "error"]
    if any(e.get("ename") in ("CellTimeoutError", "KeyboardInterrupt") for e in errors):
        return "cell timed out"  # nbgrader interrupts the kernel when a cell runs past the timeout
    for output in errors:
        name = output.get("ename", "")
        if name == "NotImplementedError":
            return "not implemented yet"
        message = [line for line in str(output.get("evalue", "")).splitlines() if line.strip()]
        if name in GRADER_ERRORS:
            return message[-1].strip() if message else "a test failed (without a message)"
        return error_line({"ename": name, "evalue": message[-1] if message else ""})
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            first = next((line for line in output.get("text", "").splitlines() if line.strip()), "")
            return f"the cell wrote to stderr, which scores 0: {first.strip()}"
    return "the tests did not pass"
