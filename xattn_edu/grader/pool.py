"""The worker pool: grade many submissions at once, each in a caged worker process with a time limit.

:func:`grade_all` keeps ``Limits.workers`` slots busy. A slot owns one worker process
(:mod:`xattn_edu.grader.worker`) in its :class:`~xattn_edu.grader.sandbox.Cage` and hands it one
submission at a time; the worker gets the chapter's master once, when it starts (a
:class:`~xattn_edu.grader.worker.GradingSetup`), not once per notebook. Each notebook has a
wall-clock limit: past it, the worker and everything it started are killed and a fresh worker takes
the next notebook. A worker that dies (killed for memory, a crash) costs only its current notebook.
Workers start side by side, and while one (re)starts the others go on grading: the scheduler only
ever waits for messages, never for one worker.
The pool reports each submission's :class:`Outcome`; what to make of it is the caller's business.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from xattn_edu.common.errors import UserError
from xattn_edu.grader.report import GradeReport
from xattn_edu.grader.sandbox import Cage
from xattn_edu.grader.submissions import Submission
from xattn_edu.grader.worker import GradingSetup, command

_CRASHED = "the grading process died (killed for using too much memory, or a crash)"
START_SECONDS = 120.0
"""How long a worker may take to start (import the chapters, start its verifier and kernel server)."""


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
class Outcome:
    """What grading one submission came to."""

    status: str  # "graded"; "error": refused or nbgrader failed; "timeout": past the notebook limit; "crashed"
    seconds: float  # wall time, from hand-over to the worker until its answer (or its end)
    report: GradeReport | None = None  # the grade, when graded
    html: str = ""  # nbgrader's feedback page, when graded
    reason: str = ""  # one line: why it was not graded


class _Slot:
    """One worker process in its :class:`~xattn_edu.grader.sandbox.Cage`, and the job it is running."""

    def __init__(self, index: int, limits: Limits, setup: GradingSetup) -> None:
        self.limits = limits
        self.setup = setup
        self.cage = Cage(f"xattn-grade-{os.getpid()}-{index}", limits.max_processes)
        self.process: subprocess.Popen | None = None
        self.connection: Connection | None = None
        self.scratch: Path | None = None
        self.job: Submission | None = None
        self.started = 0.0  # when the worker was launched, or when the current job was handed over
        self.ready = False  # the worker has said it is ready for jobs
        self.in_force: dict = {}

    def launch(self) -> None:
        """Start this slot's worker process and send it the setup; :meth:`take_ready` reads its answer."""
        ours, theirs = socket.socketpair()
        # the worker's (and its kernels') temporary files, removed even when the worker is killed
        self.scratch = Path(tempfile.mkdtemp(prefix="xattn-worker-"))
        with theirs:
            argv = command(theirs.fileno(), self.limits.memory_mb, self.limits.max_processes)
            self.process = subprocess.Popen(argv, pass_fds=[theirs.fileno()], start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(self.scratch)})
        self.connection = Connection(ours.detach())
        self.cage.add(self.process.pid)
        self.ready = False
        self.started = time.monotonic()
        self.connection.send(self.setup)

    def starting(self) -> bool:
        """True from :meth:`launch` until the worker has said it is ready."""
        return self.process is not None and not self.ready

    def take_ready(self) -> None:
        """Read the worker's ready message (its limits in force and its helper processes).

        Raises:
            UserError: the worker ended before it was ready, or took longer than :data:`START_SECONDS`.
        """
        message = _answer(self) if self.connection.poll() else None
        if message is None:
            waited = time.monotonic() - self.started
            self.stop_worker()
            raise UserError(f"a grading worker did not start within {START_SECONDS:g} s" if waited > START_SECONDS
                            else "a grading worker ended while starting (is the memory limit too low?)")
        self.ready = True
        self.in_force = message["limits"]
        self.cage.keep = set(message["helpers"])

    def start(self, job: Submission) -> None:
        """Hand one submission to the ready worker and start its notebook clock."""
        self.job = job
        self.started = time.monotonic()
        try:
            self.connection.send(job.content)
        except OSError:
            pass  # the worker just died: the scheduler sees it and records the notebook as crashed

    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process is not None and self.process.poll() is None

    def overdue(self) -> bool:
        """True when the current notebook has run past the per-notebook time limit."""
        return time.monotonic() - self.started > self.limits.notebook_timeout

    def finish(self, message: dict | None) -> Outcome:
        """The outcome of the current job from the worker's answer (None: no answer), and the slot freed."""
        seconds = time.monotonic() - self.started
        self.job = None
        if message is None:
            overdue = self.overdue()
            self.stop_worker()  # also kills whatever the notebook left running
            if overdue:
                reason = f"the notebook took longer than {self.limits.notebook_timeout:g} s in all and was stopped"
                return Outcome("timeout", seconds, reason=reason)
            return Outcome("crashed", seconds, reason=_CRASHED)
        self.cage.kill_strays()  # processes the notebook left behind
        if message["status"] == "graded":
            return Outcome("graded", seconds, GradeReport.from_dict(message["report"]), message["html"])
        return Outcome("error", seconds, reason=message["reason"])

    def stop_worker(self) -> None:
        """Kill the worker and everything it started; a new one starts with the next job."""
        self.cage.kill_all()
        if self.process is not None:
            self.process.wait()
        if self.connection is not None:
            self.connection.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.process, self.connection, self.scratch, self.ready = None, None, None, False

    def close(self) -> None:
        """Stop the worker and release its process cage.

        The worker is killed rather than asked to exit: it keeps nothing (every answer has been read),
        and an orderly exit of a process holding torch, its verifier and its kernel server takes seconds.
        """
        self.stop_worker()
        self.cage.close()


