"""Widget latency in a real browser: slider move -> updated output, per chapter.

Starts JupyterLab and headless Debian chromium with the browser-test harness
(``tests/browser/harness.py``), runs each chapter's solution notebook (``XATTN_FAST=1``) from the
UI, then moves its first ``.xattn-slider`` back and forth ``--repeats`` times, by mouse drags
(25 % <-> 75 % of the track, through a midpoint) and then by End/Home key presses. Each latency is
measured inside the page, from the input event that set the final value (the keydown; the drag's
last pointermove) to the last change of the ``.xattn-live-output`` text. A minimal echo widget
(slider -> HTML) is timed too: the floor set by the browser, the widget protocol and the kernel,
with no chapter code.

Prints JSON: ``{"hardware": ..., "software": ..., "chapters": {"01_library_lookup": {"median_ms",
"p90_ms", "min_ms", "max_ms", "n", "keys": {...}, "notebook_run_s"}},
"baseline_echo": {...}}`` (top-level figures: drags; ``keys``: key presses).

    python benchmarks/widget_latency.py [--repeats 15] [--chapters 01_library_lookup ...]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from xattn_edu.common.device import hardware_info

REPO = Path(__file__).resolve().parents[1]


def _load_harness():
    spec = importlib.util.spec_from_file_location("xattn_browser_harness", REPO / "tests/browser/harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    chromium = subprocess.run(
        [str(harness.CHROMIUM), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    packages = ("jupyterlab", "ipywidgets", "playwright", "torch")
    return {"chromium": chromium, "python": platform.python_version(), **{p: version(p) for p in packages}}


def _summary(timing) -> dict[str, float]:
    return {
        "median_ms": round(timing.median_ms, 1),
        "p90_ms": round(timing.p90_ms, 1),
        "min_ms": round(min(timing.latencies_ms), 1),
        "max_ms": round(max(timing.latencies_ms), 1),
        "n": len(timing.latencies_ms),
    }


def _measure(context, server, notebook, repeats: int) -> dict[str, float]:
    page = context.new_page()
    try:
        report = harness.open_and_run(page, server, notebook)
        if report.errors or report.unexecuted:
            raise harness.HarnessError(f"{notebook}: errors {report.errors}, never ran {report.unexecuted}")
        drag = harness.drag_slider_and_time(page, slider_index=0, repeats=repeats, method="drag")
        keys = harness.drag_slider_and_time(page, slider_index=0, repeats=repeats, method="keys")
        return {**_summary(drag), "keys": _summary(keys), "notebook_run_s": round(report.seconds, 2)}
    finally:
        page.close()
        server.shutdown_kernels()  # waited for: an old kernel shutting down must not disturb the next timing


def main(argv: list[str] | None = None) -> int:
    """Time each chapter's widget in the browser; print the JSON report (exit status 2 on bad options)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="slider moves per widget (default 15)")
    parser.add_argument("--chapters", nargs="*", help="chapter stems (default: every solutions/NN_*.py)")
    args = parser.parse_args(argv)
    if not harness.CHROMIUM.exists():
        print(f"error: {harness.CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return 2
    sources = harness.chapter_sources(REPO / "solutions")
    if args.chapters:
        sources = [s for s in sources if s.stem in args.chapters]
        missing = sorted(set(args.chapters) - {s.stem for s in sources})
        if missing:
            print(f"error: no solutions/<chapter>.py for {', '.join(missing)}", file=sys.stderr)
            return 2

    from playwright.sync_api import sync_playwright

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # device: the kernels' default; the machine may be shared, hence the 1-minute load average at the start.
        "hardware": hardware_info(),
        "software": _versions(),
        "method": "first .xattn-slider of each notebook, timed in the page (performance.now()) from the input "
        "that set its final value (keydown; last pointermove of a drag) to the last change of the "
        ".xattn-live-output text, an upper bound of release -> updated output. "
        "Top level: mouse drags between 25% and 75% of the track through a midpoint (release with an update "
        "in flight); 'keys': End/Home presses (one update each). XATTN_FAST=1, OMP_NUM_THREADS=1 in the kernel",
        "chapters": {},
    }
    with (
        tempfile.TemporaryDirectory() as scratch,
        harness.LabServer(env={"XATTN_FAST": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as server,
        sync_playwright() as playwright,
    ):
        context = harness.launch_chromium(playwright, Path(scratch) / "profile")
        try:
            echo = harness.write_notebook(Path(scratch) / "baseline_echo.ipynb", [harness.ECHO_CELL])
            result["baseline_echo"] = _measure(context, server, echo, args.repeats)
            for source in sources:
                notebook = harness.add_chapter(server, source)
                result["chapters"][source.stem] = _measure(context, server, notebook, args.repeats)
        finally:
            context.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
