"""Drive JupyterLab in headless Debian chromium the way a student would (DESIGN §9).

Used by the browser tests (``tests/browser``) and by ``benchmarks/widget_latency.py``.

- :class:`LabServer` starts ``python -m jupyterlab`` on a free port with a random token, an
  isolated config/settings/workspace directory and no network calls (news, update check,
  extension manager off), and always stops it together with its kernels.
- :func:`launch_chromium` starts ``/usr/bin/chromium`` through playwright (never ``playwright install``).
- :func:`open_and_run` opens a notebook in JupyterLab and runs all its cells from the UI.
- :func:`drag_slider_and_time` drags a ``.xattn-slider`` with the mouse (or moves it with End/Home)
  and times, in the page, how long the ``.xattn-live-output`` next to it takes to show the new value.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

# DESIGN §9: flags checked with Chromium 156 (Debian) and playwright. Plus --disable-dev-shm-usage:
# containers often have a tiny /dev/shm, on which chromium crashes; Debian's launcher means to add it
# (/etc/chromium.d/dev-shm) but its size check can fail (findmnt printing several lines).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# Server extensions that only add start-up time or network/database side effects in a test.
_DISABLED_SERVER_EXTENSIONS = [
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
]

# Front-end plugins whose servers are off or which would reach the network.
_DISABLED_LAB_PLUGINS = [
    "@jupyter/nbgrader",
    "@jupyterlab/extensionmanager-extension",
    "@jupyterlab/apputils-extension:announcements",
]

# User settings: never ask about or fetch news, never check for updates; record cell timings.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"recordTiming": True},
}


class HarnessError(RuntimeError):
    """The server or the page did not reach the state the harness waited for."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a live process, from ``/proc`` (Linux); None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name: state, ppid, ..., starttime
    return int(fields[1]), int(fields[19])


