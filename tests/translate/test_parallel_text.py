"""Reading parallel text: plain and gzip files, TSV, and the errors a user can fix."""

from __future__ import annotations

import gzip

import pytest

from xattn_edu.common.errors import UserError
from xattn_edu.translate.data.parallel_text import read_lines, read_parallel, read_tsv


def test_two_plain_files(tmp_path):
    (tmp_path / "a.en").write_text("a dog runs .\ntwo cats sleep .\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("ein hund läuft .\nzwei katzen schlafen .\n", encoding="utf-8")
    assert read_parallel(tmp_path / "a.en", tmp_path / "a.de") == [
        ("a dog runs .", "ein hund läuft ."),
        ("two cats sleep .", "zwei katzen schlafen ."),
    ]


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    (tmp_path / "src.txt").write_bytes(gzip.compress(b"eins\nzwei\n"))
    (tmp_path / "tgt.gz").write_text("one\ntwo", encoding="utf-8")  # plain, despite the name
    assert read_parallel(tmp_path / "src.txt", tmp_path / "tgt.gz") == [("eins", "one"), ("zwei", "two")]


def test_line_endings_bom_and_blank_lines_are_kept_as_lines(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("\ufeffGrüße\r\n\r\nlast line without break".encode())
    assert read_lines(path) == ["Grüße", "", "last line without break"]


def test_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello\thallo\nthe dog .\tder hund .\n", encoding="utf-8")
    assert read_tsv(path) == [("hello", "hallo"), ("the dog .", "der hund .")]


@pytest.mark.parametrize("line", ["no tab here", "one\ttwo\tthree"])
def test_tsv_line_without_exactly_one_tab(tmp_path, line):
    path = tmp_path / "bad.tsv"
    path.write_text(f"ok\tgut\n{line}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.tsv, line 2"):
        read_tsv(path)


def test_mismatched_line_counts_name_both_files(tmp_path):
    (tmp_path / "s.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"s\.txt has 3 lines but .*t\.txt has 2"):
        read_parallel(tmp_path / "s.txt", tmp_path / "t.txt")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.txt: no such file"):
        read_lines(tmp_path / "nope.txt")


@pytest.mark.parametrize("content", [b"", gzip.compress(b"")])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.de"
    path.write_bytes(content)
    with pytest.raises(UserError, match="empty.de: the file is empty"):
        read_lines(path)


@pytest.mark.parametrize(
    "content",
    [
        gzip.compress(b"ein satz\n" * 50)[:-12],  # truncated
        b"\x1f\x8b" + b"this is not deflate data at all",  # gzip magic, garbage body
    ],
)
def test_damaged_gzip(tmp_path, content):
    path = tmp_path / "train.de.gz"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"train\.de\.gz: damaged or incomplete gzip"):
        read_lines(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Grüße\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt: not UTF-8"):
        read_lines(path)
