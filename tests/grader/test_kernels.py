"""Kernels forked by the kernel server: ready at once, isolated from each other, interruptible, killable."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from xattn_edu.grader.kernels import SERVER_ENV, ForkedKernelClient, ForkKernelManager, KernelServer, server_running

pytestmark = pytest.mark.timeout(300)


async def run_code(km: ForkKernelManager, code: str, timeout: float = 60) -> str:
    """Execute ``code`` in the kernel; return what it printed."""
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        printed = []

        def hook(message):
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                printed.append(f"{message['content']['ename']}: {message['content']['evalue']}")

        await client.execute_interactive(code, output_hook=hook, timeout=timeout)
        return "".join(printed)
    finally:
        client.stop_channels()


@pytest.fixture(scope="module")
def server():
    with KernelServer() as running:
        yield running
    assert not server_running() and SERVER_ENV not in os.environ


def test_kernels_come_preloaded_and_are_not_our_children(server):
    async def scenario():
        km = ForkKernelManager()
        await km.start_kernel()
        try:
            code = "import os, sys\nprint('torch' in sys.modules, os.getppid(), os.getpgrp() == os.getpid())"
            printed = await run_code(km, code)
            return printed, km.provisioner.pid
        finally:
            await km.shutdown_kernel(now=True)

    printed, pid = asyncio.run(scenario())
    preloaded, parent, leader = printed.split()
    assert preloaded == "True" and leader == "True"
    assert int(parent) == server.process.pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_one_kernel_s_changes_never_reach_the_next(server):
    async def scenario():
        outputs = []
        for code in ("import numpy, xattn_edu.chapters.library_lookup.reference as r\n"
                     "numpy.leaked = 1; r.softmax = None; print('set')",
                     "import numpy, xattn_edu.chapters.library_lookup.reference as r\n"
                     "print(hasattr(numpy, 'leaked'), r.softmax is None)"):
            km = ForkKernelManager()
            await km.start_kernel()
            try:
                outputs.append(await run_code(km, code))
            finally:
                await km.shutdown_kernel(now=True)
        return outputs

    assert asyncio.run(scenario()) == ["set\n", "False False\n"]


def test_a_running_cell_can_be_interrupted(server):
    async def scenario():
        km = ForkKernelManager()
        await km.start_kernel()
        try:
            client = km.client()
            client.start_channels()
            await client.wait_for_ready(timeout=60)
            client.execute("import time\ntime.sleep(100)")
            await asyncio.sleep(1.0)
            started = time.monotonic()
            await km.interrupt_kernel()
            reply = await client.get_shell_msg(timeout=30)
            client.stop_channels()
            return reply["content"]["status"], reply["content"].get("ename"), time.monotonic() - started
        finally:
            await km.shutdown_kernel(now=True)

    status, ename, seconds = asyncio.run(scenario())
    assert (status, ename) == ("error", "KeyboardInterrupt") and seconds < 10


def test_a_request_that_is_not_a_kernel_command_is_refused(server):
    import json
    import socket

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(server.path))
    conn.sendall(b'{"argv": ["sh", "-c", "touch /tmp/pwned"], "env": {}, "cwd": "/"}\n')
    assert json.loads(conn.makefile().readline()) == {"error": "not a kernel request"}
    conn.close()


def test_a_launch_returns_with_the_sockets_bound_and_a_kill_once_the_kernel_has_exited(server, tmp_path):
    async def scenario():
        km = ForkKernelManager(transport="ipc", ip=str(tmp_path / "kernel"))
        await km.start_kernel()
        info = km.get_connection_info()
        ports = [info[f"{name}_port"] for name in ("shell", "iopub", "stdin", "control", "hb")]
        bound = [Path(f"{info['ip']}-{port}").exists() for port in ports]
        printed = await run_code(km, "print(6 * 7)")
        pid = km.provisioner.pid
        await km.shutdown_kernel(now=True)
        return bound, printed, pid

    bound, printed, pid = asyncio.run(scenario())
    assert bound == [True] * 5 and printed == "42\n"
    with pytest.raises(ProcessLookupError):  # gone when the kill returns: no polling needed
        os.kill(pid, 0)


def test_the_handshake_with_a_dead_kernel_fails_with_jupyter_client_s_error(server):
    async def scenario():
        km = ForkKernelManager()
        await km.start_kernel()
        client = km.client()
        assert isinstance(client, ForkedKernelClient)
        await km.shutdown_kernel(now=True)
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=5)
        finally:
            client.stop_channels()

    with pytest.raises(RuntimeError, match="died|respond"):
        asyncio.run(scenario())


def test_the_server_forks_a_verifier_that_judges_like_the_verifier_process(server):
    from xattn_edu.grader.verifier import Verifier

    forked, spawned = Verifier(str(server.path)), Verifier()
    try:
        for judge in (forked, spawned):
            judge.wait_ready()
        assert "01_library_lookup" in forked.chapters and forked.chapters == spawned.chapters
        parent = int(Path(f"/proc/{forked.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert parent == server.process.pid
        request = ("01_library_lookup", 5, {"relevance_tests": []})
        assert forked.judge(*request) == spawned.judge(*request)
        assert forked.judge(*request)["verdicts"]["relevance_tests"]["ok"] is False
    finally:
        forked.close()
        spawned.close()
    with pytest.raises(ProcessLookupError):  # its input closed: it exits (and the server reaps it)
        for _ in range(50):
            os.kill(forked.pid, 0)
            time.sleep(0.1)
