"""A kernel server: forks ready IPython kernels with the course's heavy imports already done.

Starting a Python kernel and importing torch, matplotlib and the course package costs about two
seconds of CPU per notebook, most of a small notebook's grading time. The server pays it once: it
imports everything a chapter's setup cell needs, then waits on a Unix socket. For each request
(the kernel command line, environment and working folder that jupyter_client would have used) it
forks; the child becomes a fresh IPython kernel in its own session and process group, and the
server tells the client the child's pid, later its exit status.

The server itself never runs notebook code, so every kernel starts from the same clean state, and
nothing one submission does in its kernel (patched modules, globals, threads) reaches another:
each is a separate copy-on-write process. Files on disk are shared, as with ordinary kernels.

A request ``{"verifier": true}`` forks the grader's verifier instead (:mod:`xattn_edu.chapters.support.verify`,
which needs the same chapter imports): it then speaks the verifier's JSON lines over that connection.

Run by the grader (``xattn_edu.grader.kernels``): ``python -m xattn_edu.chapters.support.kernel_server SOCKET``.
It prints ``ready`` once everything is imported.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import random
import select
import signal
import socket
import sys

PRELOAD = ("numpy", "torch", "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline", "IPython",
           "ipykernel.kernelapp", "ipykernel.ipkernel", "ipywidgets", "tqdm.auto", "xattn_edu.chapters.support")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def preload() -> None:
    """Import what kernels need, every chapter module included (their code is then fixed in memory)."""
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)  # what ipykernel would set before matplotlib loads
    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(1)  # no thread pool before fork; grading kernels run side by side anyway
    chapters = importlib.import_module("xattn_edu.chapters")
    for module in pkgutil.walk_packages(chapters.__path__, "xattn_edu.chapters."):
        if not module.name.endswith(("kernel_server", "verify")):
            importlib.import_module(module.name)


def _become_kernel(request: dict, open_sockets: list[socket.socket]) -> None:
    """In the forked child: detach from the server and run the kernel; never returns."""
    try:
        os.setsid()
        for sock in open_sockets:
            sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()
        import numpy as np

        np.random.seed()  # a fresh process would not share the server's global random state
        from ipykernel.kernelapp import IPKernelApp

        argv = request["argv"]
        app = IPKernelApp.instance()
        app.initialize(argv[argv.index("ipykernel_launcher") + 1:])
        app.start()
    finally:
        os._exit(0)


def _become_verifier(conn: socket.socket, open_sockets: list[socket.socket]) -> None:
    """In the forked child: serve the verifier's requests on ``conn`` until it closes; never returns."""
    try:
        for sock in open_sockets:
            sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from xattn_edu.chapters.support.verify import serve as serve_verifier

        serve_verifier(conn.makefile("r", encoding="utf-8"), conn.makefile("w", encoding="utf-8"))
    finally:
        os._exit(0)


def _send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the client went away; its kernel is killed or already gone


def _read_request(conn: socket.socket) -> dict | None:
    data = b""
    while not data.endswith(b"\n") and len(data) < 1 << 20:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    try:
        request = json.loads(data)
    except json.JSONDecodeError:
        return None
    if request == {"verifier": True}:
        return request
    ok = isinstance(request, dict) and isinstance(request.get("argv"), list) and "ipykernel_launcher" in request["argv"]
    return request if ok and isinstance(request.get("env"), dict) and isinstance(request.get("cwd"), str) else None


def _reap(waiting: dict[int, socket.socket]) -> None:
    """Tell the clients of finished kernels their exit status."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = waiting.pop(pid, None)
        if conn is not None:
            _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()


def serve(path: str) -> None:
    """Preload, listen on the Unix socket ``path``, and fork one kernel per request until killed."""
    preload()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads our stdout after "ready"
    waiting: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener], [], [], 0.05)
        if readable:
            conn, _ = listener.accept()
            request = _read_request(conn)
            if request is None:
                _send(conn, {"error": "not a kernel request"})
                conn.close()
            elif "verifier" in request:
                if os.fork() == 0:
                    _become_verifier(conn, [listener, *waiting.values()])
                conn.close()  # the verifier's own now; it says its pid when ready
            else:
                pid = os.fork()
                if pid == 0:
                    _become_kernel(request, [listener, conn, *waiting.values()])
                _send(conn, {"pid": pid})
                waiting[pid] = conn
        _reap(waiting)


if __name__ == "__main__":
    from xattn_edu.common.process import die_with_parent

    die_with_parent()
    serve(sys.argv[1])
