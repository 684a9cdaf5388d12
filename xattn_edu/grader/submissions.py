"""Finding each student's notebook in what an instructor downloaded, and reading it into memory.

SUBMISSIONS is a folder or a zip. Each ``*.ipynb`` in it belongs to a student by the first rule that fits:

1. ``--name-pattern REGEX`` (when given), matched against the file name: the group ``student`` names
   the student, an optional group ``attempt`` (a number) picks the latest resubmission;
2. an LMS folder: Moodle ``Full Name_123456_assignsubmission_file_/``, Gradescope ``submission_12345678/``;
3. an LMS file name: Canvas ``login[_LATE]_12345_67890_name[-1].ipynb`` (the login may hold
   underscores; ``-1`` is a resubmission), Blackboard
   ``assignment_user_attempt_2024-09-15-10-30-45[_name].ipynb``;
4. a folder per student: ``ann/01_library_lookup.ipynb`` (the folder is the student);
5. a loose file named after its student: ``bob_01_library_lookup.ipynb``, ``bob-01_library_lookup.ipynb``
   or ``carol.ipynb``; a loose file named exactly after the chapter belongs to no one and is skipped.

A student with several notebooks gets the one named after the chapter (latest attempt), or the only
one; the others are listed as skipped, with the reason, as are hidden files (``.ipynb_checkpoints``,
``__MACOSX``) and files over :data:`MAX_NOTEBOOK_BYTES`, which are refused unread. Nothing is dropped
without a word, and finding no student at all is an error.

Every notebook is read before any student code runs, so a notebook cannot change another student's
file before it is graded.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from xattn_edu.common.errors import UserError

MAX_NOTEBOOK_BYTES = 512 << 20
"""Larger files are refused unread (a real notebook with outputs is a few MB)."""

FILE_SCHEMES = (
    ("Canvas", re.compile(r"^(?P<student>.+?)(?:_late)?_\d+_\d+_(?P<name>.+?)(?:-(?P<attempt>\d+))?\.ipynb$", re.I)),
    ("Blackboard", re.compile(
        r"^.+?_(?P<student>[^_]+)_attempt_(?P<attempt>\d{4}(?:-\d\d){5})(?:_(?P<name>.+))?\.ipynb$")),
)
"""LMS download names that carry the student in the file name."""
FOLDER_SCHEMES = (
    ("Moodle", re.compile(r"^(?P<student>.+_\d+)_assignsubmission_file_?$")),
    ("Gradescope", re.compile(r"^(?P<student>submission_\d+)$")),
)
"""LMS download folders that carry the student in the folder name."""


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


@dataclass(frozen=True)
class Skipped:
    """A notebook file that is nobody's submission, and why."""

    source: str  # the file (or zip member)
    reason: str  # one line


@dataclass
class Found:
    """What a submissions folder or zip holds."""

    submissions: list[Submission]  # one per student, sorted by student id
    skipped: list[Skipped] = field(default_factory=list)  # every other notebook file, with its reason


@dataclass(frozen=True)
class _Candidate:
    student: str
    name: str  # the file name as the student saved it (LMS prefixes removed)
    attempt: str  # sorts later for later attempts ("" when unknown)
    source: str  # for the record
    reader: object  # a Path, or (zip path, member, size)


def find_submissions(chapter: str, submissions: Path, name_pattern: str | None = None) -> Found:
    """Every student's notebook of ``chapter`` in ``submissions`` (a folder or a zip); see the module docstring.

    Raises:
        UserError: no such path, neither a folder nor a zip, a ``name_pattern`` without a ``student``
            group, or no student found at all.
    """
    submissions = Path(submissions)
    pattern = _compile(name_pattern)
    if not submissions.exists():
        raise UserError(f"{submissions}: no such file or folder")
    if submissions.is_file() and not zipfile.is_zipfile(submissions):
        raise UserError(f"{submissions}: not a folder and not a zip file")
    found = Found([])
    candidates: dict[str, list[_Candidate]] = {}
    for parts, source, reader in _notebook_files(submissions):
        if any(part.startswith(".") or part == "__MACOSX" for part in parts):
            found.skipped.append(Skipped(source, "hidden file or folder (editor or archive leftovers)"))
            continue
        candidate = _candidate(chapter, parts, source, reader, pattern)
        if isinstance(candidate, Skipped):
            found.skipped.append(candidate)
        else:
            candidates.setdefault(candidate.student, []).append(candidate)
    for student in sorted(candidates):
        submission, others = _choose(chapter, student, candidates[student])
        found.submissions.append(submission)
        found.skipped += others
    if not found.submissions:
        why = f" ({len(found.skipped)} notebook file(s) skipped: {found.skipped[0].reason})" if found.skipped else ""
        raise UserError(f"{submissions}: no student's notebook found{why}; see --name-pattern")
    return found


