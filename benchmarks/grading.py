"""Class grading at scale: a simulated class of Chapter 1, graded by plain nbgrader and by ``grade_class``.

The class mixes perfect, partial, broken and hostile submissions (the hostile ones come from
``tests/helpers/hostile_catalogue.py``: reference calls, patched checks, an infinite loop, a memory bomb,
``os._exit``, corrupt JSON, ...). In one run, on the same files:

* **plain nbgrader**: ``nbgrader autograde`` in a course folder with nbgrader's own pipeline (what an
  instructor without this package would run: one process, a new kernel per notebook, the same cell
  time limit, under the same address-space cap so a memory bomb cannot take the machine down);
* **ours**: ``grade_class`` for each worker count (``--regrade``: all from scratch), with its kernel
  server, verifier and submission scan.

The script records each wall time, the median and p90 seconds per notebook, the three slowest, the throughput, the
ratio of the throughputs (notebooks per minute: plain nbgrader stops the whole run at a notebook it
cannot read, so those few are left out of its class and listed), and whether our scores are the
catalogue's expected ones. The floor is measured separately: starting a kernel and running the
chapter's setup cell (its imports), which every notebook pays before its own code runs when it is not
forked from a kernel server; and what a forked kernel costs instead: start to ready (with the grader's
kernel client and with jupyter_client's) and the kill.

    python benchmarks/grading.py [--students 40] [--workers 1,2] [--cell-timeout 10] [--out results.json]

Prints one JSON object (hardware, date, load averages, one row per grader).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.helpers: the catalogue of hostile submissions and its notebook helpers

from tests.helpers.hostile_catalogue import CATALOGUE, CHAPTER, HONEST, Place, write_class  # noqa: E402
from xattn_edu.common.device import hardware_info  # noqa: E402
from xattn_edu.grader.classgrade import grade_class  # noqa: E402
from xattn_edu.grader.kernels import ForkedKernelClient  # noqa: E402
from xattn_edu.grader.pool import Limits  # noqa: E402
from xattn_edu.grader.sandbox import process_limit_available  # noqa: E402


def simulated_class(students: int) -> list:
    """``students`` cases: every quick hostile/broken case of the catalogue once, the rest honest (2/3 perfect)."""
    hostile = [c for c in CATALOGUE if not c.full and (process_limit_available() or not c.needs_process_limit)]
    hostile = hostile[: students // 2]
    honest = []
    while len(hostile) + len(honest) < students:
        case = HONEST[[0, 0, 1, 0, 0, 2][len(honest) % 6]]  # perfect, partial, untouched release
        honest.append(type(case)(**{**vars(case), "student": f"{case.student}_{len(honest):02d}"}))
    return honest + hostile


def kernel_floor(repeats: int) -> dict:
    """Seconds to start a python kernel and run Chapter 1's setup cell (imports), median of ``repeats``."""
    from jupyter_client.manager import start_new_kernel

    from tests.helpers.grading import cell_by_id, solution_notebook

    setup = cell_by_id(solution_notebook(CHAPTER), "setup").source
    env = {**os.environ, "XATTN_FAST": "1", "OMP_NUM_THREADS": "1"}
    start, imports = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        manager, client = start_new_kernel(kernel_name="python3", env=env)
        t1 = time.perf_counter()
        client.execute_interactive(setup, timeout=120)
        t2 = time.perf_counter()
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        start.append(t1 - t0)
        imports.append(t2 - t1)
    return {"kernel_start_s": round(statistics.median(start), 2), "setup_cell_s": round(statistics.median(imports), 2),
            "repeats": repeats}


def forked_kernel_floor(repeats: int) -> dict:
    """Seconds to start a kernel from the kernel server until it answers, and to stop it, median of ``repeats``.

    Each repeat starts two forked kernels: one handshaken by the grader's client
    (``ForkedKernelClient``), one by jupyter_client's own ``AsyncKernelClient``, which waits a further
    0.2 s for IOPub to fall silent.
    """
    import asyncio

    from jupyter_client.asynchronous import AsyncKernelClient

    from xattn_edu.grader.kernels import ForkKernelManager, KernelServer

    async def one(folder: str, client_class: type) -> tuple[float, float]:
        km = ForkKernelManager(transport="ipc", ip=os.path.join(folder, "kernel"), client_factory=client_class)
        t0 = time.perf_counter()
        await km.start_kernel()
        client = km.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        t1 = time.perf_counter()
        client.stop_channels()
        await km.shutdown_kernel(now=True)
        return t1 - t0, time.perf_counter() - t1

    clients = (ForkedKernelClient, AsyncKernelClient)
    times: dict[type, list[tuple[float, float]]] = {client: [] for client in clients}
    with KernelServer(), tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            for client in clients:
                times[client].append(asyncio.run(one(folder, client)))
    return {"repeats": repeats,
            "start_to_ready_s": {c.__name__: round(statistics.median(p[0] for p in times[c]), 3) for c in clients},
            "kill_s": round(statistics.median(p[1] for p in times[ForkedKernelClient]), 3)}


PLAIN_CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "bench"
c.ExecutePreprocessor.timeout = {timeout}
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


