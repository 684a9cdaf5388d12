"""Atomic writes: the target holds the old content or the new one, never a part."""

import os

import pytest

from xattn_edu.common.files import atomic_write, write_atomic


def test_write_atomic_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.bin"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failure_inside_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.bin"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as out:
        out.write(b"half of the new")
        raise RuntimeError("disk full, say")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]
