"""The default compute device (CUDA when present, else CPU) and how many CPU threads to use."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that fix torch's thread count; when one is set, :func:`cpu_threads` keeps it."""


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible to torch, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The device a user asked for ("cpu", "cuda", "cuda:1"...), default CUDA when present, else CPU.

    Raises ``UserError`` for a name torch does not know or a GPU that is not there.
    """
    from xattn_edu.common.errors import UserError

    try:
        device = torch.device(name) if name is not None else default_device()
    except (RuntimeError, TypeError) as err:
        raise UserError(f"--device {name}: not a device name ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch")
    return device


def describe_device(device: torch.device | None = None) -> str:
    """A human-readable name, e.g. ``'cuda (NVIDIA H100 80GB HBM3)'`` or ``'cpu (2 threads)'``."""
    device = device or default_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work to finish (CUDA runs asynchronously), so a timer reads true time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware_info(device: torch.device | None = None) -> dict:
    """Where a benchmark ran: device, CPU model and cores, torch version, 1-minute load average."""
    return {
        "device": describe_device(device),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; all cores where the OS has none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def idle_cores(window: float = 0.2) -> float | None:
    """Cores the rest of the machine leaves idle: the idle and iowait share of all cores' time in
    ``/proc/stat`` over ``window`` seconds, times the number of cores; None without ``/proc/stat`` (not Linux).
    """

    def sample() -> tuple[int, int, int]:
        lines = Path("/proc/stat").read_text().splitlines()
        fields = [int(x) for x in lines[0].split()[1:]]  # the "cpu" line: all cores, in clock ticks
        cores = sum(line[3:4].isdigit() for line in lines if line.startswith("cpu"))  # cpu0, cpu1, ...
        return fields[3] + fields[4], sum(fields[:8]), cores  # idle + iowait, all but guest time, cores

    if not Path("/proc/stat").is_file():
        return None
    idle0, total0, cores = sample()
    time.sleep(window)
    idle1, total1, _ = sample()
    if total1 <= total0:  # no clock tick in the window
        return None
    return cores * (idle1 - idle0) / (total1 - total0)


def cpu_threads(cores: int | None = None, idle: float | None = None) -> int:
    """How many threads torch's CPU kernels should use: the usable cores that other work leaves idle, at least 1.

    ``cores`` defaults to :func:`usable_cores`; ``idle`` (cores left idle) to :func:`idle_cores`, else the
    usable cores less the 1-minute load average. Why: torch's OpenMP threads wait for each other by
    spinning, so a thread that has no core to itself makes every parallel operation wait for the
    scheduler; with two threads on two cores that other jobs keep busy, a training step was measured
    14 times slower than with one thread (docs/benchmarks.md).
    """
    cores = cores if cores is not None else usable_cores()
    if idle is None:
        idle = idle_cores()
    if idle is None:
        idle = cores - (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
    return max(1, min(cores, int(idle + 0.5)))


@contextmanager
def cpu_threads_for_this_machine(processes: int = 1) -> Iterator[int]:
    """Run the block with torch using its share of :func:`cpu_threads` (one inter-op thread), then restore the count.

    ``processes``: how many processes of one job share this machine (torchrun's ``LOCAL_WORLD_SIZE``);
    each takes ``cpu_threads() // processes`` threads, at least 1. Yields the number of threads. If
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, torch's count (which follows them) is kept:
    the user chose it.
    """
    previous = torch.get_num_threads()
    chosen = previous if any(os.environ.get(name) for name in THREAD_VARIABLES) else max(1, cpu_threads() // processes)
    try:  # inter-op threads only run independent operations side by side; here they would compete
        torch.set_num_interop_threads(1)
    except RuntimeError:  # settable once, before any inter-op work: already set, nothing to do
        pass
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(previous)
