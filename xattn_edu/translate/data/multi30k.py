"""Multi30k (WMT16-18 multimodal task 1) German→English: download, verify, load.

The files are the gzip'd raw sentences in the ``multi30k/dataset`` GitHub repository
(``data/task1/raw``), one ``.de.gz`` and one ``.en.gz`` per split:

=====================  =========  ===========================================================
split                  pairs      what it is
=====================  =========  ===========================================================
``train``              29,000     the training split (tokenizers are fitted on it alone)
``val``                1,014      the validation split
``test_2016_flickr``   1,000      "test2016", the test set every tutorial reports BLEU on
``test_2017_flickr``   1,000      WMT17's test set
``test_2017_mscoco``   461        WMT17's out-of-domain (COCO) test set
``test_2018_flickr``   1,071      WMT18's test set
=====================  =========  ===========================================================

A test set is asked for by its published name; ``"test"`` is short for ``test_2016_flickr``.
Only the files of the split asked for are read (or downloaded): training reads ``train`` and
``val``, evaluation the one test set it scores, so a folder may hold any subset of the files.

**Verification.** Every ``.gz`` file is checked against its SHA-256 (:data:`FILES`), and against
the MD5 torchtext published where one is known (a second check of the same bytes); a downloaded
file must also decompress as UTF-8 with the published line count. The SHA-256 values of
``train``, ``val``, ``test_2016_flickr`` and ``test_2017_flickr`` are those of the Chapter 6 issue;
those of ``test_2017_mscoco`` and ``test_2018_flickr`` were computed from the repository's files at
commit a3d2e0d26b56f3846f66a952536ffed4e401d05a (whose other files match the issue's values). A
digest catches a truncated, damaged or different file; it is no defence against a forged table.

**Offline**, pass ``data_dir=`` (CLI: ``--data-dir``): a folder with the same file names, gzip'd
(``train.de.gz``, verified as above) or plain (``train.de``: your own copy, read as it is, since
a plain file has no published digest). Nothing is downloaded then, and a file the split needs
that is not there is a one-line :class:`UserError` naming it and the option.

Downloads go to ``xattn_edu.common.paths.data_dir() / "multi30k"`` (or ``cache_dir``) through
:func:`xattn_edu.translate.data.download.fetch`: resumable, atomically renamed only once verified.
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

TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
"""The published test sets, by name; the first is the classic benchmark."""
SPLITS = ("train", "val", *TEST_SETS)
"""Every split that has files (``"test"`` is an alias, see :func:`file_names`)."""
DEFAULT_TEST = TEST_SETS[0]  # what the split name "test" means
DOWNLOADED = ("train", "val", DEFAULT_TEST)  # what ``xattn data multi30k`` fetches


@dataclass(frozen=True)
class RemoteFile:
    """What a published file must look like."""

    lines: int  # number of lines (sentences) after decompression
    checksums: tuple[Checksum, ...]  # digests of the .gz bytes: SHA-256 first, then any other published one


def _digests(sha256: str, md5: str | None = None) -> tuple[Checksum, ...]:
    return (Checksum("sha256", sha256),) + ((Checksum("md5", md5),) if md5 else ())


# SHA-256: see the module doc; MD5: torchtext's Multi30k table (same URLs), where it has the file;
# line counts: the multi30k/dataset README (test_2018_flickr: its files).
FILES: dict[str, RemoteFile] = {
    "train.de.gz": RemoteFile(29000, _digests("726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
                                              "81ff90b99829c0cd4b1b587d394afd39")),
    "train.en.gz": RemoteFile(29000, _digests("d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
                                              "0065d13af80720a55ca8153d126e6627")),
    "val.de.gz": RemoteFile(1014, _digests("f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
                                           "6e0e229eb049e3fc99a1ef02fb2d5f91")),
    "val.en.gz": RemoteFile(1014, _digests("14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
                                           "2b69aa9253948ac9f67e94917272dd40")),
    "test_2016_flickr.de.gz": RemoteFile(1000, _digests(
        "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8", "efd67d314d98489b716b145475101932")),
    "test_2016_flickr.en.gz": RemoteFile(1000, _digests(
        "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9", "ff2c0fcb4893a13bd73414306bc250ae")),
    "test_2017_flickr.de.gz": RemoteFile(1000, _digests(
        "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee")),
    "test_2017_flickr.en.gz": RemoteFile(1000, _digests(
        "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074")),
    "test_2017_mscoco.de.gz": RemoteFile(461, _digests(
        "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338")),
    "test_2017_mscoco.en.gz": RemoteFile(461, _digests(
        "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58")),
    "test_2018_flickr.de.gz": RemoteFile(1071, _digests(
        "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608")),
    "test_2018_flickr.en.gz": RemoteFile(1071, _digests(
        "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d")),
}  # fmt: skip


def split_names() -> tuple[str, ...]:
    """Every name :func:`load` accepts: the splits with files, and ``"test"``."""
    return ("train", "val", "test", *TEST_SETS)


def file_names(split: str) -> tuple[str, str]:
    """The German and English file names of ``split`` (any of :func:`split_names`), without .gz."""
    stem = DEFAULT_TEST if split == "test" else split
    if stem not in SPLITS:
        raise UserError(f"unknown Multi30k split {split!r}; choose one of {', '.join(split_names())}")
    return f"{stem}.de", f"{stem}.en"


def verify(path: Path, remote: RemoteFile) -> None:
    """:class:`UserError` unless the bytes of ``path`` have every digest of ``remote``."""
    for checksum in remote.checksums:
        actual = checksum.of(path)
        if actual != checksum.hexdigest:
            raise UserError(f"{path}: {checksum.algorithm} is {actual}, expected {checksum.hexdigest} (the published "
                            "file); if this is your own copy, decompress it to use it unchecked")  # fmt: skip


def _check_download(name: str, remote: RemoteFile):
    """A ``validate`` callback for :func:`fetch`: every digest after the first, then the line count."""

    def check(path: Path) -> None:
        verify(path, RemoteFile(remote.lines, remote.checksums[1:]))
        found = len(read_lines(path))
        if found != remote.lines:
            raise UserError(f"{name}: {found} lines, expected {remote.lines}; the download was deleted")

    return check


def _offline_hint(folder: Path, names: list[str], reading: bool) -> str:
    """What to do offline. ``reading``: the files are wanted for training or evaluation (which take
    ``--data-dir``); otherwise for ``xattn data multi30k`` (which takes ``--cache-dir``)."""
    where = "and pass that folder with --data-dir" if reading else "(or choose another folder with --cache-dir)"
    return f"If you are offline, copy the Multi30k files ({', '.join(names)}; gzip'd or plain) into {folder} {where}."


def download(
    splits: tuple[str, ...] = DOWNLOADED,
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
    names = [f"{name}.gz" for split in splits for name in file_names(split)]
    for name in names:
        remote = files[name]
        fetch(f"{base_url}/{name}", folder / name, remote.checksums[0], validate=_check_download(name, remote),
              hint=_offline_hint(folder, names, reading))  # fmt: skip
    return folder


def _find(folder: Path, name: str, files: Mapping[str, RemoteFile]) -> Path:
    """``name.gz`` (verified) or plain ``name`` inside ``folder``; a one-line error naming both if neither is."""
    packed = folder / f"{name}.gz"
    if packed.is_file():
        verify(packed, files[packed.name])
        return packed
    if (folder / name).is_file():
        return folder / name
    raise UserError(f"{folder}: {name}.gz not found (nor {name}); copy that Multi30k file into the folder "
                    "given with --data-dir")  # fmt: skip


def load(
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    base_url: str = BASE_URL,
    files: Mapping[str, RemoteFile] = FILES,
) -> list[tuple[str, str]]:
    """``(german, english)`` sentence pairs of one split (any of :func:`split_names`).

    With ``data_dir`` the files are read from that folder and nothing is downloaded; otherwise
    they are downloaded into ``cache_dir`` (default ``paths.data_dir()/multi30k``) the first time
    and read from there afterwards. Only this split's two files are touched. Raises
    :class:`UserError` for an unknown split, a missing folder or file, or a file that fails its check.
    """
    de_name, en_name = file_names(split)
    if data_dir is None:
        folder = download((split,), cache_dir=cache_dir, base_url=base_url, files=files, reading=True)
        return read_parallel(folder / f"{de_name}.gz", folder / f"{en_name}.gz")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (the Multi30k files; name their folder with --data-dir)")
    return read_parallel(_find(folder, de_name, files), _find(folder, en_name, files))
