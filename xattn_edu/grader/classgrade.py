"""Grade a whole class: ``xattn grade-class CHAPTER SUBMISSIONS``.

SUBMISSIONS is a folder with one sub-folder per student (any ``*.ipynb`` inside; the one named after the
chapter wins), or an LMS download: a zip, or a folder of loose files, named the Canvas way
(``login_12345_67890_01_library_lookup-1.ipynb``: the student is ``login``, ``-1`` a resubmission).

Every notebook is graded exactly like ``xattn grade`` (:func:`xattn_edu.grader.selfgrade.grade_notebook`:
nbgrader autograde against the chapter's master copy, hidden tests included), in worker processes
(:mod:`xattn_edu.grader.worker`), several at once. Each notebook has a per-cell time limit
(nbgrader's ``ExecutePreprocessor.timeout``), a wall-clock limit (the worker and every process it started
are killed) and the resource limits of :mod:`xattn_edu.grader.sandbox`. A notebook that is corrupt,
crashes, hangs or exhausts memory scores 0 for what it could not earn, with the reason recorded, and
never stops the others.

Only this (parent) process writes results, under ``OUT`` (default ``./graded/CHAPTER``):

* ``gradebook.jsonl``: one JSON record per graded student, appended as soon as the student is done, so
  a run that is killed resumes where it stopped. Records are keyed by the SHA-256 of the submission and
  a digest of the master copy: a rerun grades only new or changed submissions (``regrade=True``: all).
  At the end the file is rewritten from the records held in memory (atomic replace), which also undoes
  whatever a notebook's code may have done to it during the run.
* ``grades.csv``: student, score, max_score, one column per exercise, status, reason.
* ``feedback/<student>.html``: nbgrader feedback without hidden test code, headed by a table of the
  points lost and why.

Submissions are read into memory before any student code runs, so a notebook cannot change another
student's file before it is graded. Without an operating-system sandbox, student code still runs as
you and can reach your files (docs/instructor.md says what that means).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from xattn_edu.common.errors import UserError
from xattn_edu.grader.selfgrade import ExerciseResult

MAX_NOTEBOOK_BYTES = 512 << 20
"""Larger files are refused unread (a real notebook with outputs is a few MB)."""

CANVAS_NAME = re.compile(
    r"^(?P<student>[^_/\\]+)_(?:late_)?\d+_\d+_(?P<name>.+?)(?:-(?P<attempt>\d+))?\.ipynb$", re.IGNORECASE
)
"""``login_12345_67890_original-name-1.ipynb`` (``-1``: a resubmission; ``LATE_`` may follow the login)."""

STATUSES = ("graded", "error", "timeout", "crashed", "missing")
"""graded: nbgrader ran it; error: refused or nbgrader failed; timeout: past the notebook limit;
crashed: the grading process died (e.g. killed for memory); missing: no notebook to grade."""


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """How each submission is confined."""

    workers: int = field(default_factory=_cores)  # notebooks graded at once, each in its own worker process
    cell_timeout: int | None = None  # seconds one cell may run (None: nbgrader_config.py's ExecutePreprocessor.timeout)
    notebook_timeout: float = 600.0  # seconds one notebook may take in all before its worker is killed
    memory_mb: int | None = 4096  # address-space cap of the worker and of each kernel, MiB (None: no cap)
    max_processes: int | None = 128  # processes + threads a worker may run at once (cgroup pids.max or RLIMIT_NPROC)


@dataclass(frozen=True)
class Submission:
    """One student's notebook, read into memory."""

    student: str  # student id (folder name or login of an LMS file name)
    source: str  # where the notebook came from, for the record ("" if none was found)
    content: bytes | None  # the notebook file; None when none could be chosen
    reason: str = ""  # why content is None


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

    def to_dict(self) -> dict:
        """JSON-ready, exercises as a list of dicts."""
        record = asdict(self)
        record["exercises"] = list(record["exercises"])
        return record

    @classmethod
    def from_dict(cls, record: dict) -> StudentGrade:
        """Rebuild a grade from its gradebook record (the inverse of ``to_dict``)."""
        exercises = tuple(ExerciseResult(**e) for e in record["exercises"])
        return cls(**{**record, "exercises": exercises})