def _descendants(pid: int) -> list[tuple[int, int]]:
    """``(pid, start time)`` of every process below ``pid`` (kernels included: they run in their own sessions)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(int(entry.name))
        if stat is not None:
            parents[int(entry.name)] = stat
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in parents.items() if ppid == parent]
        found += [(child, parents[child][1]) for child in children]
        frontier += children
    return found


@dataclass
class LabServer:
    """A JupyterLab server in a throwaway directory; use as a context manager.

    ``env`` is added to the server's environment, so kernels inherit it (e.g. ``XATTN_FAST=1``); a value of
    None removes that variable.
    With ``course_root``, the server runs as the instructor guide and the README start it: in the course
    root (its working directory and root directory), nbgrader's server extensions and JupyterLab plugin
    on; ``args`` are added to its command line (e.g. a notebook to open). Either way every Jupyter path
    (config, data, runtime, settings, workspaces) is a throwaway one: nothing is written to the user's own.
    ``python`` runs it (default: this interpreter, by its full path).
    """

    env: dict[str, str | None] = field(default_factory=dict)
    course_root: Path | None = None
    args: tuple[str, ...] = ()
    python: str = sys.executable
    startup_timeout_s: float = 60.0
    port: int = 0
    token: str = ""
    base: Path | None = None
    process: subprocess.Popen | None = None
    _shutdowns: list[threading.Thread] = field(default_factory=list, init=False, repr=False)

    @property
    def root_dir(self) -> Path:
        if self.course_root is not None:
            return self.course_root
        assert self.base is not None, "server not started"
        return self.base / "root"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "server.log"

    def __enter__(self) -> LabServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="xattn-lab-"))
        self.port, self.token = _free_port(), secrets.token_hex(16)
        config_dir, settings_dir = self.base / "config", self.base / "settings"
        for directory in (self.root_dir, config_dir / "labconfig", settings_dir, self.base / "workspaces"):
            directory.mkdir(parents=True, exist_ok=True)
        course = self.course_root is not None
        off_extensions = [] if course else _DISABLED_SERVER_EXTENSIONS
        off_plugins = [p for p in _DISABLED_LAB_PLUGINS if not (course and p == "@jupyter/nbgrader")]
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {"jpserver_extensions": dict.fromkeys(off_extensions, False)},
                    # Keep notebook trust signatures out of the user's data directory.
                    "NotebookNotary": {"db_file": ":memory:", "secret_file": str(self.base / "notary_secret")},
                    "LabApp": {
                        "news_url": None,
                        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                        "extension_manager": "readonly",
                    },
                }
            )
        )
        (config_dir / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": dict.fromkeys(off_plugins, True)})
        )
        for name, values in _LAB_SETTINGS.items():
            path = settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.base / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self.base / "runtime"),
            "JUPYTER_DATA_DIR": str(self.base / "data"),  # nbgrader's exchange cache, notebook secrets
            "IPYTHONDIR": str(self.base / "ipython"),  # no user start-up files or history in kernels
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            **self.env,
        }
        env = {name: value for name, value in env.items() if value is not None}
        command = [
            self.python, "-m", "jupyterlab",
            "--no-browser", "--allow-root",
            f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
            *self.args,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root_dir
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise HarnessError(f"JupyterLab exited at start-up:\n{log}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        log = self.log_tail()
        self.stop()
        raise HarnessError(f"JupyterLab did not answer /api/status in {self.startup_timeout_s:.0f} s:\n{log}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def api(self, method: str, path: str, timeout: float = 10, body: object = None) -> object:
        """Call the server's REST API with the token (and a JSON ``body``); returns the decoded JSON (or None)."""
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"},
            data=None if body is None else json.dumps(body).encode("utf-8"),
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def get_page(self, path: str, timeout: float = 60) -> str:
        """The text of the page at ``path`` (an HTML page of a server extension, e.g. the Formgrader's)."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")

    def run_in_new_kernel(self, code: str, timeout_s: float = 60) -> str:
        """Start a kernel the way JupyterLab does (REST API), run ``code`` in it, return what it printed."""
        from jupyter_client import BlockingKernelClient

        kernel = self.api("POST", "/api/kernels", body={"name": "python3"}, timeout=timeout_s)
        client = BlockingKernelClient()
        client.load_connection_file(str(self.base / "runtime" / f"kernel-{kernel['id']}.json"))
        client.start_channels(hb=False)  # the server watches the heartbeat; a second watcher only races it
        printed: list[str] = []
        try:
            client.wait_for_ready(timeout=timeout_s)
            reply = client.execute_interactive(code, timeout=timeout_s, output_hook=lambda msg: printed.append(
                msg["content"].get("text", "") if msg["msg_type"] == "stream" else ""))
        finally:
            client.stop_channels()
            self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        if reply["content"]["status"] != "ok":
            raise HarnessError(f"the kernel could not run the code: {reply['content'].get('evalue')}")
        return "".join(printed)

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def add_notebook(self, notebook: Path, name: str | None = None) -> str:
        """Copy an .ipynb into the server root; returns its path relative to the root."""
        target = self.root_dir / (name or notebook.name)
        shutil.copyfile(notebook, target)
        return target.name

    def shutdown_kernels(self, wait: bool = True) -> None:
        """Shut down every running kernel (between tests, so kernels do not pile up).

        With ``wait=False`` the (graceful, seconds-long) shutdowns run in a background thread,
        overlapping whatever comes next; :meth:`stop` waits for them.
        """
        kernel_ids = [kernel["id"] for kernel in self.api("GET", "/api/kernels")]

        def shut_down() -> None:
            for kernel_id in kernel_ids:
                try:
                    self.api("DELETE", f"/api/kernels/{kernel_id}", timeout=30)
                except (OSError, urllib.error.URLError):
                    pass  # already gone, or the server is stopping (stop() kills what is left)

        if wait:
            shut_down()
        else:
            thread = threading.Thread(target=shut_down, daemon=True)
            thread.start()
            self._shutdowns.append(thread)

    def stop(self) -> None:
        """Stop the server and its kernels, whatever state they are in; remove the directory."""
        for thread in self._shutdowns:
            thread.join(timeout=30)
        self._shutdowns.clear()
        process, self.process = self.process, None
        if process is not None:
            children = _descendants(process.pid)
            if process.poll() is None:
                try:
                    self.api("POST", "/api/shutdown", timeout=5)  # shuts kernels down cleanly
                    process.wait(timeout=10)
                except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                    pass
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            for pid, started in children:  # left over only if the clean shutdown failed
                stat = _proc_stat(pid)
                if stat is not None and stat[1] == started:  # the same process, not a reused pid
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def launch_chromium(playwright, user_data_dir: Path):
    """A headless Debian chromium as a persistent playwright context in a fresh profile directory."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )


