"""The grader's side of the verifier: a long-lived process that judges recorded results.

The verifier (``python -m xattn_edu.chapters.support.verify``) imports the chapters' exercise
declarations once, when it starts, and never runs submitted code, so one instance serves every
notebook a grading process handles. :func:`shared_verifier` starts it on first use (before any
submission of this process runs, when graders call :func:`start` early) and keeps it until exit.
Starting does not wait for the imports: the first :meth:`Verifier.judge` (or :meth:`Verifier.wait_ready`)
does, so a grader can start other things meanwhile.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import tempfile
import threading
from typing import Any

from xattn_edu.common.errors import UserError

START_SECONDS = 120.0
"""How long the verifier may take to import the chapters."""


class Verifier:
    """One verifier process, started (not yet ready) on construction; :meth:`judge` sends a request and
    waits for its answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stderr = tempfile.TemporaryFile(mode="w+")  # read back if the process dies
        self._process = subprocess.Popen(
            [sys.executable, "-m", "xattn_edu.chapters.support.verify"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
        )  # fmt: skip
        self.chapters: list[str] | None = None  # the chapters whose exercises it can judge, once ready

    def wait_ready(self) -> None:
        """Wait until the process has imported the chapters (its first line says so).

        Raises:
            UserError: it stopped, or reported an error, instead.
        """
        if self.chapters is None:
            ready = self._read()
            if "ready" not in ready:
                raise UserError(f"the verifier did not start: {ready.get('error', ready)}")
            self.chapters = ready["ready"]

    @property
    def pid(self) -> int:
        """The verifier process's id."""
        return self._process.pid

    def _read(self) -> dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].strip()
            raise UserError(f"the verifier stopped unexpectedly (exit code {self._process.returncode})"
                            + (f"; it printed:\n{tail}" if tail else ""))
        return json.loads(line)

    def judge(self, chapter: str, seed: int, cells: dict[str, list[Any]]) -> dict[str, Any]:
        """The verifier's answer for one graded notebook (see :mod:`xattn_edu.chapters.support.verify`)."""
        with self._lock:
            self.wait_ready()
            self._process.stdin.write(json.dumps({"chapter": chapter, "seed": seed, "cells": cells}) + "\n")
            self._process.stdin.flush()
            return self._read()

    def close(self) -> None:
        """Stop the process (it exits when its input closes)."""
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._stderr.close()


_shared: Verifier | None = None


def shared_verifier() -> Verifier:
    """This process's verifier, started on first use and stopped at exit."""
    global _shared
    if _shared is None or _shared._process.poll() is not None:
        _shared = Verifier()
        atexit.register(_shared.close)
    return _shared


def start() -> None:
    """Start this process's verifier now, before any submission runs (see the module docstring)."""
    shared_verifier()
