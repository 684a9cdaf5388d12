"""The class gradebook, ``gradebook.jsonl``: one JSON record per graded student, resumable.

Each record (:class:`StudentGrade`) is appended as soon as a student is done, flushed to disk, so a run
that is killed resumes where it stopped; a line cut short by a kill is skipped when the file is read.
A record carries the SHA-256 of the submission and the digest of the master copy it was graded against
(:class:`~xattn_edu.grader.master.Master`), which is how a rerun knows whom it need not grade again.
At the end of a run the file is rewritten from the records held in memory (atomic replace), which also
undoes whatever a notebook's code may have done to it during the run. Only the grading (parent)
process writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from xattn_edu.common.files import write_atomic
from xattn_edu.grader.report import ExerciseResult

STATUSES = ("graded", "error", "timeout", "crashed", "missing")
"""graded: nbgrader ran it; error: refused or nbgrader failed; timeout: past the notebook limit;
crashed: the grading process died (e.g. killed for memory); missing: no notebook to grade."""


@dataclass(frozen=True)
class StudentGrade:
    """One student's result, as stored in the gradebook."""

    student: str  # student id
    status: str  # one of STATUSES
    score: float  # points earned
    max_score: float  # points available in the chapter
    exercises: tuple[ExerciseResult, ...]  # every graded cell of the chapter, in notebook order
    reason: str  # one line: why the notebook was not graded, or the points lost ("" at full marks)
    source: str  # where the notebook came from
    sha256: str  # of the submitted file ("" if none)
    master: str  # digest of the master copy graded against
    seconds: float  # wall time of grading
    flags: tuple[dict, ...] = ()  # what the submission scan flagged, for the instructor ({cell, line, rule, code})

    def to_dict(self) -> dict:
        """JSON-ready, exercises as a list of dicts."""
        record = asdict(self)
        record["exercises"] = list(record["exercises"])
        record["flags"] = list(record["flags"])
        return record

    @classmethod
    def from_dict(cls, record: dict) -> StudentGrade:
        """Rebuild a grade from its gradebook record (the inverse of ``to_dict``)."""
        exercises = tuple(ExerciseResult(**e) for e in record["exercises"])
        return cls(**{**record, "exercises": exercises, "flags": tuple(record.get("flags", ()))})


class Gradebook:
    """``gradebook.jsonl``: the latest record of each student; only the grading (parent) process writes it."""

    def __init__(self, path: Path, chapter: str) -> None:
        self.path = path
        self.chapter = chapter
        self.records: dict[str, StudentGrade] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                    if record.pop("chapter", None) == chapter:
                        self.records[record["student"]] = StudentGrade.from_dict(record)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill, or damaged

    def _line(self, grade: StudentGrade) -> str:
        return json.dumps({"chapter": self.chapter, **grade.to_dict()}, sort_keys=True) + "\n"

    def add(self, grade: StudentGrade) -> None:
        """Record ``grade`` and append it to the file at once (one write, flushed to disk)."""
        self.records[grade.student] = grade
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(self._line(grade))
            handle.flush()
            os.fsync(handle.fileno())

    def is_current(self, student: str, sha256: str, master: str) -> bool:
        """Whether ``student``'s record is for this very submission file (``sha256``) and master digest."""
        previous = self.records.get(student)
        return previous is not None and (previous.sha256, previous.master) == (sha256, master)

    def rewrite(self) -> None:
        """Replace the file by the records in memory, one line per student (atomic)."""
        write_atomic(self.path, "".join(self._line(self.records[s]) for s in sorted(self.records)).encode())
