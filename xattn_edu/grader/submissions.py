"""Finding each student's notebook in what an instructor downloaded, and reading it into memory.

SUBMISSIONS is a folder with one sub-folder per student (any ``*.ipynb`` inside; the one named after the
chapter wins), or an LMS download: a zip, or a folder of loose files, named the Canvas way
(``login_12345_67890_01_library_lookup-1.ipynb``: the student is ``login``, ``-1`` a resubmission).
Hidden files and folders (``.ipynb_checkpoints``, ``__MACOSX``) are ignored.

Every notebook is read before any student code runs, so a notebook cannot change another student's
file before it is graded; files over :data:`MAX_NOTEBOOK_BYTES` are refused unread.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xattn_edu.common.errors import UserError

MAX_NOTEBOOK_BYTES = 512 << 20
"""Larger files are refused unread (a real notebook with outputs is a few MB)."""

CANVAS_NAME = re.compile(
    r"^(?P<student>[^_/\\]+)_(?:late_)?\d+_\d+_(?P<name>.+?)(?:-(?P<attempt>\d+))?\.ipynb$", re.IGNORECASE
)
"""``login_12345_67890_original-name-1.ipynb`` (``-1``: a resubmission; ``LATE_`` may follow the login)."""


@dataclass(frozen=True)
class Submission:
    """One student's notebook, read into memory."""

    student: str  # student id (folder name or login of an LMS file name)
    source: str  # where the notebook came from, for the record ("" if none was found)
    content: bytes | None  # the notebook file; None when none could be chosen
    reason: str = ""  # why content is None

    @property
    def sha256(self) -> str:
        """SHA-256 of the file, hex ("" when there is none): what tells a changed submission from the same."""
        return hashlib.sha256(self.content).hexdigest() if self.content is not None else ""


def find_submissions(chapter: str, submissions: Path) -> list[Submission]:
    """One :class:`Submission` per student in ``submissions`` (a folder or a zip), sorted by student id."""
    submissions = Path(submissions)
    if not submissions.exists():
        raise UserError(f"{submissions}: no such file or folder")
    candidates: dict[str, list[tuple[str, str, object]]] = {}  # student -> [(name, source, reader)]
    if submissions.is_file():
        if not zipfile.is_zipfile(submissions):
            raise UserError(f"{submissions}: not a folder and not a zip file")
        _zip_candidates(submissions, candidates)
    else:
        _folder_candidates(submissions, candidates)
    return [_choose(chapter, student, candidates[student]) for student in sorted(candidates)]


def _add(candidates: dict, student: str, name: str, source: str, reader) -> None:
    candidates.setdefault(student, []).append((name, source, reader))


def _lms_name(filename: str) -> tuple[str, str] | None:
    """``(student, original file name)`` of an LMS download name, or None."""
    match = CANVAS_NAME.match(filename)
    if match is None:
        return None
    attempt = f"-{match['attempt']}" if match["attempt"] else ""
    return match["student"], f"{match['name']}{attempt}.ipynb"


def _is_hidden(parts: Iterable[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _folder_candidates(folder: Path, candidates: dict) -> None:
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if _is_hidden(relative.parts) or not path.is_file():
            continue
        if len(relative.parts) == 1:  # a loose file: an extracted LMS download
            lms = _lms_name(path.name)
            if lms is not None:
                _add(candidates, lms[0], lms[1], str(path), path)
            continue
        _add(candidates, relative.parts[0], path.name, str(path), path)


def _zip_candidates(archive: Path, candidates: dict) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
            if info.is_dir() or not parts or not parts[-1].endswith(".ipynb") or _is_hidden(parts):
                continue
            lms = _lms_name(parts[-1])
            reader = (archive, info.filename, info.file_size)
            source = f"{archive}:{info.filename}"
            if lms is not None:
                _add(candidates, lms[0], lms[1], source, reader)
            elif len(parts) >= 2:
                _add(candidates, parts[-2] if len(parts) == 2 else parts[0], parts[-1], source, reader)


def _read(reader) -> bytes:
    if isinstance(reader, Path):
        if reader.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        return reader.read_bytes()
    archive, member, size = reader
    if size > MAX_NOTEBOOK_BYTES:
        raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    with zipfile.ZipFile(archive) as zf, zf.open(member) as handle:
        content = handle.read(MAX_NOTEBOOK_BYTES + 1)
    if len(content) > MAX_NOTEBOOK_BYTES:
        raise UserError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    return content


def _attempt(name: str) -> int:
    match = re.search(r"-(\d+)\.ipynb$", name)
    return int(match[1]) if match else 0


def _choose(chapter: str, student: str, found: list[tuple[str, str, object]]) -> Submission:
    """The student's notebook for ``chapter``: named after it (latest attempt), else the only one."""
    exact = [c for c in found if re.sub(r"-\d+(?=\.ipynb$)", "", c[0]) == f"{chapter}.ipynb"]
    named = exact or [c for c in found if chapter in c[0]]
    if named:
        chosen = max(named, key=lambda c: (_attempt(c[0]), c[1]))
    elif len(found) == 1:
        chosen = found[0]
    else:
        names = ", ".join(sorted(c[0] for c in found))
        return Submission(student, "", None, f"{len(found)} notebooks, none named {chapter}.ipynb: {names}")
    try:
        return Submission(student, chosen[1], _read(chosen[2]))
    except (OSError, UserError, zipfile.BadZipFile) as err:
        return Submission(student, chosen[1], None, f"cannot read {chosen[0]}: {err}")
