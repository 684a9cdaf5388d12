"""Writing files so that a reader never sees half of one.

Every file the package writes for later (checkpoints, gradebooks, feedback, cached gradebooks,
downloads) goes through :func:`atomic_write`: the content goes to a temporary file in the same
folder, is flushed to disk, and is then renamed over the target (``os.replace`` is atomic on one
file system). An interrupted or failed write leaves the previous file, or none, never a broken one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a binary file handle whose content replaces ``path`` when the block ends without error.

    Args:
        path: the file to write; its folder is created if needed.
        mode: permission bits of the result (``mkstemp`` alone would give 0o600).

    Raises:
        OSError: the folder cannot be created or written; ``path`` is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, content: bytes) -> None:
    """Replace ``path`` by ``content`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as out:
        out.write(content)