# --- notebooks ---------------------------------------------------------------------------------

# Defines `echo(slider, delay_s=0.0)`, which shows the slider's value in an HTML output (after
# sleeping `delay_s` in the callback), and displays one echo: the smallest widget the harness can
# time, i.e. the cost of the browser <-> kernel round trip itself.
ECHO_CELL = """import time
import ipywidgets as widgets


def echo(slider, delay_s=0.0):
    out = widgets.HTML(value=f"value {slider.value}")
    out.add_class("xattn-live-output")
    slider.add_class("xattn-slider")

    def show(change):
        time.sleep(delay_s)
        out.value = f"value {change['new']}"

    slider.observe(show, names="value")
    return widgets.VBox([slider, out])


echo(widgets.IntSlider(value=3, min=0, max=10))"""


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write code cells as a Python 3 notebook at ``path``."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, path)
    return path


def chapter_sources(solutions_dir: Path) -> list[Path]:
    """The chapters' instructor sources, ``solutions/NN_slug.py``, in order."""
    return sorted(solutions_dir.glob("[0-9][0-9]_*.py"))


def add_chapter(server: LabServer, source: Path) -> str:
    """Convert ``solutions/NN_slug.py`` with jupytext into the server root (the SOLUTION notebook)."""
    import jupytext

    name = f"{source.stem}.ipynb"
    jupytext.write(jupytext.read(source), server.root_dir / name)
    return name


# --- running a notebook ------------------------------------------------------------------------

_HAS_APP_JS = "() => !!window.jupyterapp"

_OPEN_IN_APP_JS = """async (path) => {
  const app = window.jupyterapp;
  for (const widget of [...app.shell.widgets('main')]) {
    if (widget.context) widget.context.model.dirty = false;  // close without a "save changes?" dialog
    widget.dispose();
  }
  await app.commands.execute('docmanager:open', { path });
}"""

_NOTEBOOK_READY_JS = """(path) => {
  const app = window.jupyterapp;
  if (!app) return false;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== path || !panel.context.isReady) return false;
  const session = panel.sessionContext;
  return session.isReady && !!session.session && !!session.session.kernel
    && session.session.kernel.status === 'idle';
}"""

_RUN_ALL_JS = """async () => {
  await window.jupyterapp.commands.execute('notebook:run-all-cells');
}"""

_EXECUTION_DONE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const prompts = panel.content.node.querySelectorAll('.jp-InputArea-prompt');
  return ![...prompts].some((p) => p.textContent.includes('*'));
}"""

SETTLE_S = 5.0  # how long Run All must show no progress before a run that left cells unexecuted counts as stopped

_CELL_REPORT_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outputs = cell.model.outputs.toJSON();
    const timing = cell.model.getMetadata('execution') || {};
    const start = Date.parse(timing['iopub.execute_input']);
    const end = Date.parse(timing['shell.execute_reply']);
    cells.push({
      index,
      seconds: Number.isFinite(end - start) ? (end - start) / 1000 : null,
      executionCount: cell.model.executionCount,
      empty: cell.model.sharedModel.getSource().trim() === '',
      errors: outputs.filter((o) => o.output_type === 'error')
        .map((o) => `${o.ename}: ${o.evalue}`),
    });
  });
  return cells;
}"""


@dataclass
class RunReport:
    """What running all cells of a notebook in the browser left behind."""

    seconds: float  # wall time from "run all" to kernel idle with no [*] prompt
    cells: list[dict]  # per code cell: index, seconds, executionCount, empty, errors

    @property
    def errors(self) -> list[str]:
        """One line per error output: ``cell <index>: <ename>: <evalue>``."""
        return [f"cell {c['index']}: {e}" for c in self.cells for e in c["errors"]]

    def slowest(self, count: int = 3) -> list[tuple[int, float]]:
        """The ``count`` slowest cells as ``(index, seconds)``, slowest first (kernel-side timings)."""
        timed = [(c["index"], c["seconds"]) for c in self.cells if c["seconds"] is not None]
        return sorted(timed, key=lambda pair: -pair[1])[:count]

    @property
    def unexecuted(self) -> list[int]:
        """Indices of non-empty code cells that never ran (run-all stops at the first error)."""
        return [c["index"] for c in self.cells if c["executionCount"] is None and not c["empty"]]


