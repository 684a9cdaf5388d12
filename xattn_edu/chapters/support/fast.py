"""Run-time switches shared by notebooks, graders and scripts."""

from __future__ import annotations

import os


def fast_mode() -> bool:
    """True when ``XATTN_FAST=1``: notebooks and experiments shrink their work (tests, CI, graders)."""
    return os.environ.get("XATTN_FAST", "0").strip().lower() in {"1", "true", "yes"}
