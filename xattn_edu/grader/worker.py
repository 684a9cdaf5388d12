"""A grading worker: a process that autogrades the notebooks its parent sends, one at a time.

:mod:`xattn_edu.grader.pool` starts a few of these (``python -m xattn_edu.grader.worker``, see
:func:`command`) and talks to each over a private socket. The parent first sends a
:class:`GradingSetup` (the chapter's master, read once by the parent, so no worker parses chapter
sources), then one notebook file's bytes per job; the worker answers each job with a plain dict
(:func:`grade_bytes`) until the socket closes (the parent kills its workers when the class is done).
The worker never writes the class results; only the parent does.

The parent starts it in a new session (no terminal; Ctrl-C in the grader's terminal does not reach
it) with stdin, stdout and stderr on ``/dev/null``: kernels inherit those, so a notebook that writes
there cannot spoil the grader's output. The worker then applies the resource limits of
:mod:`xattn_edu.grader.sandbox`, and starts its kernel server (:mod:`xattn_edu.grader.kernels`), which
imports the chapters once and forks the worker's verifier (:mod:`xattn_edu.grader.verifier`) and every
kernel, with the heavy imports done; all of them inherit the limits.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from xattn_edu.grader import verifier
from xattn_edu.grader.kernels import KernelServer
from xattn_edu.grader.master import Master

KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Set for every kernel: one thread each, since workers run side by side."""


@dataclass(frozen=True)
class GradingSetup:
    """What every notebook of a run is graded against; sent to each worker once, when it starts."""

    master: Master  # the chapter's master copy (with its digest)
    chapters: dict[str, frozenset[str]]  # grade ids of every chapter, to refuse a notebook of another one
    cell_timeout: int | None  # seconds one cell may run (None: nbgrader_config.py's ExecutePreprocessor.timeout)


def grade_bytes(content: bytes, setup: GradingSetup) -> dict:
    """Grade one notebook file; ``{"status": "graded", "report", "html"}`` or ``{"status": "error", "reason"}``."""
    from xattn_edu.common.errors import UserError
    from xattn_edu.grader.selfgrade import grade_submission

    with tempfile.TemporaryDirectory(prefix="xattn-submission-") as folder:
        html = Path(folder) / "feedback.html"
        try:
            report = grade_submission(content, setup.master, chapters=setup.chapters, html=html,
                                      timeout=setup.cell_timeout)  # fmt: skip
        except UserError as err:
            return {"status": "error", "reason": str(err)}
        except MemoryError:
            return {"status": "error", "reason": "the grader ran out of memory reading this notebook"}
        except Exception as err:  # noqa: BLE001 - any failure is one student's, never the class's
            return {"status": "error", "reason": f"the grader failed: {type(err).__name__}: {err}"}
        text = html.read_text(encoding="utf-8") if html.is_file() else ""
        return {"status": "graded", "report": report.to_dict(), "html": text}


def serve(connection: Connection, memory_mb: int | None, max_processes: int | None) -> None:
    """Worker main loop: the setup, then jobs on ``connection`` until it closes."""
    from xattn_edu.common.process import die_with_parent
    from xattn_edu.grader.sandbox import limit_this_process

    die_with_parent()  # a grader that is killed leaves no worker behind (kernels exit with their parent)
    os.environ.update(KERNEL_ENV)
    try:
        setup = connection.recv()
    except EOFError:
        return
    limits = limit_this_process(memory_mb, max_processes)
    # Both start before the first notebook, outside its clock, and before any submitted code runs: the
    # kernel server imports the chapters' code (for itself, the verifier and the kernels) while the files are untouched.
    with KernelServer() as server:
        judge = verifier.start(str(server.path))  # forked by the server: the chapters are imported once
        judge.wait_ready()
        connection.send({"limits": limits, "helpers": [judge.pid, server.process.pid]})
        while True:
            try:
                content = connection.recv()
            except EOFError:
                return
            connection.send(grade_bytes(content, setup))


def command(fd: int, memory_mb: int | None, max_processes: int | None) -> list[str]:
    """The command line that starts a worker talking over the inherited socket ``fd``."""
    return [sys.executable, "-m", "xattn_edu.grader.worker", str(fd), str(memory_mb or 0), str(max_processes or 0)]


if __name__ == "__main__":
    fd, memory, processes = sys.argv[1:4]
    serve(Connection(int(fd)), int(memory) or None, int(processes) or None)