def open_and_run(page, server: LabServer, notebook: Path | str, timeout_s: float = 120) -> RunReport:
    """Open ``notebook`` in JupyterLab, run all cells from the UI and wait until they are done.

    A ``Path`` outside the server root is copied in first; a ``str`` is a path relative to the root.
    A page that already shows this server's JupyterLab is reused (other documents are closed without
    saving, the notebook is opened as the file browser would), which saves loading the app again.
    """
    name = server.add_notebook(notebook) if isinstance(notebook, Path) else notebook
    timeout_ms = timeout_s * 1000
    if page.url.startswith(server.url + "/lab") and page.evaluate(_HAS_APP_JS):
        page.evaluate(_OPEN_IN_APP_JS, name)
    else:
        page.goto(server.lab_url(name), timeout=timeout_ms)
    page.wait_for_function(_NOTEBOOK_READY_JS, arg=name, timeout=timeout_ms, polling=100)
    start = time.perf_counter()
    page.evaluate(_RUN_ALL_JS)
    # After a cell that raises (tagged raises-exception), JupyterLab sends the next cell only once the error
    # reply is in and rendered: for a while (seconds, measured) the kernel is idle and no prompt shows [*].
    # Done: every code cell ran, or nothing changed for SETTLE_S (Run All really stopped).
    previous = None
    while True:
        page.wait_for_function(_EXECUTION_DONE_JS, timeout=timeout_ms, polling=100)
        report = RunReport(seconds=time.perf_counter() - start, cells=page.evaluate(_CELL_REPORT_JS))
        if not report.unexecuted or (report.unexecuted == previous and page.evaluate(_EXECUTION_DONE_JS)):
            return report
        previous = report.unexecuted
        time.sleep(SETTLE_S)


# --- timing a slider ---------------------------------------------------------------------------

# Installed before each move. The clock is the page's performance.now(). t0 is the timestamp of the
# last input event that set the slider's final value: the keydown (noUiSlider moves on keydown), or
# the last pointermove of a drag (or its pointerdown if it never moved). tr is the release (keyup,
# pointerup), which comes after t0, so t1 - t0 bounds release -> output from above, without counting
# how long the gesture itself took. t1 is the MutationObserver callback in which the outputs' text
# last changed before staying still for `settleMs` (so an output that is cleared and then redrawn is
# timed to its final text, not to the intermediate blank).
_ARM_JS = """([index, settleMs]) => {
  const slider = document.querySelectorAll('.xattn-slider')[index];
  const handle = slider.querySelector('.noUi-handle');
  let scope = slider;
  while (scope && !scope.querySelector('.xattn-live-output')) scope = scope.parentElement;
  if (!scope) throw new Error('no .xattn-live-output on the page next to .xattn-slider #' + index);
  const outputs = [...scope.querySelectorAll('.xattn-live-output')];
  const text = () => outputs.map((o) => o.textContent).join('\\u241e');
  const probe = { before: text(), t0: null, tr: null, t1: null, last: null, pressed: false, settleMs };
  probe.last = probe.before;
  probe.observer = new MutationObserver(() => {
    const now = performance.now();
    const current = text();
    if (current !== probe.last && current !== probe.before) probe.t1 = now;
    probe.last = current;
  });
  outputs.forEach((o) => probe.observer.observe(o, { subtree: true, childList: true, characterData: true }));
  probe.listeners = [
    [handle, 'keydown', (e) => { probe.t0 = e.timeStamp; }],
    [handle, 'pointerdown', (e) => { probe.pressed = true; probe.t0 = e.timeStamp; }],
    // noUiSlider follows the pointer on the document while dragging: listen there for moves and release.
    [document, 'pointermove', (e) => { if (probe.pressed) probe.t0 = e.timeStamp; }],
    [document, 'pointerup', (e) => { probe.pressed = false; probe.tr = e.timeStamp; }],
    [document, 'keyup', (e) => { probe.tr = e.timeStamp; }],
  ];
  probe.listeners.forEach(([target, type, listener]) => target.addEventListener(type, listener, true));
  window.__xattnProbe = probe;
  return { now: Number(handle.getAttribute('aria-valuenow')),
           min: Number(handle.getAttribute('aria-valuemin')),
           max: Number(handle.getAttribute('aria-valuemax')) };
}"""

