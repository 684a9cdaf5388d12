"""The course's steps in nbgrader's autograde pipeline (set in nbgrader_config.py, so every grader uses them).

``nbgrader autograde``, the Formgrader, ``xattn grade`` and ``xattn grade-class`` all run the same
pipeline, with two of its steps replaced or added:

* :class:`XattnExecute` runs the notebook like nbgrader's ``Execute``, on Unix-socket kernels (no
  port races between kernels started side by side), stopped at once after the last cell, on one
  thread, with fast mode on for the grading kernel only, the grading run's seed for the hidden cases,
  a kernel forked by the kernel server when the grading process has one
  (:mod:`xattn_edu.grader.kernels`), and a kernel that dies, or a cell that ignores the interrupt at
  its time limit, costs only the cells it reached: cells that completed keep their outputs and points,
  the cell that was running gets the reason, the cells after it are marked as not run.
* :class:`VerifyResults` runs next. It scans the cells the student controls
  (:mod:`xattn_edu.grader.scan`) and asks the verifier (:mod:`xattn_edu.grader.verifier`, a separate
  process no submitted code runs in) to judge what each test cell recorded. A test cell whose verdict
  fails, or that a flag concerns when the instructor chose ``on_flag = "zero"``, gets an error output
  first, so nbgrader's own scoring gives it 0 and the feedback states the reason. Flags are written
  into the concerned cells for the instructor (:data:`~xattn_edu.common.protocol.FLAG_MIME`), and
  feedback leaves them out.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Enum, default

from xattn_edu.common.protocol import FAST_ENV, FLAG_MIME, RECORD_MIME, SEED_ENV
from xattn_edu.grader.scan import concerned_cells, scan_notebook

VERDICT_ERROR = "GraderVerdict"
"""``ename`` of the error output a failed verdict adds to a test cell."""
HELD_FOR_REVIEW = "held for your instructor's review"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An nbformat error output with a one-line traceback."""
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class XattnExecute(Execute):
    """nbgrader's ``Execute`` for grading kernels (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from xattn_edu.grader.kernels import ForkKernelManager, server_running

        if server_running():
            kwargs["kernel_manager_class"] = ForkKernelManager
        super().__init__(*args, **kwargs)
        self._stopped: tuple[int, str] | None = None  # (cell index, why) once the kernel can run nothing more

    @default("shutdown_kernel")
    def _shutdown_kernel_default(self) -> str:
        return "immediate"  # a grading kernel has nothing to save once its last cell has run

    def create_kernel_manager(self) -> Any:
        """nbclient's kernel manager, on Unix sockets: kernels started side by side never race for a TCP port."""
        from jupyter_core.paths import jupyter_runtime_dir

        km = super().create_kernel_manager()
        km.transport = "ipc"
        Path(jupyter_runtime_dir()).mkdir(parents=True, exist_ok=True)
        # an absolute path: the kernel runs in another folder than this process
        km.ip = str(Path(jupyter_runtime_dir()) / f"xattn-{uuid.uuid4().hex}")
        return km

    def _update_display_id(self, display_id: str, msg: dict) -> None:
        """nbclient rewrites every earlier output that shares a display id; here no such rewrite may
        create, change or remove a record. A record is what a test cell displayed while it ran, never
        what a later cell (which runs after the verdict's inputs were published) made of it."""
        if RECORD_MIME in msg.get("content", {}).get("data", {}):
            return
        for cell_index, output_indices in self._display_id_map.get(display_id, {}).items():
            outputs = self.nb["cells"][cell_index]["outputs"]
            if any(RECORD_MIME in outputs[i].get("data", {}) for i in output_indices if i < len(outputs)):
                return
        super()._update_display_id(display_id, msg)

    def preprocess(self, nb: NotebookNode, resources: dict, km: Any = None) -> tuple[NotebookNode, dict]:
        seed = secrets.randbits(31)
        resources.setdefault("xattn", {})["seed"] = seed
        self._stopped = None
        # One thread per kernel: grading runs in fast mode, often beside other kernels, and torch's second
        # thread on a busy 2-core machine slows small tensors by an order of magnitude.
        with _environment({FAST_ENV: "1", SEED_ENV: str(seed), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}):
            try:
                return super().preprocess(nb, resources, km)
            except (DeadKernelError, CellTimeoutError):  # raised again while shutting the kernel down
                if self._stopped is None:
                    raise
                return nb, resources

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if self._stopped is not None:
            if cell.cell_type == "code":
                where, why = self._stopped
                reason = f"notebook cell {where + 1} stopped the run before this cell ran: {why}"
                cell.outputs = [error_output("NotRun", reason)]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._stopped = (index, "the kernel died there")
            cell.outputs.append(error_output(
                "KernelDied", "the kernel died while running this cell (a crash, os._exit, or the memory limit)"))
        except CellTimeoutError:
            self._stopped = (index, "it ran past the time limit and did not stop when interrupted")
            cell.outputs.append(error_output(
                "CellTimeoutError", "this cell ran past the time limit and did not stop when interrupted"))
        return cell, resources