def _compile(name_pattern: str | None) -> re.Pattern | None:
    if name_pattern is None:
        return None
    try:
        pattern = re.compile(name_pattern)
    except re.error as err:
        raise UserError(f"--name-pattern {name_pattern!r} is not a regular expression: {err}") from None
    if "student" not in pattern.groupindex:
        raise UserError(f"--name-pattern {name_pattern!r} needs a group (?P<student>...) naming the student, "
                        r"e.g. '^(?P<student>[a-z]+)_.*\.ipynb$'")
    return pattern


def _notebook_files(submissions: Path):
    """``(path parts, source, reader)`` of every ``*.ipynb`` in a folder or zip, in name order."""
    if submissions.is_dir():
        for path in sorted(submissions.rglob("*.ipynb")):
            if path.is_file():
                yield path.relative_to(submissions).parts, str(path), path
        return
    with zipfile.ZipFile(submissions) as zf:
        members = sorted(zf.infolist(), key=lambda info: info.filename)
    for info in members:
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p)
        if not info.is_dir() and parts and parts[-1].endswith(".ipynb"):
            yield parts, f"{submissions}:{info.filename}", (submissions, info.filename, info.file_size)


def _candidate(chapter: str, parts: tuple[str, ...], source: str, reader, pattern) -> _Candidate | Skipped:
    """Whose notebook this is, by the rules of the module docstring."""
    filename = parts[-1]
    if pattern is not None:
        match = pattern.search(filename)
        if match is None:
            return Skipped(source, "the file name does not match --name-pattern")
        return _Candidate(match["student"], filename, _order(match.groupdict().get("attempt")), source, reader)
    for folder in parts[:-1]:
        for _, scheme in FOLDER_SCHEMES:
            if (match := scheme.match(folder)) is not None:
                return _Candidate(match["student"], filename, "", source, reader)
    for _, scheme in FILE_SCHEMES:
        if (match := scheme.match(filename)) is not None:
            return _Candidate(match["student"], f"{match['name'] or chapter}.ipynb", _order(match["attempt"]),
                              source, reader)
    if len(parts) > 1:
        return _Candidate(parts[0], filename, _order(_suffix_attempt(filename)), source, reader)
    stem = filename.removesuffix(".ipynb")
    if (owner := re.match(rf"^(?P<student>.+?)[_-]{re.escape(chapter)}(?:-\d+)?$", stem)) is not None:
        return _Candidate(owner["student"], f"{chapter}.ipynb", _order(_suffix_attempt(filename)), source, reader)
    if re.sub(r"-\d+$", "", stem) == chapter:
        return Skipped(source, f"a loose file named after the chapter belongs to no student: put it in a folder "
                               f"named after its student, or name it <student>_{chapter}.ipynb")
    return _Candidate(stem, filename, "", source, reader)


def _suffix_attempt(filename: str) -> str | None:
    match = re.search(r"-(\d+)\.ipynb$", filename)
    return match[1] if match else None


def _order(attempt: str | None) -> str:
    """A sort key for attempts: numbers padded, time stamps as they are, none first."""
    return "" if not attempt else attempt.zfill(12) if attempt.isdigit() else attempt


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


def _choose(chapter: str, student: str, found: list[_Candidate]) -> tuple[Submission, list[Skipped]]:
    """The student's notebook for ``chapter`` (named after it, latest attempt; else the only one), and the rest."""
    named = [c for c in found if re.sub(r"-\d+(?=\.ipynb$)", "", c.name) == f"{chapter}.ipynb"]
    named = named or [c for c in found if chapter in c.name]
    if not named and len(found) > 1:
        names = ", ".join(sorted(c.name for c in found))
        reason = f"{len(found)} notebooks, none named {chapter}.ipynb: {names}"
        return Submission(student, "", None, reason), [Skipped(c.source, f"{student}: {reason}") for c in found]
    chosen = max(named, key=lambda c: (c.attempt, c.source)) if named else found[0]
    others = [Skipped(c.source, f"{student}'s other notebook; graded {chosen.source}") for c in found
              if c is not chosen]
    try:
        return Submission(student, chosen.source, _read(chosen.reader)), others
    except (OSError, UserError, zipfile.BadZipFile) as err:
        return Submission(student, chosen.source, None, f"cannot read {chosen.name}: {err}"), others
