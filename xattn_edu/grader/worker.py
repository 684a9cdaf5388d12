"""A grading worker: a process that autogrades the notebooks its parent sends, one at a time.

:mod:`xattn_edu.grader.classgrade` starts a few of these (``python -m xattn_edu.grader.worker``,
see :func:`command`) and talks to each over a private socket: it sends ``(chapter, notebook bytes,
cell timeout)`` and receives a plain dict. The worker never writes the class results; only the parent does.

The parent starts it in a new session (no terminal; Ctrl-C in the grader's terminal does not reach
it) with stdin, stdout and stderr on ``/dev/null``: kernels inherit those, so a notebook that writes
there cannot spoil the grader's output. The worker then applies the resource limits of
:mod:`xattn_edu.grader.sandbox`, which every kernel it starts inherits.
"""

from __future__ import annotations

import os
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Set for every kernel: one thread each, since workers run side by side."""


def grade_bytes(chapter: str, content: bytes, cell_timeout: int | None, solutions: Path | None) -> dict:
    """Grade one submission of ``chapter``; a dict with ``status`` and either ``report`` + ``html`` or ``reason``.

    The notebook is written as ``<chapter>.ipynb`` into a fresh temporary folder, so its file name claims
    the chapter and a notebook of another chapter is recognised and refused.
    """
    from xattn_edu.common.errors import UserError
    from xattn_edu.grader.selfgrade import grade_notebook

    with tempfile.TemporaryDirectory(prefix="xattn-submission-") as folder:
        path = Path(folder) / f"{chapter}.ipynb"
        path.write_bytes(content)
        html = Path(folder) / "feedback.html"
        try:
            report = grade_notebook(path, html=html, timeout=cell_timeout, solutions=solutions)
        except UserError as err:
            return {"status": "error", "reason": str(err).replace(str(path), "the notebook")}
        except MemoryError:
            return {"status": "error", "reason": "the grader ran out of memory reading this notebook"}
        except Exception as err:  # noqa: BLE001 - any failure is one student's, never the class's
            return {"status": "error", "reason": f"the grader failed: {type(err).__name__}: {err}"}
        text = html.read_text(encoding="utf-8") if html.is_file() else ""
        return {"status": "graded", "report": report.to_dict(), "html": text}


def serve(connection: Connection, memory_mb: int | None, max_processes: int | None, solutions: str | None) -> None:
    """Worker main loop: receive jobs on ``connection`` until it closes (the parent sends None to stop)."""
    from xattn_edu.grader.sandbox import die_with_parent, limit_this_process

    die_with_parent()  # a grader that is killed leaves no worker behind (kernels exit with their parent)
    os.environ.update(KERNEL_ENV)
    connection.send({"limits": limit_this_process(memory_mb, max_processes)})
    folder = Path(solutions) if solutions else None
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        chapter, content, cell_timeout = job
        connection.send(grade_bytes(chapter, content, cell_timeout, folder))


def command(fd: int, memory_mb: int | None, max_processes: int | None, solutions: Path | None) -> list[str]:
    """The command line that starts a worker talking over the inherited socket ``fd``."""
    return [sys.executable, "-m", "xattn_edu.grader.worker", str(fd), str(memory_mb or 0),
            str(max_processes or 0), str(solutions or "")]


if __name__ == "__main__":
    fd, memory, processes, folder = sys.argv[1:5]
    serve(Connection(int(fd)), int(memory) or None, int(processes) or None, folder or None)
