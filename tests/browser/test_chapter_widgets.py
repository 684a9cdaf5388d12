"""Every chapter's solution notebook runs in JupyterLab, and its first slider updates its output live.

For each ``solutions/NN_slug.py``: jupytext makes the SOLUTION notebook (the student release stops at
the exercises), JupyterLab runs all its cells with ``XATTN_FAST=1``, no cell may show an error, and
dragging the first ``.xattn-slider`` to 75 % and 25 % of its track (twice) must change the text of
its ``.xattn-live-output`` each time, to the same text each time it returns to the same place.
The latency is recorded (``record_property``), not asserted: ``benchmarks/widget_latency.py`` measures it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import add_chapter, chapter_sources, drag_slider_and_time, open_and_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CHAPTERS = chapter_sources(Path(__file__).resolve().parents[2] / "solutions")


@pytest.mark.parametrize("source", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_chapter_widget_updates_live(source: Path, lab_page, lab_server, record_property) -> None:
    report = open_and_run(lab_page, lab_server, add_chapter(lab_server, source))
    assert report.errors == [], f"{source.name}: cells raised errors: {report.errors}"
    assert report.unexecuted == [], f"{source.name}: cells never ran: {report.unexecuted}"

    # Each move must change the output (the harness raises otherwise), and returning to a position
    # must show the same thing again: the output is a function of the slider.
    timing = drag_slider_and_time(lab_page, slider_index=0, repeats=4)
    assert timing.texts[1::2] == [timing.texts[1]] * 2, f"{source.name}: same position, different outputs"
    assert timing.texts[2::2] == [timing.texts[2]] * 2, f"{source.name}: same position, different outputs"
    record_property("notebook_run_s", round(report.seconds, 2))
    record_property("slider_latency_median_ms", round(timing.median_ms, 1))
    slowest = ", ".join(f"cell {index} {seconds:.1f} s" for index, seconds in report.slowest())
    print(
        f"{source.stem}: ran in {report.seconds:.1f} s (slowest: {slowest}); "
        f"slider latency median {timing.median_ms:.0f} ms"
    )
