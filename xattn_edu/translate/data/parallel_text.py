"""Your own parallel corpus: two line-aligned files, or one tab-separated file.

Reading is strict and explains itself: every problem a user can fix (missing file, empty
file, damaged gzip, text that is not UTF-8, files with different line counts, a TSV line
without exactly one tab) raises :class:`~xattn_edu.common.errors.UserError` naming the file.
Files may be plain text or gzip (recognised by their first bytes, not their name).
:mod:`xattn_edu.translate.data.multi30k` reads its files with the same functions.

A pair is ``(source, target)``; lines keep their text as is, minus the line break.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from xattn_edu.common.errors import UserError

_GZIP_MAGIC = b"\x1f\x8b"


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, plain or gzip-compressed, without line breaks.

    Raises :class:`UserError` if the file is missing, empty, damaged or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == _GZIP_MAGIC
        opener = gzip.open if compressed else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}: damaged or incomplete gzip file ({err})") from err
    lines = split_lines(text)
    if not lines:
        raise UserError(f"{path}: the file is empty")
    return lines


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` without their breaks (``\\n`` or ``\\r\\n``); empty lines are kept, and
    the break ending the last line does not start another one."""
    lines = text.split("\n")
    if lines[-1] == "":  # the line break ending the last line (or no text at all)
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """``(source, target)`` pairs from two files with one sentence per line, line-aligned."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UserError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "parallel files need one sentence per line, in the same order"
        )
    return list(zip(src, tgt, strict=True))


def read_pairs(src_path: str | Path, tgt_path: str | Path | None = None) -> list[tuple[str, str]]:
    """Pairs from two line-aligned files, or from one TSV file when ``tgt_path`` is None."""
    return read_tsv(src_path) if tgt_path is None else read_parallel(src_path, tgt_path)


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """``(source, target)`` pairs from a file with one ``source<TAB>target`` pair per line."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}, line {number}: expected source<TAB>target, found {len(fields)} field(s)")
        pairs.append((fields[0], fields[1]))
    return pairs
