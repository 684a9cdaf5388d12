"""Where xattn keeps downloads and caches.

``XATTN_CACHE`` overrides the root (default ``~/.cache/xattn``); datasets go in
``<root>/data``. Nothing is created at import time.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root: ``$XATTN_CACHE`` if set, else ``~/.cache/xattn``."""
    env = os.environ.get("XATTN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xattn"


def data_dir() -> Path:
    """Where downloaded datasets (e.g. Multi30k) are cached."""
    return cache_root() / "data"


def repo_root() -> Path | None:
    """The project checkout this package runs from (has ``solutions/``), or None if installed elsewhere."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "solutions").is_dir() else None
