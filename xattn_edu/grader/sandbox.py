"""Resource limits for the processes that run students' code, and a reliable way to stop them.

This is damage control, not isolation: student code still runs as your user and can read and
write whatever you can (see docs/instructor.md, "What the grader does not protect against").

* :func:`limit_this_process` runs first thing in a grading worker; the kernels it starts inherit
  the limits. ``RLIMIT_AS`` caps each process's address space (a memory bomb meets a
  ``MemoryError`` instead of the machine's OOM killer), ``RLIMIT_CORE`` = 0 keeps crashing
  kernels from writing core files, and ``RLIMIT_NPROC`` caps the number of processes of the
  user. The kernel ignores ``RLIMIT_NPROC`` for root, so as root it protects nothing.
* :class:`Cage` holds one worker and everything it starts. Where a cgroup-v1 ``pids``
  hierarchy is writable (typically as root, which is exactly when ``RLIMIT_NPROC`` fails), the
  worker goes into its own cgroup with ``pids.max``: a fork bomb stops there, and even a process
  that left its session (``setsid``, double fork) is found and killed. Elsewhere the cage walks
  ``/proc`` for the worker's descendants, which misses processes that escaped to init.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

PIDS_HIERARCHY = Path("/sys/fs/cgroup/pids")
"""Where a cgroup-v1 ``pids`` controller is mounted on Linux."""


def _processes_of(uid: int) -> int:
    """How many processes (threads included, as the kernel counts for RLIMIT_NPROC) ``uid`` runs now."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count


def limit_this_process(memory_mb: int | None, max_processes: int | None) -> dict[str, bool]:
    """Apply the limits to this process (its children inherit them); returns which are in force.

    ``memory_mb``: address-space cap per process, in MiB. ``max_processes``: how many more
    processes and threads this user may start (``RLIMIT_NPROC`` counts the user's existing ones).
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied = {"memory": False, "processes": False}
    if memory_mb is not None:
        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        applied["memory"] = True
    if max_processes is not None and hasattr(resource, "RLIMIT_NPROC"):
        limit = _processes_of(os.getuid()) + int(max_processes)
        _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, hard))
        applied["processes"] = os.getuid() != 0  # root is exempt from RLIMIT_NPROC
    return applied


def process_limit_available() -> bool:
    """Whether a worker's processes can be capped here: a writable cgroup, or a user that is not root."""
    return os.access(PIDS_HIERARCHY, os.W_OK) or os.getuid() != 0


def _children_map() -> dict[int, list[int]]:
    """``{parent pid: [child pids]}`` of every process, read from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may contain spaces and ")"
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """The pids of every live process below ``pid`` in the process tree."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _remove_stale_cgroups() -> None:
    """Remove the empty cgroups of graders that were killed (``xattn-grade-<dead pid>-<slot>``)."""
    for path in PIDS_HIERARCHY.glob("xattn-grade-*-*"):
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                path.rmdir()  # fails while processes are left in it; a later run tries again
            except OSError:
                pass


class Cage:
    """One worker process and whatever it starts: limited (where a cgroup is available) and killable.

    ``Cage(name, max_processes)`` tries to create the cgroup ``<PIDS_HIERARCHY>/<name>``;
    :attr:`cgroup` is None when that is not possible (no cgroup v1, not writable).
    """

    def __init__(self, name: str, max_processes: int | None) -> None:
        self.cgroup: Path | None = None
        self.worker: int | None = None
        self.keep: set[int] = set()  # the worker's long-lived helpers (its verifier and kernel server)
        if max_processes is None or not os.access(PIDS_HIERARCHY, os.W_OK):
            return
        _remove_stale_cgroups()
        try:
            path = PIDS_HIERARCHY / name
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(int(max_processes)))
            self.cgroup = path
        except OSError:
            self.cgroup = None

    def add(self, pid: int) -> None:
        """Put the worker ``pid`` in the cage (its later children follow it into the cgroup)."""
        self.worker = pid
        if self.cgroup is not None:
            try:
                (self.cgroup / "cgroup.procs").write_text(str(pid))
            except OSError:
                self.cgroup = None

    def members(self) -> list[int]:
        """Every live process in the cage, the worker included."""
        if self.worker is None:
            return []
        if self.cgroup is not None:
            try:
                return [int(line) for line in (self.cgroup / "cgroup.procs").read_text().split()]
            except OSError:
                pass
        return [self.worker, *descendants(self.worker)]

    def kill_strays(self) -> None:
        """Kill everything in the cage except the worker and its helpers (kernels' leftovers after a notebook)."""
        _kill([pid for pid in self.members() if pid != self.worker and pid not in self.keep])

    def kill_all(self) -> None:
        """Kill the worker and everything it started."""
        # Stop the worker first so that it starts nothing new, then its descendants (read before: once
        # the worker is gone they are re-parented and /proc no longer links them to it).
        if self.worker is None:
            return
        _kill([self.worker, *self.members()])
        self.worker = None

    def close(self) -> None:
        """Kill what is left and remove the cgroup."""
        self.kill_all()
        if self.cgroup is not None:
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:  # busy until the killed processes are reaped
                    time.sleep(0.02)
            self.cgroup = None