_SETTLED_JS = """() => {
  const p = window.__xattnProbe;
  return p.t1 !== null && p.last !== p.before && performance.now() - p.t1 > p.settleMs;
}"""

_DISARM_JS = """() => {
  const p = window.__xattnProbe;
  p.observer.disconnect();
  p.listeners.forEach(([target, type, listener]) => target.removeEventListener(type, listener, true));
  delete window.__xattnProbe;
  return { t0: p.t0, tr: p.tr, t1: p.t1, before: p.before, after: p.last };
}"""

# Where a drag puts the handle, as a fraction of the track: towards the end, towards the start.
# Not the ends themselves, which can show the same thing (an angle of 0 and of 360 degrees).
DRAG_FRACTIONS = {"end": 0.75, "home": 0.25}
_KEYS = {"end": "End", "home": "Home"}
_KEY_FRACTIONS = {"end": 1.0, "home": 0.0}
_OTHER = {"end": "home", "home": "end"}


@dataclass
class SliderTiming:
    """Latencies of repeated slider moves, each from the input that set the value to the output's final text."""

    latencies_ms: list[float]
    texts: list[str]  # the outputs' text before the first move, then after each move

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p90_ms(self) -> float:
        """The 90th percentile, nearest-rank definition."""
        return sorted(self.latencies_ms)[math.ceil(0.9 * len(self.latencies_ms)) - 1]


_HITS_HANDLE_JS = """([x, y, index]) => {
  const handle = document.querySelectorAll('.xattn-slider')[index].querySelector('.noUi-handle');
  const hit = document.elementFromPoint(x, y);
  return hit !== null && handle.contains(hit);
}"""


def _settled_box(locator, timeout_s: float) -> dict[str, float]:
    """The element's bounding box once it stops moving (JupyterLab lays cells out again after a scroll)."""
    deadline = time.monotonic() + timeout_s
    previous, still = None, 0
    while time.monotonic() < deadline:
        box = locator.bounding_box()
        still = still + 1 if box is not None and box == previous else 0
        if still == 3:  # unchanged for 150 ms
            return box
        previous = box
        time.sleep(0.05)
    raise HarnessError(f"the slider did not stay in place for 150 ms within {timeout_s} s (last box {previous})")


def _visible_box(page, locator, timeout_s: float, tries: int = 5) -> dict[str, float]:
    """The settled box of ``locator``, scrolled into the viewport again while a re-layout pushed it out.

    Cells above the slider may render only once scrolled past (JupyterLab's windowed notebook), so a long
    notebook can move the slider after the first scroll.
    """
    box = _settled_box(locator, timeout_s)
    for _ in range(tries):
        viewport = page.viewport_size
        if viewport is None or (0 <= box["y"] and box["y"] + box["height"] <= viewport["height"]):
            break
        locator.scroll_into_view_if_needed(timeout=timeout_s * 1000)
        box = _settled_box(locator, timeout_s)
    return box


def _drag(page, slider_index: int, handle, slider, fraction: float, timeout_s: float) -> None:
    """Press the handle, move it to ``fraction`` of the track (from min to max) and release it.

    The handle is brought back into view before each try (:func:`_visible_box`): JupyterLab lays out cells
    again as figures above them render, which can push a handle scrolled into view earlier out of the window.
    """
    for _ in range(2):
        grip = _visible_box(page, handle, timeout_s)
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        if page.evaluate(_HITS_HANDLE_JS, [x, y, slider_index]):
            break
        handle.scroll_into_view_if_needed(timeout=timeout_s * 1000)
    else:
        raise HarnessError(f"something covers the handle of .xattn-slider #{slider_index} at ({x:.0f}, {y:.0f})")
    track = slider.locator(".noUi-base").first.bounding_box()  # moves with the handle, which is still now
    if track is None:
        raise HarnessError(f"the track of .xattn-slider #{slider_index} is not displayed")
    page.mouse.move(x, y)
    page.mouse.down()
    if track["height"] > track["width"]:  # vertical slider: min at the bottom
        page.mouse.move(x, track["y"] + (1 - fraction) * track["height"], steps=2)
    else:
        page.mouse.move(track["x"] + fraction * track["width"], y, steps=2)
    page.mouse.up()