def _limits_in_force(slots: list[_Slot]) -> dict:
    """``{"memory": bool, "processes": "cgroup" | "rlimit" | "none"}``: what the workers could enforce."""
    if any(slot.cage.cgroup is not None for slot in slots):
        processes = "cgroup"
    elif any(slot.in_force.get("processes") for slot in slots):
        processes = "rlimit"
    else:
        processes = "none"
    return {"memory": any(slot.in_force.get("memory") for slot in slots), "processes": processes}


def _answer(slot: _Slot) -> dict | None:
    try:
        return slot.connection.recv()
    except (EOFError, OSError):
        return None


def _next_deadline(starting: list[_Slot], busy: list[_Slot], limits: Limits) -> float:
    """Seconds :func:`grade_all` may wait for a message: until the next limit runs out, and at most 1 s."""
    now = time.monotonic()
    left = [START_SECONDS - (now - slot.started) for slot in starting]
    left += [limits.notebook_timeout - (now - slot.started) for slot in busy]
    return max(0.05, min([1.0, *left]))


def grade_all(
    jobs: Sequence[Submission],
    setup: GradingSetup,
    limits: Limits,
    on_done: Callable[[Submission, Outcome], None],
    *,
    progress: bool = True,
) -> dict:
    """Grade ``jobs`` (each with content) on ``limits.workers`` workers; ``on_done(job, outcome)`` as each ends.

    ``progress``: a progress bar on stderr. Returns the limits in force (see :func:`_limits_in_force`).

    Raises:
        UserError: a worker did not start.
    """
    from tqdm import tqdm

    pending = deque(jobs)
    slots = [_Slot(i, limits, setup) for i in range(max(1, min(limits.workers, len(jobs))))]
    bar = tqdm(total=len(jobs), file=sys.stderr, disable=not progress, unit="notebook",
               desc=f"grading {setup.master.chapter}")  # fmt: skip
    try:
        while pending or any(slot.job for slot in slots):
            for slot in slots:
                if pending and slot.process is None:
                    slot.launch()  # all workers start side by side; none holds up another's jobs
                elif pending and slot.ready and slot.job is None:
                    slot.start(pending.popleft())
            starting = [slot for slot in slots if slot.starting()]
            busy = [slot for slot in slots if slot.job is not None]
            ready = wait([slot.connection for slot in starting + busy], timeout=_next_deadline(starting, busy, limits))
            for slot in starting:
                if slot.connection in ready or time.monotonic() - slot.started > START_SECONDS:
                    slot.take_ready()
            for slot in busy:
                if slot.connection in ready or slot.overdue() or not slot.alive():
                    job = slot.job
                    on_done(job, slot.finish(_answer(slot) if slot.connection in ready else None))
                    bar.update(1)
        return _limits_in_force(slots)
    finally:
        bar.close()
        for slot in slots:
            slot.close()
