"""Run-time switches shared by notebooks, graders and scripts."""

from __future__ import annotations

import os

from xattn_edu.common.protocol import FAST_ENV


def fast_mode() -> bool:
    """True when experiments should shrink to seconds.

    That is when ``XATTN_FAST=1`` (tests, CI; the graders set it in their kernels only) or when nbgrader
    runs the notebook to validate it (``NBGRADER_EXECUTION=validate``: the Validate button checks the
    exercises, not the experiments). A student's and an instructor's own kernels run the real experiments.
    """
    if os.environ.get("NBGRADER_EXECUTION") == "validate":
        return True
    return os.environ.get(FAST_ENV, "0").strip().lower() in {"1", "true", "yes"}
