"""Each chapter's solution notebook run top to bottom in full mode (no ``XATTN_FAST``) on this machine.

    python benchmarks/chapters.py [CHAPTER ...] [--out FILE] [--keep DIR]   # default: every chapter, in turn

The chapter issues ask for the full CPU run of each chapter to take under 10 minutes on the 2-core
machine. Each notebook is the chapter's master (solutions filled in, as a student with full marks has
it), executed by nbclient in a fresh kernel with the environment a student has: no thread variable, no
fast mode, matplotlib's non-interactive backend. Recorded per chapter: wall seconds, the cells that
raised (there should be none), and the 1-minute load average before and after; plus the hardware.
Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from xattn_edu.common.device import hardware_info, resolve_device
from xattn_edu.grader.build import Chapter, find_chapters, master_notebook

LIMIT_SECONDS = 600.0  # the chapter issues' bar for the full CPU run


def run_chapter(chapter: Chapter, timeout: float, keep: Path | None = None, fast: bool = False) -> dict:
    """Execute one chapter's master notebook in full mode; its wall time and the errors its cells raised.
    ``keep``: a folder to write the executed notebook into (its printed figures), else it is dropped.
    ``fast``: run it in fast mode instead (``XATTN_FAST=1``: checks the script in seconds, measures nothing)."""
    notebook = master_notebook(chapter)
    env_before = {key: os.environ.pop(key) for key in ("XATTN_FAST", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                  if key in os.environ}  # fmt: skip
    os.environ["MPLBACKEND"] = "agg"
    if fast:
        os.environ["XATTN_FAST"] = "1"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="xattn-chapter-") as folder:
            client = NotebookClient(notebook, timeout=int(timeout), kernel_name="python3", allow_errors=True,
                                    resources={"metadata": {"path": folder}})  # fmt: skip
            client.execute()
    finally:
        os.environ.pop("XATTN_FAST", None)
        os.environ.update(env_before)
    seconds = time.perf_counter() - started
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / f"{chapter.name}.ipynb")
    errors = [f"cell {index}: {output['ename']}: {output['evalue'][:200]}" for index, cell in enumerate(notebook.cells)
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]  # fmt: skip
    return {"chapter": chapter.name, "seconds": round(seconds, 1), "under_limit": seconds < LIMIT_SECONDS,
            "errors": errors, "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one cell may take")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", type=Path, help="write the executed notebooks into this folder")
    parser.add_argument("--fast", action="store_true", help="fast mode: checks this script, measures nothing")
    args = parser.parse_args()

    report = {"benchmark": "full-mode run of each chapter's solution notebook",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              **hardware_info(resolve_device("cpu")), "fast_mode": args.fast, "limit_seconds": LIMIT_SECONDS,
              "chapters": []}  # fmt: skip
    for chapter in find_chapters(args.chapters):
        print(f"running {chapter.name} ...", file=sys.stderr, flush=True)
        report["chapters"].append(run_chapter(chapter, args.timeout, args.keep, args.fast))
        print(json.dumps(report["chapters"][-1]), file=sys.stderr, flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