def drag_slider_and_time(
    page,
    slider_index: int = 0,
    direction: str = "end",
    repeats: int = 1,
    method: str = "drag",
    timeout_s: float = 10,
    settle_ms: float = 150,
) -> SliderTiming:
    """Move the ``slider_index``-th ``.xattn-slider`` back and forth ``repeats`` times; time each move.

    ``method="drag"`` drags the slider's ``.noUi-handle`` with the mouse to 75 % of its track, then
    to 25 %, and so on (:data:`DRAG_FRACTIONS`), through one intermediate point, so that, as in a
    person's drag, an update is still in flight when the last one is sent; ``method="keys"`` focuses
    the handle and presses End, then Home, as a keyboard user would (one update per move).
    ``direction`` ("end" or "home") picks the first move; a first move that would leave the value
    where it is starts from the other side. Each latency is measured in the page, from the input event
    that set the final value (the keydown; the drag's last pointermove) to the moment the text of the
    ``.xattn-live-output`` element(s) in the slider's closest container changed for the last time; the
    release follows that event, so this bounds "release -> updated output" from above. Raises
    :class:`HarnessError` if a move does not change that text within ``timeout_s``.
    """
    if direction not in _KEYS:
        raise ValueError(f"direction must be 'end' or 'home', got {direction!r}")
    if method not in ("drag", "keys"):
        raise ValueError(f"method must be 'drag' or 'keys', got {method!r}")
    slider = page.locator(".xattn-slider").nth(slider_index)
    handle = slider.locator(".noUi-handle").first
    try:
        handle.wait_for(state="attached", timeout=timeout_s * 1000)
    except Exception as error:  # playwright's TimeoutError
        count = page.locator(".xattn-slider").count()
        raise HarnessError(
            f"no .noUi-handle in .xattn-slider #{slider_index} after {timeout_s} s "
            f"({count} element(s) with class xattn-slider on the page)"
        ) from error
    handle.scroll_into_view_if_needed(timeout=timeout_s * 1000)
    latencies, texts = [], []
    for move in range(repeats):
        value = page.evaluate(_ARM_JS, [slider_index, settle_ms])
        if move == 0:  # would the first move change the value at all?
            fraction = (DRAG_FRACTIONS if method == "drag" else _KEY_FRACTIONS)[direction]
            span = value["max"] - value["min"]
            if abs(value["now"] - (value["min"] + fraction * span)) <= 0.05 * span:
                direction = _OTHER[direction]
        if method == "drag":
            _drag(page, slider_index, handle, slider, DRAG_FRACTIONS[direction], timeout_s)
        else:
            handle.focus()
            handle.press(_KEYS[direction])
        try:
            page.wait_for_function(_SETTLED_JS, timeout=timeout_s * 1000, polling="raf")
        except Exception as error:  # playwright's TimeoutError
            probe = page.evaluate(_DISARM_JS)
            raise HarnessError(
                f"moving .xattn-slider #{slider_index} ({method}, towards {direction}) did not change "
                f".xattn-live-output within {timeout_s} s (text stayed {probe['before'][:200]!r})"
            ) from error
        probe = page.evaluate(_DISARM_JS)
        if probe["t0"] is None or probe["tr"] is None:
            raise HarnessError(f"the handle of .xattn-slider #{slider_index} never saw the {method} gesture")
        if not texts:
            texts.append(probe["before"])
        texts.append(probe["after"])
        latencies.append(probe["t1"] - probe["t0"])
        direction = _OTHER[direction]
    return SliderTiming(latencies_ms=latencies, texts=texts)
