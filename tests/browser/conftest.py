"""Fixtures for the browser suite: one JupyterLab server, one headless chromium and one tab for all its tests.

They are package-scoped (this directory is a package), so the server and the browser stop as soon as
the last browser test is done instead of idling through the rest of a ``pytest`` run.

Tests here are marked ``browser`` (deselect with ``-m "not browser"``). They are skipped, with the
reason, where ``/usr/bin/chromium`` or python playwright is missing; CI (``.ci/run``) installs Debian
chromium, so they run there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

# Kernels inherit the server's environment: fast notebooks, and one thread each on a shared CPU.
KERNEL_ENV = {"XATTN_FAST": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="package")
def lab_server():
    """A running JupyterLab (random port and token, throwaway root); stopped with its kernels at the end."""
    if not harness.CHROMIUM.exists():
        pytest.skip(f"{harness.CHROMIUM} not found: install Debian chromium (apt-get install chromium) to run these")
    with harness.LabServer(env=KERNEL_ENV) as server:
        yield server


@pytest.fixture(scope="package")
def browser_context(lab_server, tmp_path_factory):
    """Headless Debian chromium (DESIGN §9 flags) with a fresh profile directory."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        context = harness.launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.call_failed = report.failed  # read by lab_page's teardown
    return report


@pytest.fixture(scope="package")
def _lab_tab(browser_context):
    """One browser tab for the suite (JupyterLab loads once) and the list of its console errors/warnings."""
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []

    def keep(message) -> None:
        if message.type in ("error", "warning"):
            console.append(f"{message.type}: {message.text}")

    page.on("console", keep)
    yield page, console
    page.close()


@pytest.fixture
def lab_page(_lab_tab, lab_server, request, tmp_path):
    """The session's browser tab; afterwards every kernel is shut down.

    When the test fails, a screenshot and the tail of the server log are left for diagnosis, and the
    tab is blanked so that the next test loads JupyterLab afresh.
    """
    page, console = _lab_tab
    console.clear()
    yield page
    if getattr(request.node, "call_failed", False):
        page.screenshot(path=tmp_path / "failure.png", full_page=True)
        print(f"screenshot: {tmp_path / 'failure.png'}")
        print("browser console (last 20):", *console[-20:], sep="\n  ")
        print("server log (tail):", lab_server.log_tail(), sep="\n")
        page.goto("about:blank")
    lab_server.shutdown_kernels(wait=False)
