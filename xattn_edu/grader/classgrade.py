"""Grade a whole class: ``xattn grade-class CHAPTER SUBMISSIONS``.

One run, in order:

1. read the chapter's master copy once (:func:`~xattn_edu.grader.master.load_master`: its exercises and
   the digest recorded with every grade);
2. find every student's notebook and read it into memory (:mod:`xattn_edu.grader.submissions`);
3. skip the students whose record in the gradebook is for the same file and master
   (:mod:`xattn_edu.grader.gradebook`; ``regrade=True``: grade everyone);
4. grade the others in caged worker processes, several at once, each under a per-cell, a per-notebook,
   a memory and a process limit (:mod:`xattn_edu.grader.pool`), exactly like ``xattn grade``
   (:func:`~xattn_edu.grader.selfgrade.grade_submission`: nbgrader autograde against the master,
   hidden tests included). A notebook that is corrupt, crashes, hangs or exhausts memory scores 0 for
   what it could not earn, with the reason recorded, and never stops the others;
5. record each student as soon as they are done, then write the results
   (:mod:`xattn_edu.grader.feedback`).

Only this (parent) process writes results, under ``OUT`` (default ``./graded/CHAPTER``):
``gradebook.jsonl``, ``grades.csv`` and ``feedback/<student>.html``. Without an operating-system
sandbox, student code still runs as you and can reach your files (docs/instructor.md says what that means).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xattn_edu.common.errors import UserError
from xattn_edu.grader.build import find_chapters
from xattn_edu.grader.feedback import describe_flags, write_csv, write_feedback
from xattn_edu.grader.gradebook import Gradebook, StudentGrade
from xattn_edu.grader.master import Master, exercise_titles, grade_ids_by_chapter, load_master, load_masters
from xattn_edu.grader.pool import Limits, Outcome, grade_all
from xattn_edu.grader.report import ExerciseResult
from xattn_edu.grader.submissions import Skipped, Submission, find_submissions
from xattn_edu.grader.worker import GradingSetup


@dataclass
class ClassReport:
    """What a grade-class run did."""

    chapter: str  # "NN_slug"
    out: Path  # results folder
    grades: list[StudentGrade]  # every student found, sorted by id
    graded_now: int  # students graded in this run (the others were up to date)
    limits_in_force: dict = field(default_factory=dict)  # {"memory": bool, "processes": "cgroup"|"rlimit"|"none"}
    skipped: list[Skipped] = field(default_factory=list)  # notebook files that are nobody's submission, and why

    def to_dict(self) -> dict:
        """JSON-ready summary of the run: chapter, output folder, counts, every student's grade, skipped files."""
        return {"chapter": self.chapter, "out": str(self.out), "graded_now": self.graded_now,
                "limits_in_force": self.limits_in_force, "students": [g.to_dict() for g in self.grades],
                "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped]}

    def table(self) -> str:
        """A plain-text table: one row per student (score, status, reason), and the scan's flags under it."""
        width = max([len("student"), *(len(g.student) for g in self.grades)])
        rows = [f"{self.chapter}: {len(self.grades)} students, {self.graded_now} graded now, results in {self.out}"]
        for g in self.grades:
            rows.append(f"  {g.student:<{width}}  {g.score:>5g} / {g.max_score:<5g} {g.status:<8} {g.reason}")
            rows += [f"  {'':<{width}}  flagged: {describe_flags([flag])}" for flag in g.flags]
        rows += [f"  skipped {s.source}: {s.reason}" for s in self.skipped]
        return "\n".join(rows)


def default_out(chapter: str) -> Path:
    """``./graded/CHAPTER``."""
    return Path("graded") / chapter


def student_grade(submission: Submission, outcome: Outcome, master: Master) -> StudentGrade:
    """The gradebook record of ``submission`` graded against ``master``: its report, or 0 with the reason."""
    common = {"student": submission.student, "source": submission.source, "sha256": submission.sha256,
              "master": master.digest, "seconds": round(outcome.seconds, 2)}  # fmt: skip
    report = outcome.report
    if outcome.status != "graded" or report is None:
        exercises = tuple(ExerciseResult(name, 0.0, points, outcome.reason) for name, points in master.exercises)
        return StudentGrade(status=outcome.status, score=0.0, max_score=master.max_score, exercises=exercises,
                            reason=outcome.reason, **common)  # fmt: skip
    lost = "; ".join(f"{e.grade_id}: {e.reason}" for e in report.exercises if e.score < e.max_score)
    return StudentGrade(status="graded", score=report.score, max_score=report.max_score,
                        exercises=report.exercises, reason=lost, flags=report.flags, **common)  # fmt: skip


def grade_class(
    chapter: str,
    submissions: str | Path,
    out: str | Path | None = None,
    *,
    limits: Limits | None = None,
    regrade: bool = False,
    progress: bool = True,
    solutions: Path | None = None,
    name_pattern: str | None = None,
) -> ClassReport:
    """Grade every student's notebook of ``chapter`` found in ``submissions``; see the module docstring.

    ``limits``: how each notebook is confined (default :class:`~xattn_edu.grader.pool.Limits`).
    ``regrade``: grade everyone, even those up to date. ``progress``: a progress bar on stderr.
    ``solutions``: the folder of chapter sources (default: the repository's ``solutions/``).
    ``name_pattern``: how to read the student from file names (see :mod:`xattn_edu.grader.submissions`).
    ``chapter`` is a chapter's name or number (``01``).

    Raises:
        UserError: an unknown chapter, ``submissions`` is neither a folder nor a zip or holds no student's
            notebook, bad limits.
    """
    limits = limits or Limits()
    if not limits.workers or limits.workers < 1:
        raise UserError("--workers must be at least 1")
    master = load_master(find_chapters([chapter], solutions)[0])
    chapter = master.chapter
    out = Path(out) if out is not None else default_out(chapter)
    found = find_submissions(chapter, Path(submissions), name_pattern)
    gradebook = Gradebook(out / "gradebook.jsonl", chapter)
    titles = exercise_titles(master.notebook)

    def record(submission: Submission, outcome: Outcome) -> None:
        grade = student_grade(submission, outcome, master)
        write_feedback(out / "feedback", grade, outcome.html, titles)
        gradebook.add(grade)

    todo = []
    for submission in found.submissions:
        if submission.content is None:
            previous = gradebook.records.get(submission.student)
            if previous is None or (previous.status, previous.reason) != ("missing", submission.reason):
                record(submission, Outcome("missing", 0.0, reason=submission.reason))
        elif regrade or not gradebook.is_current(submission.student, submission.sha256, master.digest):
            todo.append(submission)
    in_force = grade_all(todo, _setup(master, limits, solutions), limits, record, progress=progress) if todo else {}
    gradebook.rewrite()
    grades = [gradebook.records[s.student] for s in found.submissions]
    write_csv(out / "grades.csv", grades, master.exercises)
    return ClassReport(chapter, out, grades, len(todo), in_force, found.skipped)


def _setup(master: Master, limits: Limits, solutions: Path | None) -> GradingSetup:
    """What the workers need: the master, every chapter's grade ids (read once per run), the cell limit."""
    others = load_masters([c for c in find_chapters(solutions=solutions) if c.name != master.chapter])
    chapters = grade_ids_by_chapter({**others, master.chapter: master})
    return GradingSetup(master, chapters, limits.cell_timeout)
