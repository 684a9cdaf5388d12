"""The grader's side of the verifier: a long-lived process that judges recorded results.

The verifier (:mod:`xattn_edu.chapters.support.verify`) imports the chapters' exercise declarations
once, when it starts, and never runs submitted code, so one instance serves every notebook a grading
process handles. :func:`shared_verifier` starts it on first use (before any submission of this process
runs, when graders call :func:`start` early) and keeps it until exit: as its own Python process, or,
where the grading process has a kernel server (class grading), forked by that server, which has the
chapters imported already. Starting does not wait for the imports: the first :meth:`Verifier.judge`
(or :meth:`Verifier.wait_ready`) does, so a grader can start other things meanwhile.
"""

from __future__ import annotations

import atexit
import json
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

from xattn_edu.common.errors import UserError


class Verifier:
    """One verifier, started (not yet ready) on construction; :meth:`judge` sends a request and waits
    for its answer.

    ``server``: the socket path of a kernel server (:mod:`xattn_edu.grader.kernels`) to fork it; None:
    start ``python -m xattn_edu.chapters.support.verify``.
    """

    def __init__(self, server: str | None = None) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stderr = None
        if server is None:
            self._stderr = tempfile.TemporaryFile(mode="w+")  # read back if the process dies
            self._process = subprocess.Popen(
                [sys.executable, "-m", "xattn_edu.chapters.support.verify"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
            )  # fmt: skip
            self._requests, self._answers = self._process.stdin, self._process.stdout
        else:
            connection = socket.socket(socket.AF_UNIX)
            connection.connect(server)
            connection.sendall(b'{"verifier": true}\n')
            self._requests = connection.makefile("w", encoding="utf-8")
            self._answers = connection.makefile("r", encoding="utf-8")
            connection.close()  # the two files keep the socket open
        self.ended = False  # the verifier stopped answering
        self.pid: int | None = None  # its process id, once ready
        self.chapters: list[str] | None = None  # the chapters whose exercises it can judge, once ready

    def wait_ready(self) -> None:
        """Wait until the verifier has imported the chapters (its first line says so).

        Raises:
            UserError: it stopped, or reported an error, instead.
        """
        if self.chapters is None:
            ready = self._read()
            if "ready" not in ready:
                raise UserError(f"the verifier did not start: {ready.get('error', ready)}")
            self.chapters, self.pid = ready["ready"], ready["pid"]

    def _read(self) -> dict[str, Any]:
        line = self._answers.readline()
        if not line:
            self.ended = True
            raise UserError("the verifier stopped unexpectedly" + self._last_words())
        return json.loads(line)

    def _last_words(self) -> str:
        if self._process is None:
            return ""
        self._process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].strip()
        return f" (exit code {self._process.returncode})" + (f"; it printed:\n{tail}" if tail else "")

    def judge(self, chapter: str, seed: int, cells: dict[str, list[Any]]) -> dict[str, Any]:
        """The verifier's answer for one graded notebook (see :mod:`xattn_edu.chapters.support.verify`)."""
        with self._lock:
            self.wait_ready()
            try:
                self._requests.write(json.dumps({"chapter": chapter, "seed": seed, "cells": cells}) + "\n")
                self._requests.flush()
            except OSError as err:
                self.ended = True
                raise UserError("the verifier stopped unexpectedly" + self._last_words()) from err
            return self._read()

    def close(self) -> None:
        """Stop the verifier (it exits when its input closes)."""
        try:
            self._requests.close()
        except OSError:
            pass
        self._answers.close()
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._stderr.close()
        self.ended = True


_shared: Verifier | None = None


def shared_verifier(server: str | None = None) -> Verifier:
    """This process's verifier, started on first use (forked by the kernel server ``server`` if given)
    and stopped at exit."""
    global _shared
    if _shared is None or _shared.ended:
        _shared = Verifier(server)
        atexit.register(_shared.close)
    return _shared


def start(server: str | None = None) -> Verifier:
    """Start this process's verifier now, before any submission runs (see the module docstring)."""
    return shared_verifier(server)
