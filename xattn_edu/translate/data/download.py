"""Resumable, verified downloads with the standard library only.

:func:`fetch` writes to ``<name>.part``, resumes an interrupted transfer with an HTTP
``Range`` request, checks the finished file (a checksum and, optionally, a content check
such as "decompresses to the expected number of lines") and only then writes it under its
final name with :func:`xattn_edu.common.files.atomic_write` (flushed to disk, then renamed).
So a file under its final name is always complete and verified; a bad download is deleted
and reported as a :class:`~xattn_edu.common.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import atomic_write

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Checksum:
    """An expected digest of a file."""

    algorithm: str  # a hashlib name: "sha256" (preferred) or "md5" (where only that is published)
    hexdigest: str  # lowercase hex digest

    def of(self, path: Path) -> str:
        """The digest of ``path`` with this algorithm."""
        digest = hashlib.new(self.algorithm)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                digest.update(block)
        return digest.hexdigest()


def _open(url: str, offset: int, timeout: float):
    """Open ``url``, asking for the bytes from ``offset`` on when resuming."""
    headers = {"User-Agent": "xattn_edu", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer(url: str, part: Path, timeout: float, hint: str) -> None:
    """Append the missing bytes of ``url`` to ``part`` (restarting if the server cannot resume)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the part is already whole
            return
        raise UserError(f"download of {url} failed: HTTP {err.code} {err.reason}. {hint}".strip()) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"could not download {url} ({reason}). {hint}".strip()) from err
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise UserError(f"{url}: the server resumed at the wrong byte; the partial file was deleted, run again.")
        announced = response.headers.get("Content-Length")
        received = 0
        try:
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    received += len(block)
        except (OSError, http.client.HTTPException) as err:  # reset connection, timeout
            raise UserError(f"download of {url} was interrupted ({err}); run again to resume.") from err
    if announced is not None and received < int(announced):  # the server closed early, silently
        raise UserError(
            f"download of {url} was interrupted ({received} of {announced} bytes); run again to resume."
        )


def fetch(
    url: str,
    dest: Path,
    checksum: Checksum,
    *,
    validate: Callable[[Path], None] | None = None,
    timeout: float = 60.0,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` unless it is already there; return ``dest``.

    ``checksum`` must match the downloaded bytes, and ``validate(path)`` (if given) may
    raise :class:`UserError` for content that is wrong in other ways. Either failure
    deletes the partial file. ``hint`` is appended to network errors (e.g. how to work
    offline).
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _transfer(url, part, timeout, hint)
    actual = checksum.of(part)
    if actual != checksum.hexdigest:
        part.unlink()
        raise UserError(
            f"{dest.name}: {checksum.algorithm} is {actual}, expected {checksum.hexdigest}; "
            "the partial download was deleted, run again to retry."
        )
    if validate is not None:
        try:
            validate(part)
        except UserError:
            part.unlink()
            raise
    with atomic_write(dest) as out, open(part, "rb") as verified:
        shutil.copyfileobj(verified, out)
    part.unlink()
    return dest