@dataclass
class ClassReport:
    """What a grade-class run did."""

    chapter: str  # "NN_slug"
    out: Path  # results folder
    grades: list[StudentGrade]  # every student found, sorted by id
    graded_now: int  # students graded in this run (the others were up to date)
    limits_in_force: dict = field(default_factory=dict)  # {"memory": bool, "processes": "cgroup"|"rlimit"|"none"}

    def to_dict(self) -> dict:
        """JSON-ready summary of the run: chapter, output folder, counts and every student's grade."""
        return {"chapter": self.chapter, "out": str(self.out), "graded_now": self.graded_now,
                "limits_in_force": self.limits_in_force, "students": [g.to_dict() for g in self.grades]}

    def table(self) -> str:
        """A plain-text table: one row per student (score, status, reason)."""
        width = max([len("student"), *(len(g.student) for g in self.grades)])
        rows = [f"{self.chapter}: {len(self.grades)} students, {self.graded_now} graded now, results in {self.out}"]
        for g in self.grades:
            rows.append(f"  {g.student:<{width}}  {g.score:>5g} / {g.max_score:<5g} {g.status:<8} {g.reason}")
        return "\n".join(rows)


# ----------------------------------------------------------------------------- finding submissions

def find_submissions(chapter: str, submissions: Path) -> list[Submission]:
    """One :class:`Submission` per student in ``submissions`` (a folder or a zip), sorted by student id."""
    submissions = Path(submissions)
    if not submissions.exists():
        raise UserError(f"{submissions}: no such file or folder")
    candidates: dict[str, list[tuple[str, str, object]]] = {}  # student -> [(name, source, reader)]
    if submissions.is_file():
        if not zipfile.is_zipfile(submissions):
            raise UserError(f"{submissions}: not a folder and not a zip file")
        _zip_candidates(submissions, candidates)
    else:
        _folder_candidates(submissions, candidates)
    return [_choose(chapter, student, candidates[student]) for student in sorted(candidates)]


def _add(candidates: dict, student: str, name: str, source: str, reader) -> None:
    candidates.setdefault(student, []).append((name, source, reader))


def _lms_name(filename: str) -> tuple[str, str] | None:
    """``(student, original file name)`` of an LMS download name, or None."""
    match = CANVAS_NAME.match(filename)
    if match is None:
        return None
    attempt = f"-{match['attempt']}" if match["attempt"] else ""
    return match["student"], f"{match['name']}{attempt}.ipynb"


