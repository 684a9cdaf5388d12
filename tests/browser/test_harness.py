"""The harness itself, on a notebook written here: it runs cells, finds errors and times sliders.

This proves the browser machinery before (and independently of) any chapter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import ECHO_CELL, HarnessError, drag_slider_and_time, open_and_run, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SLOW_CALLBACK_S = 0.3

CELLS = [
    ECHO_CELL,  # slider 0: echoes its value
    f"echo(widgets.IntSlider(value=5, min=0, max=10), delay_s={SLOW_CALLBACK_S})",  # slider 1: slow echo
    # slider 2: its output never changes
    """frozen = widgets.HTML(value="never changes")
frozen.add_class("xattn-live-output")
still = widgets.IntSlider(value=5, min=0, max=10)
still.add_class("xattn-slider")
widgets.VBox([still, frozen])""",
    # kernels inherit the server's environment (conftest.KERNEL_ENV)
    'import os\nassert os.environ.get("XATTN_FAST") == "1", "XATTN_FAST not set in the kernel"',
    'raise ValueError("planned failure")',
]


def test_harness_runs_cells_and_times_sliders(lab_page, lab_server, tmp_path: Path) -> None:
    report = open_and_run(lab_page, lab_server, write_notebook(tmp_path / "harness_selftest.ipynb", CELLS))
    # Every cell ran, and only the planned failure shows up as an error.
    assert report.unexecuted == []
    assert report.errors == [f"cell {len(CELLS) - 1}: ValueError: planned failure"]
    assert report.cells[1]["seconds"] >= 0  # JupyterLab recorded kernel-side timings

    # Keyboard: End and Home alternate, and the output follows the slider each time.
    keys = drag_slider_and_time(lab_page, slider_index=0, direction="end", repeats=4, method="keys")
    assert keys.texts == ["value 3", "value 10", "value 0", "value 10", "value 0"]
    assert all(latency > 0 for latency in keys.latencies_ms)

    # Mouse: dragged to 3/4 of the track (0..10), then to 1/4, and the output follows.
    drags = drag_slider_and_time(lab_page, slider_index=0, direction="end", repeats=2, method="drag")
    assert drags.texts[1] in ("value 7", "value 8") and drags.texts[2] in ("value 2", "value 3"), drags.texts

    # The timing covers the kernel round trip: it cannot be shorter than the callback's own sleep.
    slow = drag_slider_and_time(lab_page, slider_index=1, direction="home", repeats=2, method="keys")
    assert slow.texts == ["value 5", "value 0", "value 10"]
    assert min(slow.latencies_ms) >= SLOW_CALLBACK_S * 1000

    # An output that does not follow its slider is reported, not timed; so is a missing slider.
    with pytest.raises(HarnessError, match="did not change"):
        drag_slider_and_time(lab_page, slider_index=2, timeout_s=1)
    with pytest.raises(HarnessError, match="3 element"):
        drag_slider_and_time(lab_page, slider_index=3, timeout_s=1)
