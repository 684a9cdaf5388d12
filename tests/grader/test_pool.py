"""The worker pool's scheduling, with stand-in workers (tests/grader/fake_worker.py): no nbgrader, no kernels."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from xattn_edu.common.errors import UserError
from xattn_edu.grader import pool
from xattn_edu.grader.pool import Limits, grade_all
from xattn_edu.grader.submissions import Submission

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")
SETUP = SimpleNamespace(master=SimpleNamespace(chapter="00_fake"))  # sent to workers, never unpickled there


@pytest.fixture
def fake_workers(monkeypatch, tmp_path):
    """Run the pool on fake workers; returns a function reading their log as (event, time, pid) rows."""
    monkeypatch.setattr(pool, "command", lambda fd, memory, processes: [sys.executable, str(FAKE_WORKER), str(fd)])
    monkeypatch.setenv("FAKE_WORKER_LOG", str(tmp_path / "workers.log"))

    def events() -> list[tuple[str, float, int]]:
        rows = (line.split() for line in (tmp_path / "workers.log").read_text().splitlines())
        return [(event, float(when), int(pid)) for event, when, pid in rows]

    return events


def jobs(*contents: bytes) -> list[Submission]:
    return [Submission(student=c.decode(), source=c.decode(), content=c) for c in contents]


def run(submissions: list[Submission], workers: int) -> list[tuple[str, str, float]]:
    """Grade with the pool; (student, status, wall time when recorded) in the order they were recorded."""
    done = []
    limits = Limits(workers=workers, notebook_timeout=60, memory_mb=None, max_processes=None)
    grade_all(submissions, SETUP, limits, lambda job, outcome: done.append((job.student, outcome.status,
                                                                            time.time())), progress=False)
    return done


def test_workers_start_side_by_side(fake_workers, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_START", "1.5")
    done = run(jobs(b"a", b"b", b"c"), workers=2)
    assert sorted((student, status) for student, status, _ in done) == [("a", "error"), ("b", "error"),
                                                                       ("c", "error")]
    launched = [when for event, when, _ in fake_workers() if event == "launched"]
    ready = [when for event, when, _ in fake_workers() if event == "ready"]
    assert len(launched) == len(ready) == 2
    assert max(launched) < min(ready)  # the second worker was launched before the first was ready


def test_a_worker_restarting_holds_up_no_other_worker(fake_workers, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_START", "2")
    monkeypatch.setenv("FAKE_WORKER_JOB", "0.1")
    done = run(jobs(b"crash", b"a", b"b", b"c", b"d"), workers=2)
    recorded = {student: (status, when) for student, status, when in done}
    assert recorded["crash"][0] == "crashed"
    # the other worker went on: a replacement would have needed 2 s to start
    assert max(recorded[s][1] for s in "abcd") < recorded["crash"][1] + 1.5, recorded


def test_the_run_ends_without_waiting_for_workers_to_exit(fake_workers):
    started = time.monotonic()
    run(jobs(b"a", b"b"), workers=2)
    assert time.monotonic() - started < 4  # the fake workers ignore the request to exit
    for _, _, pid in fake_workers():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_that_dies_while_starting_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(pool, "command", lambda fd, memory, processes: [sys.executable, "-c", "pass"])
    with pytest.raises(UserError, match="ended while starting"):
        run(jobs(b"a"), workers=1)