def _is_hidden(parts: Iterable[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _folder_candidates(folder: Path, candidates: dict) -> None:
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if _is_hidden(relative.parts) or not path.is_file():
            continue
        if len(relative.parts) == 1:  # a loose file: an extracted LMS download
            lms = _lms_name(path.name)
            if lms is not None:
                _add(candidates, lms[0], lms[1], str(path), path)
            continue
        _add(candidates, relative.parts[0], path.name, str(path), path)


def _zip_candidates(archive: Path, candidates: dict) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
            if info.is_dir() or not parts or not parts[-1].endswith(".ipynb") or _is_hidden(parts):
                continue
            lms = _lms_name(parts[-1])
            reader = (archive, info.filename, info.file_size)
            source = f"{archive}:{info.filename}"
            if lms is not None:
                _add(candidates, lms[0], lms[1], source, reader)
            elif len(parts) >= 2:
                _add(candidates, parts[-2] if len(parts) == 2 else parts[0], parts[-1], source, reader)


def _read(reader) -> bytes:
    if isinstance(reader, Path):
        if reader.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        return reader.read_bytes()
    archive, member, size = reader
    if size > MAX_NOTEBOOK_BYTES:
        raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    with zipfile.ZipFile(archive) as zf, zf.open(member) as handle:
        content = handle.read(MAX_NOTEBOOK_BYTES + 1)
    if len(content) > MAX_NOTEBOOK_BYTES:
        raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    return content


def _attempt(name: str) -> int:
    match = re.search(r"-(\d+)\.ipynb$", name)
    return int(match[1]) if match else 0


def _choose(chapter: str, student: str, found: list[tuple[str, str, object]]) -> Submission:
    """The student's notebook for ``chapter``: named after it (latest attempt), else the only one."""
    exact = [c for c in found if re.sub(r"-\d+(?=\.ipynb$)", "", c[0]) == f"{chapter}.ipynb"]
    named = exact or [c for c in found if chapter in c[0]]
    if named:
        chosen = max(named, key=lambda c: (_attempt(c[0]), c[1]))
    elif len(found) == 1:
        chosen = found[0]
    else:
        names = ", ".join(sorted(c[0] for c in found))
        return Submission(student, "", None, f"{len(found)} notebooks, none named {chapter}.ipynb: {names}")
    try:
        return Submission(student, chosen[1], _read(chosen[2]))
    except (OSError, UserError, zipfile.BadZipFile) as err:
        return Submission(student, chosen[1], None, f"cannot read {chosen[0]}: {err}")


# ----------------------------------------------------------------------------- the gradebook

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

    def rewrite(self) -> None:
        """Replace the file by the records in memory, one line per student (atomic)."""
        _write_atomic(self.path, "".join(self._line(self.records[s]) for s in sorted(self.records)).encode())


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(content)
    os.chmod(partial, 0o644)
    os.replace(partial, path)


# ----------------------------------------------------------------------------- results and feedback

def master_exercises(chapter: str, solutions: Path | None = None) -> tuple[list[tuple[str, float]], str]:
    """``([(grade_id, points)] of the graded cells, digest)`` of ``chapter``'s master copy."""
    from xattn_edu.grader.build import find_chapters, master_notebook, notebook_bytes
    from xattn_edu.grader.course import settings_file

    master = master_notebook(find_chapters([chapter], solutions)[0])
    exercises = []
    for cell in master.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            exercises.append((str(meta["grade_id"]), float(meta.get("points", 0))))
    digest = hashlib.sha256(notebook_bytes(master) + settings_file().read_bytes()).hexdigest()[:16]
    return exercises, digest


def _failed(submission: Submission, status: str, reason: str, exercises: list[tuple[str, float]],
            digest: str, seconds: float) -> StudentGrade:
    return StudentGrade(
        student=submission.student, status=status, score=0.0, max_score=sum(p for _, p in exercises),
        exercises=tuple(ExerciseResult(g, 0.0, p, reason) for g, p in exercises), reason=reason,
        source=submission.source, sha256=_sha(submission), master=digest, seconds=round(seconds, 2),
    )


def _graded(submission: Submission, report: dict, digest: str, seconds: float) -> StudentGrade:
    exercises = tuple(ExerciseResult(**e) for e in report["exercises"])
    lost = [f"{e.grade_id}: {e.reason}" for e in exercises if e.score < e.max_score]
    return StudentGrade(
        student=submission.student, status="graded", score=float(report["score"]),
        max_score=float(report["max_score"]), exercises=exercises, reason="; ".join(lost),
        source=submission.source, sha256=_sha(submission), master=digest, seconds=round(seconds, 2),
    )


def _sha(submission: Submission) -> str:
    return hashlib.sha256(submission.content).hexdigest() if submission.content is not None else ""


def feedback_name(student: str) -> str:
    """A file name for ``student``'s feedback: the id itself when it is safe, else a safe form plus a hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", student).lstrip(".") or "student"
    if safe != student:
        safe += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return f"{safe}.html"


def summary_html(grade: StudentGrade) -> str:
    """A table of the student's points per exercise, with the reason for every point lost."""
    rows = "".join(
        f"<tr><td>{html.escape(e.grade_id)}</td><td>{e.score:g} / {e.max_score:g}</td>"
        f"<td>{html.escape(e.reason) or 'ok'}</td></tr>"
        for e in grade.exercises
    )
    note = "" if grade.status == "graded" else f"<p><b>Not graded ({grade.status}):</b> {html.escape(grade.reason)}</p>"
    return (
        '<div class="xattn-summary" style="margin:1em;font-family:sans-serif">'
        f"<h2>{html.escape(grade.student)}: {grade.score:g} / {grade.max_score:g}</h2>{note}"
        "<table border=1 cellpadding=4><tr><th>exercise</th><th>points</th><th>why points were lost</th></tr>"
        f"{rows}</table></div>"
    )


def feedback_html(grade: StudentGrade, nbgrader_html: str) -> str:
    """nbgrader's feedback page (hidden tests already removed) with :func:`summary_html` at the top."""
    summary = summary_html(grade)
    match = re.search(r"<body[^>]*>", nbgrader_html)
    if match is None:
        return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{summary}</body></html>"
    return nbgrader_html[: match.end()] + summary + nbgrader_html[match.end():]


def write_csv(path: Path, grades: list[StudentGrade], exercises: list[tuple[str, float]]) -> None:
    """``grades.csv``: student, score, max_score, one column per exercise, status, reason (atomic)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "score", "max_score", *(g for g, _ in exercises), "status", "reason"])
    for grade in grades:
        scores = {e.grade_id: e.score for e in grade.exercises}
        writer.writerow([grade.student, f"{grade.score:g}", f"{grade.max_score:g}",
                         *(f"{scores.get(g, 0.0):g}" for g, _ in exercises), grade.status, grade.reason])
    _write_atomic(path, buffer.getvalue().encode("utf-8"))


# ----------------------------------------------------------------------------- workers

class _Slot:
    """One worker process in its :class:`~xattn_edu.grader.sandbox.Cage`, and the job it is running."""

    def __init__(self, index: int, limits: Limits, solutions: Path | None) -> None:
        from xattn_edu.grader.sandbox import Cage

        self.limits = limits
        self.solutions = solutions
        self.cage = Cage(f"xattn-grade-{os.getpid()}-{index}", limits.max_processes)
        self.process = None
        self.connection = None
        self.scratch: Path | None = None
        self.job: Submission | None = None
        self.started = 0.0
        self.in_force: dict = {}

    def ensure_worker(self) -> None:
        """Start this slot's worker process unless one is already running."""
        if self.process is not None and self.process.poll() is None:
            return
        from xattn_edu.grader.worker import command

        ours, theirs = socket.socketpair()
        # the worker's (and its kernels') temporary files, removed even when the worker is killed
        self.scratch = Path(tempfile.mkdtemp(prefix="xattn-worker-"))
        with theirs:
            argv = command(theirs.fileno(), self.limits.memory_mb, self.limits.max_processes, self.solutions)
            self.process = subprocess.Popen(argv, pass_fds=[theirs.fileno()], start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(self.scratch)})
        self.connection = Connection(ours.detach())
        self.cage.add(self.process.pid)
        if not self.connection.poll(120):
            raise UserError("a grading worker did not start within 120 s")
        self.in_force = self.connection.recv()["limits"]

    def start(self, job: Submission, chapter: str) -> None:
        """Hand one submission to the worker and start its notebook clock."""
        self.ensure_worker()
        self.job = job
        self.started = time.monotonic()
        try:
            self.connection.send((chapter, job.content, self.limits.cell_timeout))
        except OSError:
            pass  # the worker just died: the scheduler sees it and records the student as crashed

    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process is not None and self.process.poll() is None

    def overdue(self) -> bool:
        """True when the current notebook has run past the per-notebook time limit."""
        return time.monotonic() - self.started > self.limits.notebook_timeout

    def stop_worker(self) -> None:
        """Kill the worker and everything it started; a new one starts with the next job."""
        self.cage.kill_all()
        if self.process is not None:
            self.process.wait()
        if self.connection is not None:
            self.connection.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.process, self.connection, self.scratch = None, None, None

    def close(self) -> None:
        """Ask the worker to finish (5 s grace), then stop it and release its process cage."""
        if self.connection is not None and self.alive():
            try:
                self.connection.send(None)
                self.process.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.stop_worker()
        self.cage.close()


def _processes_limit(slots: list[_Slot]) -> str:
    if any(slot.cage.cgroup is not None for slot in slots):
        return "cgroup"
    if any(slot.in_force.get("processes") for slot in slots):
        return "rlimit"
    return "none"


def _run_jobs(chapter: str, jobs: list[Submission], limits: Limits, solutions: Path | None,
              exercises: list[tuple[str, float]], digest: str, on_result, progress: bool) -> dict:
    """Grade ``jobs`` on ``limits.workers`` workers; call ``on_result(grade, html)`` for each, in the order done."""
    from tqdm import tqdm

    pending = deque(jobs)
    slots = [_Slot(i, limits, solutions) for i in range(max(1, min(limits.workers, len(jobs))))]
    bar = tqdm(total=len(jobs), file=sys.stderr, disable=not progress, unit="notebook", desc=f"grading {chapter}")
    try:
        while pending or any(slot.job for slot in slots):
            for slot in slots:
                if slot.job is None and pending:
                    slot.start(pending.popleft(), chapter)
            busy = [slot for slot in slots if slot.job is not None]
            remaining = min(limits.notebook_timeout - (time.monotonic() - s.started) for s in busy)
            ready = wait([slot.connection for slot in busy], timeout=max(0.05, min(remaining, 1.0)))
            for slot in busy:
                if slot.connection in ready:
                    try:
                        message = slot.connection.recv()
                    except (EOFError, OSError):
                        message = None
                    _finish(slot, message, exercises, digest, on_result)
                    bar.update(1)
                elif slot.overdue() or not slot.alive():
                    _finish(slot, None, exercises, digest, on_result)
                    bar.update(1)
        return {"memory": any(s.in_force.get("memory") for s in slots), "processes": _processes_limit(slots)}
    finally:
        bar.close()
        for slot in slots:
            slot.close()


def _finish(slot: _Slot, message: dict | None, exercises, digest: str, on_result) -> None:
    job, seconds = slot.job, time.monotonic() - slot.started
    slot.job = None
    if message is None:
        overdue = slot.overdue()
        slot.stop_worker()  # also kills whatever the notebook left running
        if overdue:
            reason = f"the notebook took longer than {slot.limits.notebook_timeout:g} s in all and was stopped"
            on_result(_failed(job, "timeout", reason, exercises, digest, seconds), "")
        else:
            reason = "the grading process died (killed for using too much memory, or a crash)"
            on_result(_failed(job, "crashed", reason, exercises, digest, seconds), "")
        return
    slot.cage.kill_strays()  # processes the notebook left behind
    if message["status"] == "graded":
        on_result(_graded(job, message["report"], digest, seconds), message["html"])
    else:
        on_result(_failed(job, "error", message["reason"], exercises, digest, seconds), "")


# ----------------------------------------------------------------------------- the command

def default_out(chapter: str) -> Path:
    """``./graded/CHAPTER``."""
    return Path("graded") / chapter


def grade_class(
    chapter: str,
    submissions: str | Path,
    out: str | Path | None = None,
    *,
    limits: Limits | None = None,
    regrade: bool = False,
    progress: bool = True,
    solutions: Path | None = None,
) -> ClassReport:
    """Grade every student's notebook of ``chapter`` found in ``submissions``; see the module docstring."""
    from xattn_edu.grader.build import CHAPTER_NAME, find_chapters

    if not CHAPTER_NAME.match(chapter):
        raise UserError(f"{chapter!r} is not a chapter name (NN_slug, e.g. 01_library_lookup)")
    find_chapters([chapter], solutions)
    limits = limits or Limits()
    if not limits.workers or limits.workers < 1:
        raise UserError("--workers must be at least 1")
    out = Path(out) if out is not None else default_out(chapter)
    exercises, digest = master_exercises(chapter, solutions)
    found = find_submissions(chapter, Path(submissions))
    gradebook = Gradebook(out / "gradebook.jsonl", chapter)
    feedback = out / "feedback"

    def record(grade: StudentGrade, nbgrader_html: str) -> None:
        _write_atomic(feedback / feedback_name(grade.student), feedback_html(grade, nbgrader_html).encode("utf-8"))
        gradebook.add(grade)

    todo = []
    for submission in found:
        previous = gradebook.records.get(submission.student)
        if submission.content is None:
            if previous is None or previous.status != "missing" or previous.reason != submission.reason:
                record(_failed(submission, "missing", submission.reason, exercises, digest, 0.0), "")
        elif regrade or previous is None or (previous.sha256, previous.master) != (_sha(submission), digest):
            todo.append(submission)
    in_force = {}
    if todo:
        in_force = _run_jobs(chapter, todo, limits, solutions, exercises, digest, record, progress)
    gradebook.rewrite()
    grades = [gradebook.records[s.student] for s in found]
    write_csv(out / "grades.csv", grades, exercises)
    return ClassReport(chapter, out, grades, len(todo), in_force)
