"""The first lines of the real Multi30k files, copied into a test's folder (no network).

The raw files live in a ``shared/data/multi30k`` folder beside the checkout or above it (the project
keeps them in ``../shared``), or wherever ``XATTN_MULTI30K_DIR`` points. Tests that need them are
skipped, saying why, where the folder is absent.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest


def shared_folder() -> Path | None:
    """The folder of the shared raw Multi30k files, or None."""
    if os.environ.get("XATTN_MULTI30K_DIR"):
        return Path(os.environ["XATTN_MULTI30K_DIR"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "multi30k"
        if (candidate / "train.de.gz").is_file():
            return candidate
    return None


def shared_or_skip() -> Path:
    """:func:`shared_folder`, or skip the test."""
    folder = shared_folder()
    if folder is None:
        pytest.skip("no shared/data/multi30k folder above the checkout (set XATTN_MULTI30K_DIR)")
    return folder


def copy_head(folder: Path, counts: dict[str, int]) -> Path:
    """Copy the first ``counts[stem]`` lines of ``stem.de.gz`` and ``stem.en.gz`` into ``folder`` as plain
    files (``train.de``: a copy of part of a file has no published digest, so it is read unchecked)."""
    source = shared_or_skip()
    folder.mkdir(parents=True, exist_ok=True)
    for stem, count in counts.items():
        for language in ("de", "en"):
            with gzip.open(source / f"{stem}.{language}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(count)]
            (folder / f"{stem}.{language}").write_text("".join(lines), encoding="utf-8")
    return folder
