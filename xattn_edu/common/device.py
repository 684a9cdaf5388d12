"""The default compute device: CUDA when present, else CPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


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