def run_plain_nbgrader(students: int, cell_timeout: int, memory_mb: int, folder: Path) -> dict:
    """``nbgrader autograde`` (nbgrader's own pipeline) over the same class, in one process, timed."""
    import resource
    import subprocess

    import nbformat

    from tests.helpers.grading import solution_notebook
    from xattn_edu.grader.build import notebook_bytes

    course = folder / "plain-course"
    (course / "source" / CHAPTER).mkdir(parents=True)
    (course / "source" / CHAPTER / f"{CHAPTER}.ipynb").write_bytes(notebook_bytes(solution_notebook(CHAPTER)))
    (course / "nbgrader_config.py").write_text(PLAIN_CONFIG.format(timeout=cell_timeout))
    place = Place(folder / "plain-submissions", folder / "plain-out")
    cases = simulated_class(students)
    write_class(cases, place)
    # nbgrader autograde stops the whole run at the first notebook it cannot read (corrupt JSON, not UTF-8):
    # those are left out of its class, as an instructor would have to; the rates below count what it graded.
    readable, left_out = [], []
    for case in cases:
        data = (place.submissions / case.student / f"{CHAPTER}.ipynb").read_bytes()
        try:
            nbformat.reads(data.decode("utf-8"), as_version=4)
        except (UnicodeDecodeError, ValueError):  # nbformat's NotJSONError is a ValueError
            left_out.append(case.student)
            continue
        readable.append(case)
        target = course / "submitted" / case.student / CHAPTER
        target.mkdir(parents=True)
        (target / f"{CHAPTER}.ipynb").write_bytes(data)
    cases = readable

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    env = {**os.environ, "XATTN_FAST": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(["nbgrader", "generate_assignment", CHAPTER, "--force"], cwd=course, env=env, check=True,
                   capture_output=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    aborted = {}  # student -> why: nbgrader stopped the whole run at this notebook; it is removed, the run resumed
    while True:  # --force only at first: a resumed run skips the notebooks already graded, as nbgrader does
        command = ["nbgrader", "autograde", CHAPTER] + ([] if aborted else ["--force"])
        done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, preexec_fn=cap)
        stopper = _run_stopper(done.stderr)
        if done.returncode == 0 or stopper is None or stopper in aborted:
            break
        aborted[stopper] = next((line for line in done.stderr.splitlines() if "ERROR" in line), "")[:200]
        shutil.rmtree(course / "submitted" / stopper)
    wall = time.perf_counter() - t0
    graded = len(list((course / "autograded").glob(f"*/{CHAPTER}/{CHAPTER}.ipynb")))
    return {"grader": "plain nbgrader autograde", "workers": 1, "students": graded, "wall_s": round(wall, 1),
            "notebooks_per_minute": round(60 * graded / wall, 1), "exit_status": done.returncode,
            "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
            "left_out_unreadable": left_out, "removed_after_stopping_the_run": aborted,
            "errors_logged": [line for line in done.stderr.splitlines() if "ERROR" in line][-20:]}


def _run_stopper(log: str) -> str | None:
    """The student whose notebook nbgrader was working on when it stopped the whole run, if it did."""
    student = None
    for line in log.splitlines():
        found = re.search(r"submitted/([^/]+)/", line)
        if found:
            student = found.group(1)
        if "ERROR" in line and "old version" in line:
            return student
    return None


def run(students: int, workers: int, cell_timeout: int, folder: Path) -> dict:
    place = Place(folder / "submissions", folder / f"graded-{workers}")
    cases = simulated_class(students)
    write_class(cases, place)
    limits = Limits(workers=workers, cell_timeout=cell_timeout, notebook_timeout=300, memory_mb=3072)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = grade_class(CHAPTER, place.submissions, place.out, limits=limits, regrade=True, progress=False)
    wall = time.perf_counter() - t0
    seconds = sorted(g.seconds for g in report.grades)
    expected = {c.student: sum(c.expected_scores().values()) for c in cases}
    return {
        "grader": "xattn grade-class",
        "workers": workers,
        "students": len(cases),
        "wall_s": round(wall, 1),
        "per_notebook_median_s": round(statistics.median(seconds), 2),
        "per_notebook_p90_s": round(seconds[int(0.9 * (len(seconds) - 1))], 2),
        "slowest": {g.student: g.seconds for g in sorted(report.grades, key=lambda g: -g.seconds)[:3]},
        "notebooks_per_minute": round(60 * len(cases) / wall, 1),
        "statuses": {s: sum(g.status == s for g in report.grades) for s in {g.status for g in report.grades}},
        "scores_as_expected": all(g.score == expected[g.student] for g in report.grades),
        "unexpected": [{"student": g.student, "score": g.score, "status": g.status, "reason": g.reason}
                       for g in report.grades if g.score != expected[g.student]],
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
        "limits_in_force": report.limits_in_force,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--cell-timeout", type=int, default=10, help="seconds per cell (the infinite loop pays it)")
    parser.add_argument("--floor-repeats", type=int, default=3)
    parser.add_argument("--no-plain", action="store_true", help="skip plain nbgrader (ours only)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {
        "benchmark": "class grading, Chapter 1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_info(),
        "load_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
        "cell_timeout_s": args.cell_timeout,
        "floor": kernel_floor(args.floor_repeats),
        "forked_kernel": forked_kernel_floor(5 * args.floor_repeats),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="xattn-bench-grading-") as folder:
        if not args.no_plain:
            result["runs"].append(run_plain_nbgrader(args.students, args.cell_timeout, 3072, Path(folder)))
            print(json.dumps(result["runs"][-1]), file=sys.stderr)
        for workers in [int(w) for w in args.workers.split(",")]:
            result["runs"].append(run(args.students, workers, args.cell_timeout, Path(folder) / f"w{workers}"))
            print(json.dumps(result["runs"][-1]), file=sys.stderr)
    plain = [r["notebooks_per_minute"] for r in result["runs"] if r["grader"].startswith("plain")]
    if plain:  # throughput ratio: plain nbgrader grades only the notebooks it can read
        result["speedup_vs_plain_nbgrader"] = {str(r["workers"]): round(r["notebooks_per_minute"] / plain[0], 2)
                                               for r in result["runs"] if not r["grader"].startswith("plain")}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
