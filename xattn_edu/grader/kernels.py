"""Grading kernels from the kernel server, instead of a new Python process per notebook.

:class:`KernelServer` starts ``xattn_edu.chapters.support.kernel_server`` (which imports torch,
matplotlib and the chapters once) and publishes its socket in the environment variable
:data:`SERVER_ENV`. While it is set, nbgrader's executor (``xattn_edu.grader.autograde.XattnExecute``)
uses :class:`ForkKernelManager`: jupyter_client prepares the connection file and command line as
usual, and :class:`ForkProvisioner` hands them to the server, which forks the kernel. The kernel is
then driven, interrupted and killed like any other (signals go to its own process group).

Three waits that jupyter_client pays on every kernel are cut here, since a grading run starts one
kernel per notebook (``benchmarks/grading.py`` times a forked kernel's start with either client, and its kill):

* the launch returns once the kernel has bound its sockets, so the client's first connection
  succeeds instead of retrying after zmq's reconnect interval;
* :class:`ForkedKernelClient` returns from the kernel_info handshake as soon as the kernel has
  answered on both shell and IOPub, without jupyter_client's final 0.2 s wait for IOPub to fall silent
  (nbclient reads only the replies to its own requests, so the messages left there are ignored);
* a kill waits for the server's word that the kernel has exited, instead of polling every 0.1 s.

Start the server in the process that grades (a class-grading worker), after its resource limits
are set: the server and its kernels inherit them.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Type

from xattn_edu.common.errors import UserError

SERVER_ENV = "XATTN_KERNEL_SERVER"
"""Environment variable holding the kernel server's socket path while one runs for this process."""
START_SECONDS = 120.0
BIND_SECONDS = 10.0
"""How long a launch waits for a forked kernel to bind its sockets (the client's own timeouts apply after)."""


class ForkedKernel:
    """The ``subprocess.Popen``-like handle of a kernel forked by the server (not our child)."""

    def __init__(self, conn: socket.socket, pid: int) -> None:
        self.conn, self.pid = conn, pid
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None

    def _read_exit(self, block: bool) -> None:
        self.conn.setblocking(block)
        try:
            data = self.conn.recv(4096)
        except BlockingIOError:
            return
        finally:
            self.conn.setblocking(True)
        try:
            self.returncode = int(json.loads(data)["exit"]) if data else -1
        except (ValueError, KeyError, TypeError):
            self.returncode = -1

    def poll(self) -> int | None:
        """The exit status once the kernel has ended, else None."""
        if self.returncode is None:
            self._read_exit(block=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the kernel has ended (at most ``timeout`` seconds); its exit status, None if still running."""
        if self.returncode is None:
            self.conn.settimeout(timeout)
            try:
                self._read_exit(block=True)
            except TimeoutError:
                pass
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the kernel process."""
        os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the kernel."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the kernel."""
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching through the kernel server instead of ``Popen``."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(os.environ[SERVER_ENV])
        cwd = str(kwargs.get("cwd") or os.getcwd())
        request = {"argv": cmd, "env": dict(kwargs.get("env") or os.environ), "cwd": cwd}
        conn.sendall((json.dumps(request) + "\n").encode())
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                raise RuntimeError("the kernel server closed the connection")
            line += chunk
        reply = json.loads(line)
        if "pid" not in reply:
            raise RuntimeError(f"the kernel server refused: {reply.get('error', reply)}")
        self.process = ForkedKernel(conn, int(reply["pid"]))
        self.pid = self.pgid = self.process.pid  # the kernel leads its own process group
        self.cwd = cwd
        self._wait_until_bound()
        return self.connection_info

    def _wait_until_bound(self) -> None:
        """Return once the kernel's IPC sockets exist (or it ended, or :data:`BIND_SECONDS` passed)."""
        info = self.connection_info
        if info.get("transport") != "ipc":
            return
        ports = [info[name] for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
        paths = [Path(f"{info['ip']}-{port}") for port in ports]
        deadline = time.monotonic() + BIND_SECONDS
        while not all(path.exists() for path in paths) and self.process.poll() is None:
            if time.monotonic() > deadline:
                return
            time.sleep(0.002)

    async def kill(self, restart: bool = False) -> None:
        """SIGKILL the kernel's process group and wait (up to 5 s) for the server to report its exit."""
        await super().kill(restart=restart)
        if self.process is not None:
            self.process.wait(5)


class ForkedKernelClient(AsyncKernelClient):
    """jupyter_client's async client with a shorter kernel_info handshake (see the module docstring)."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Return once the kernel has answered kernel_info on shell and sent anything on IOPub.

        Raises:
            RuntimeError: the kernel died first, or ``timeout`` seconds passed (as jupyter_client raises).
        """
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            self.kernel_info()
            reply = await self._reply_within(self.shell_channel, 1.0)
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                if await self._reply_within(self.iopub_channel, 0.2) is not None:  # IOPub is connected
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    @staticmethod
    async def _reply_within(channel: Any, seconds: float) -> dict | None:
        try:
            return await channel.get_msg(timeout=seconds)
        except Empty:
            return None


class ForkKernelManager(AsyncKernelManager):
    """An async kernel manager whose kernels come from the kernel server (see the module docstring)."""

    client_factory = Type(ForkedKernelClient, klass=AsyncKernelClient, config=True)

    async def _async_pre_start_kernel(self, **kw: Any):
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = ForkProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)


def server_running() -> bool:
    """Whether this process has a kernel server (see :class:`KernelServer`)."""
    return bool(os.environ.get(SERVER_ENV)) and Path(os.environ[SERVER_ENV]).exists()


class KernelServer:
    """The kernel server of this process: ``with KernelServer(): ...`` grades with forked kernels."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="xattn-kernels-"))  # private (0700): only we connect
        self.path = self.folder / "server.sock"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> KernelServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xattn_edu.chapters.support.kernel_server", str(self.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        started, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        ready = self.process.stdout.readline().strip() if started else ""
        self.process.stdout.close()
        if ready != "ready":
            self.close()
            raise UserError("the grading kernel server did not start")
        os.environ[SERVER_ENV] = str(self.path)
        return self

    def close(self) -> None:
        """Stop the server (kernels it forked are killed by their managers) and remove its socket."""
        if os.environ.get(SERVER_ENV) == str(self.path):
            del os.environ[SERVER_ENV]
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
