"""The default compute device: CUDA when present, else CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible to torch, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A human-readable name, e.g. ``'cuda (NVIDIA H100 80GB HBM3)'`` or ``'cpu (2 threads)'``."""
    device = device or default_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
