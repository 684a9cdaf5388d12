"""The chapter's Multi30k path: the solution notebook, in fast mode on CPU, on a few hundred pairs of the shared
raw files copied to a temporary folder (no network), with a published test set named by the settings."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from tests.chapters.translation.test_experiments import small_multi30k
from tests.helpers.grading import solution_notebook


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_notebook_runs_on_multi30k_files(tmp_path):
    from nbclient import NotebookClient

    folder = small_multi30k(tmp_path / "multi30k", {"train": 400, "val": 80, "test_2017_flickr": 80})
    env = {"XATTN_FAST": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg", "XATTN_CH6_DATA": "multi30k",
           "XATTN_MULTI30K_DIR": str(folder), "XATTN_MULTI30K_TEST": "test_2017_flickr"}
    with mock.patch.dict(os.environ, env):
        executed = NotebookClient(solution_notebook("06_translation"), timeout=300, kernel_name="python3",
                                  allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [(i, o["ename"], o["evalue"][:200]) for i, c in enumerate(executed.cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "data: multi30k" in text and "no gold alignments for this data" in text
    assert "split:            test_2017_flickr (80 sentences" in text