def _graded_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and meta.get("grade_id"):
            cells[str(meta["grade_id"])] = cell
    return cells


def _already_zero(cell: NotebookNode) -> bool:
    """Whether nbgrader scores the cell 0 anyway (an error, or anything on stderr): its own reason then stands."""
    return any(o.get("output_type") == "error" or (o.get("output_type") == "stream" and o.get("name") == "stderr")
               for o in cell.outputs)


def _records(cell: NotebookNode) -> list[Any]:
    return [o["data"][RECORD_MIME] for o in cell.outputs
            if o.get("output_type") == "display_data" and RECORD_MIME in o.get("data", {})]


def _flag_output(flags: list, where: str) -> NotebookNode:
    """The instructor's record of scan flags in a graded cell (feedback leaves it out)."""
    return NotebookNode(output_type="display_data", metadata={}, data={
        FLAG_MIME: [flag.to_dict() for flag in flags],
        "text/plain": f"flagged for review: {len(flags)} suspicious line(s) {where}"})


class VerifyResults(NbGraderPreprocessor):
    """Judge each test cell out of process and apply the submission scan (see the module docstring)."""

    on_flag = Enum(["zero", "review"], default_value="zero",
                   help="What a flagged submission costs: 'zero' (the test cells after the flagged code score 0) "
                        "or 'review' (scores stand; the flag is reported to the instructor).").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from xattn_edu.grader.verifier import shared_verifier

        graded = _graded_cells(nb)
        seed = resources.get("xattn", {}).get("seed")
        chapter = resources.get("nbgrader", {}).get("assignment")
        answer = {"declared": False}
        if seed is not None and chapter:
            answer = shared_verifier().judge(chapter, seed, {gid: _records(cell) for gid, cell in graded.items()})
        found = scan_notebook(nb.cells, self._locked_ids(resources, nb))
        flags = concerned_cells(nb.cells, found)
        position = {id(cell): index for index, cell in enumerate(nb.cells)}
        last = max((position[id(cell)] for cell in graded.values()), default=None)
        trailing = [flag for flag in found if last is not None and flag.cell > last]
        if trailing:  # they cannot change a verdict, so they cost nothing, but the instructor sees them
            nb.cells[last].outputs.append(_flag_output(trailing, "after the last test cell"))
        for grade_id, cell in graded.items():
            reason = self._reason(answer, grade_id, bool(flags.get(grade_id)))
            cell.outputs = [o for o in cell.outputs if RECORD_MIME not in o.get("data", {})]
            if grade_id in flags:
                cell.outputs.append(_flag_output(flags[grade_id], "before this cell"))
            if reason and not _already_zero(cell):
                cell.outputs.insert(0, error_output(VERDICT_ERROR, reason))
        return nb, resources

    def _reason(self, answer: dict, grade_id: str, flagged: bool) -> str:
        if "error" in answer:
            return f"the grader could not verify this cell ({answer['error']})"
        verdict = answer.get("verdicts", {}).get(grade_id) if answer.get("declared") else None
        if verdict is not None and not verdict["ok"]:
            return verdict["reason"]
        return HELD_FOR_REVIEW if flagged and self.on_flag == "zero" else ""

    @staticmethod
    def _locked_ids(resources: dict, nb: NotebookNode) -> set[str]:
        """grade_ids of the master's locked cells, from the gradebook (the notebook's own claims are not trusted)."""
        from nbgrader.api import Gradebook, MissingEntry

        info = resources.get("nbgrader", {})
        try:
            with Gradebook(info["db_url"]) as gradebook:
                notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
                return {cell.name for cell in notebook.source_cells if cell.locked}
        except (KeyError, MissingEntry):
            return set()
