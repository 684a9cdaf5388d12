"""What ``xattn info`` reports: package versions, compute device, cache locations."""

from __future__ import annotations

import platform
from importlib import metadata

from xattn_edu.common.paths import cache_root, data_dir

KEY_PACKAGES = (
    "xattn_edu", "torch", "numpy", "nbgrader", "jupyterlab", "ipywidgets",
    "matplotlib", "jupytext", "sacrebleu", "sentencepiece",
)


def package_versions() -> dict[str, str]:
    """Installed version of each key package ('not installed' when absent)."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe() -> str:
    """The multi-line report printed by ``xattn info``."""
    from xattn_edu.common.device import describe_device

    lines = [f"python         {platform.python_version()} ({platform.machine()})"]
    lines += [f"{name:<14} {version}" for name, version in package_versions().items()]
    lines += [
        f"device         {describe_device()}",
        f"cache          {cache_root()}",
        f"data           {data_dir()}",
    ]
    return "\n".join(lines)
