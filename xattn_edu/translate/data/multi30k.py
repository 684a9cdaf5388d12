"""Multi30k (WMT16 multimodal task 1) German→English: download, verify, load.

The six files are the gzip'd raw sentences in the ``multi30k/dataset`` GitHub
repository (``data/task1/raw``): ``train`` (29,000 pairs), ``val`` (1,014) and
``test_2016_flickr`` (1,000, the "test2016" every tutorial reports BLEU on), each as
``.de.gz`` and ``.en.gz``.

Downloads go to ``xattn_edu.common.paths.data_dir() / "multi30k"`` (or ``cache_dir``) through
:func:`xattn_edu.translate.data.download.fetch`: resumable, atomically renamed only once verified.
Verification is two checks. (1) A digest: the only digests published for these exact
files that we could find are the MD5s in torchtext's Multi30k table (the URLs are the
same); no SHA-256 is published, so :data:`FILES` records MD5 and the download code takes
any hashlib algorithm (put a SHA-256 there once one is known). (2) The content: the file
must decompress as UTF-8 and have the published line count. MD5 is enough to catch a
truncated or damaged transfer; it is not a defence against a deliberately forged file.

Offline, pass ``data_dir=`` (CLI: ``--data-dir``): a folder with the same file names,
gzip'd or plain (``train.de.gz`` or ``train.de``). Nothing is downloaded then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xattn_edu.common import paths
from xattn_edu.common.errors import UserError
from xattn_edu.translate.data.download import Checksum, fetch
from xattn_edu.translate.data.parallel_text import read_lines, read_parallel

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"

# Split name → file stem in the repository.
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


@dataclass(frozen=True)
class RemoteFile:
    """What a downloaded file must look like."""

    lines: int  # number of lines (sentences) after decompression
    checksum: Checksum  # digest of the .gz bytes


def _md5(hexdigest: str) -> Checksum:
    return Checksum("md5", hexdigest)


# Digests from torchtext's Multi30k dataset table (same URLs); line counts from the
# multi30k/dataset README.
FILES: dict[str, RemoteFile] = {
    "train.de.gz": RemoteFile(29000, _md5("81ff90b99829c0cd4b1b587d394afd39")),
    "train.en.gz": RemoteFile(29000, _md5("0065d13af80720a55ca8153d126e6627")),
    "val.de.gz": RemoteFile(1014, _md5("6e0e229eb049e3fc99a1ef02fb2d5f91")),
    "val.en.gz": RemoteFile(1014, _md5("2b69aa9253948ac9f67e94917272dd40")),
    "test_2016_flickr.de.gz": RemoteFile(1000, _md5("efd67d314d98489b716b145475101932")),
    "test_2016_flickr.en.gz": RemoteFile(1000, _md5("ff2c0fcb4893a13bd73414306bc250ae")),
}


def file_names(split: str) -> tuple[str, str]:
    """The German and English file names of ``split`` ("train", "val" or "test"), without .gz."""
    if split not in SPLITS:
        raise UserError(f"unknown Multi30k split {split!r}; choose one of {', '.join(SPLITS)}")
    stem = SPLITS[split]
    return f"{stem}.de", f"{stem}.en"


def _line_count_check(expected: int):
    """A ``validate`` callback for :func:`fetch`: the file must read cleanly with ``expected`` lines."""

    def check(path: Path) -> None:
        found = len(read_lines(path))
        if found != expected:
            raise UserError(f"{path.name}: {found} lines, expected {expected}; the download was deleted")

    return check


def _offline_hint(folder: Path, reading: bool) -> str:
    """What to do offline. ``reading``: the files are wanted for training or evaluation (which take
    ``--data-dir``); otherwise for ``xattn data multi30k`` (which takes ``--cache-dir``)."""
    names = ", ".join(f"{name}.gz" for split in SPLITS for name in file_names(split))
    where = "and pass that folder with --data-dir" if reading else "(or choose another folder with --cache-dir)"
    return f"If you are offline, copy the Multi30k files ({names}; gzip'd or plain) into {folder} {where}."


def download(
    splits: tuple[str, ...] = tuple(SPLITS),
    *,
    cache_dir: str | Path | None = None,
    base_url: str = BASE_URL,
    files: Mapping[str, RemoteFile] = FILES,
    reading: bool = False,
) -> Path:
    """Download (or resume) and verify the files of ``splits``; return the folder holding them.

    ``reading``: called to read the files for training or evaluation (it only changes the offline hint).
    """
    folder = Path(cache_dir) if cache_dir is not None else paths.data_dir() / "multi30k"
    for split in splits:
        for name in file_names(split):
            remote = files[f"{name}.gz"]
            fetch(
                f"{base_url}/{name}.gz",
                folder / f"{name}.gz",
                remote.checksum,
                validate=_line_count_check(remote.lines),
                hint=_offline_hint(folder, reading),
            )
    return folder


def _find(folder: Path, name: str) -> Path:
    """``name.gz`` or plain ``name`` inside ``folder``."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise UserError(f"{folder}: neither {name}.gz nor {name} found (expected the Multi30k file names)")


def load(
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    base_url: str = BASE_URL,
    files: Mapping[str, RemoteFile] = FILES,
) -> list[tuple[str, str]]:
    """``(german, english)`` sentence pairs of one split.

    With ``data_dir`` the files are read from that folder and nothing is downloaded;
    otherwise they are downloaded into ``cache_dir`` (default ``paths.data_dir()/multi30k``)
    the first time and read from there afterwards.
    """
    de_name, en_name = file_names(split)
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (the Multi30k files; name their folder with --data-dir)")
    else:
        folder = download((split,), cache_dir=cache_dir, base_url=base_url, files=files, reading=True)
    return read_parallel(_find(folder, de_name), _find(folder, en_name))
