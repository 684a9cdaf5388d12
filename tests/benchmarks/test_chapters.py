"""benchmarks/chapters.py: one chapter in fast mode gives a JSON row (time, no errors) and the executed notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chapters.py"


def test_one_chapter_in_fast_mode_is_timed_and_kept(tmp_path):
    out, keep = tmp_path / "chapters.json", tmp_path / "executed"
    done = subprocess.run([sys.executable, str(SCRIPT), "1", "--fast", "--out", str(out), "--keep", str(keep)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["fast_mode"] is True and report["cpu_cores"] >= 1
    (row,) = report["chapters"]
    assert row["chapter"] == "01_library_lookup" and row["errors"] == [] and row["seconds"] > 0
    executed = nbformat.read(keep / "01_library_lookup.ipynb", as_version=4)
    assert any(cell.get("outputs") for cell in executed.cells if cell.cell_type == "code")
