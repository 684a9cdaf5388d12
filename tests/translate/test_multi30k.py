"""Multi30k: download (fresh, resumed, interrupted, corrupt, offline) and loading.

Every network test talks to a small HTTP server on 127.0.0.1 started by the test, serving
tiny files in the Multi30k format; nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.translate.multi30k_sample import shared_or_skip
from xattn_edu.common.errors import UserError
from xattn_edu.translate.data import multi30k
from xattn_edu.translate.data.download import Checksum
from xattn_edu.translate.data.parallel_text import read_lines

SENTENCES = {
    "train": [("Ein Hund läuft.", "A dog runs."), ("Zwei Kinder spielen.", "Two children play."),
              ("Eine Frau liest.", "A woman reads.")],
    "val": [("Ein Mann kocht.", "A man cooks."), ("Ein Vogel singt.", "A bird sings.")],
    "test": [("Die Katze schläft.", "The cat sleeps.")],
}  # fmt: skip


def gz_lines(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)


def remote_files() -> dict[str, bytes]:
    files = {}
    for split, pairs in SENTENCES.items():
        de_name, en_name = multi30k.file_names(split)
        files[f"{de_name}.gz"] = gz_lines([de for de, _ in pairs])
        files[f"{en_name}.gz"] = gz_lines([en for _, en in pairs])
    return files


def table(files: dict[str, bytes]) -> dict[str, multi30k.RemoteFile]:
    """A checksum table (SHA-256, then MD5) for the tiny files, like multi30k.FILES for the real ones."""
    return {
        name: multi30k.RemoteFile(len(gzip.decompress(data).splitlines()),
                                  (Checksum("sha256", hashlib.sha256(data).hexdigest()),
                                   Checksum("md5", hashlib.md5(data).hexdigest())))
        for name, data in files.items()
    }  # fmt: skip


class Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    ranges: bool = True  # honour Range requests
    range_shift: int = 0  # misreport the start of a Content-Range by this many bytes
    cut_once: set[str]  # names whose next response stops half-way
    log: list[tuple[str, str | None]]  # (file name, Range header) per request


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server naming
        server: Server = self.server
        name = self.path.rsplit("/", 1)[-1]
        server.log.append((name, self.headers.get("Range")))
        if name not in server.files:
            self.send_error(404)
            return
        data = server.files[name]
        start = 0
        if server.ranges and self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            shown = start + server.range_shift  # a wrong value exercises the client's check
            self.send_header("Content-Range", f"bytes {shown}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in server.cut_once:
            server.cut_once.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.files, srv.cut_once, srv.log = remote_files(), set(), []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/data/task1/raw"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_published_table_covers_every_file():
    names = {f"{n}.gz" for split in multi30k.SPLITS for n in multi30k.file_names(split)}
    assert set(multi30k.FILES) == names
    assert multi30k.SPLITS == ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco",
                               "test_2018_flickr")  # fmt: skip
    lines = {s: multi30k.FILES[f"{s}.de.gz"].lines for s in multi30k.SPLITS}
    assert lines == {"train": 29000, "val": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000,
                     "test_2017_mscoco": 461, "test_2018_flickr": 1071}  # fmt: skip
    for name, remote in multi30k.FILES.items():
        assert remote.lines == multi30k.FILES[name.replace(".de.", ".en.")].lines
        assert remote.checksums[0].algorithm == "sha256", name  # SHA-256 first, for every file
        for checksum in remote.checksums:
            assert checksum.algorithm in {"md5", "sha256"}
            assert len(checksum.hexdigest) == hashlib.new(checksum.algorithm).digest_size * 2
    assert [n for n, r in multi30k.FILES.items() if len(r.checksums) == 2] == [
        f"{s}.{lang}.gz" for s in ("train", "val", "test_2016_flickr") for lang in ("de", "en")]  # torchtext's MD5s
    assert multi30k.BASE_URL == "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"


def test_the_issue_sha256_values_are_the_table():
    """The SHA-256 values listed in the Chapter 6 issue, typed again here so a slip in either shows."""
    issue = {
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
        "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    }
    assert {name: multi30k.FILES[name].checksums[0].hexdigest for name in issue} == issue


def test_shared_raw_files_pass_every_check():
    folder = shared_or_skip()
    present = sorted(p.name for p in folder.glob("*.gz"))
    assert present, folder
    for name in present:
        multi30k.verify(folder / name, multi30k.FILES[name])  # SHA-256 and, where known, MD5
        assert len(read_lines(folder / name)) == multi30k.FILES[name].lines


def test_download_then_load_from_cache(server, tmp_path):
    files = table(server.files)
    for split, pairs in SENTENCES.items():
        assert multi30k.load(split, cache_dir=tmp_path, base_url=server.url, files=files) == pairs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(server.files)
    requests = len(server.log)
    assert multi30k.load("train", cache_dir=tmp_path, base_url=server.url, files=files) == SENTENCES["train"]
    assert len(server.log) == requests  # verified files are not fetched again


def test_resume_asks_for_the_missing_bytes_only(server, tmp_path):
    data = server.files["train.de.gz"]
    (tmp_path / "train.de.gz.part").write_bytes(data[:10])
    multi30k.download(("train",), cache_dir=tmp_path, base_url=server.url, files=table(server.files))
    assert ("train.de.gz", "bytes=10-") in server.log
    assert (tmp_path / "train.de.gz").read_bytes() == data
    assert not list(tmp_path.glob("*.part"))


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    server.ranges = False
    (tmp_path / "val.en.gz.part").write_bytes(b"stale bytes from another file")
    multi30k.download(("val",), cache_dir=tmp_path, base_url=server.url, files=table(server.files))
    assert (tmp_path / "val.en.gz").read_bytes() == server.files["val.en.gz"]


def test_resume_at_the_wrong_offset_starts_over(server, tmp_path):
    files = table(server.files)
    server.range_shift = 3
    (tmp_path / "val.de.gz.part").write_bytes(server.files["val.de.gz"][:10])
    with pytest.raises(UserError, match="resumed at the wrong byte"):
        multi30k.download(("val",), cache_dir=tmp_path, base_url=server.url, files=files)
    assert not (tmp_path / "val.de.gz.part").exists()
    multi30k.download(("val",), cache_dir=tmp_path, base_url=server.url, files=files)
    assert (tmp_path / "val.de.gz").read_bytes() == server.files["val.de.gz"]


def test_interrupted_download_keeps_the_part_and_resumes(server, tmp_path):
    files = table(server.files)
    server.cut_once.add("train.en.gz")
    with pytest.raises(UserError, match="interrupted.*run again to resume"):
        multi30k.download(("train",), cache_dir=tmp_path, base_url=server.url, files=files)
    part = tmp_path / "train.en.gz.part"
    assert 0 < part.stat().st_size < len(server.files["train.en.gz"])
    assert not (tmp_path / "train.en.gz").exists()
    multi30k.download(("train",), cache_dir=tmp_path, base_url=server.url, files=files)
    assert ("train.en.gz", f"bytes={len(server.files['train.en.gz']) // 2}-") in server.log
    assert (tmp_path / "train.en.gz").read_bytes() == server.files["train.en.gz"]


def test_checksum_mismatch_deletes_the_partial_download(server, tmp_path):
    files = table(server.files)
    files["val.de.gz"] = multi30k.RemoteFile(2, (Checksum("sha256", "0" * 64),))
    with pytest.raises(UserError, match=r"val\.de\.gz: sha256 is [0-9a-f]{64}, expected 0{64}"):
        multi30k.download(("val",), cache_dir=tmp_path, base_url=server.url, files=files)
    assert not (tmp_path / "val.de.gz").exists() and not (tmp_path / "val.de.gz.part").exists()


def test_wrong_line_count_deletes_the_download(server, tmp_path):
    files = table(server.files)
    files["test_2016_flickr.en.gz"] = multi30k.RemoteFile(1000, files["test_2016_flickr.en.gz"].checksums)
    with pytest.raises(UserError, match="1 lines, expected 1000"):
        multi30k.download(("test",), cache_dir=tmp_path, base_url=server.url, files=files)
    assert not list(tmp_path.glob("test_2016_flickr.en.gz*"))


def test_missing_remote_file_is_a_user_error(server, tmp_path):
    del server.files["val.en.gz"]
    with pytest.raises(UserError, match="HTTP 404"):
        multi30k.download(("val",), cache_dir=tmp_path, base_url=server.url, files=table(remote_files()))


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/raw"


def test_offline_points_to_data_dir_when_reading_and_to_cache_dir_when_downloading(tmp_path):
    """Regression: `xattn data multi30k` offline named --data-dir, an option that command does not have."""
    with pytest.raises(UserError, match="--data-dir") as reading:
        multi30k.load("val", cache_dir=tmp_path, base_url=_dead_url())
    assert "--cache-dir" not in str(reading.value)
    with pytest.raises(UserError, match="--cache-dir") as downloading:
        multi30k.download(("val",), cache_dir=tmp_path, base_url=_dead_url())
    assert "--data-dir" not in str(downloading.value)


def test_data_dir_with_plain_and_gzip_files_needs_no_network(tmp_path):
    (tmp_path / "train.de").write_text("".join(f"{de}\n" for de, _ in SENTENCES["train"]), encoding="utf-8")
    (tmp_path / "train.en.gz").write_bytes(gz_lines([en for _, en in SENTENCES["train"]]))
    files = table(remote_files())  # the tiny files' digests, as FILES has the real ones'
    offline = "http://127.0.0.1:9/none"
    assert multi30k.load("train", data_dir=tmp_path, base_url=offline, files=files) == SENTENCES["train"]


def test_data_dir_errors_name_the_file_and_the_option(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        multi30k.load("val", data_dir=tmp_path / "missing")
    with pytest.raises(UserError, match=r"val\.de\.gz not found \(nor val\.de\).*--data-dir") as missing:
        multi30k.load("val", data_dir=tmp_path)
    assert "\n" not in str(missing.value)
    (tmp_path / "val.de").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "val.en").write_text("a\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"val\.de has 2 lines but .*val\.en has 1"):
        multi30k.load("val", data_dir=tmp_path)
    (tmp_path / "val.en").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=r"val\.en: the file is empty"):
        multi30k.load("val", data_dir=tmp_path)


def test_a_gz_file_in_data_dir_is_verified_and_a_plain_one_is_read_as_it_is(tmp_path):
    files = table(remote_files())
    for name in ("val.de.gz", "val.en.gz"):
        (tmp_path / name).write_bytes(remote_files()[name])
    assert multi30k.load("val", data_dir=tmp_path, files=files) == SENTENCES["val"]
    with pytest.raises(UserError, match=r"val\.de\.gz: sha256 is [0-9a-f]{64}, expected .*decompress it"):
        multi30k.load("val", data_dir=tmp_path)  # the published table: these tiny files are not Multi30k
    (tmp_path / "val.en.gz").write_bytes(gz_lines(["x", "y"])[:-10])  # damaged
    with pytest.raises(UserError, match=r"val\.en\.gz: sha256 is"):
        multi30k.load("val", data_dir=tmp_path, files=files)
    (tmp_path / "val.en.gz").unlink()
    (tmp_path / "val.en").write_text("A man cooks.\nA bird sings.\n", encoding="utf-8")  # your own copy
    assert multi30k.load("val", data_dir=tmp_path, files=files) == SENTENCES["val"]


def test_md5_is_a_second_check_of_the_same_bytes(tmp_path):
    files = table(remote_files())
    right = files["train.de.gz"]
    files["train.de.gz"] = multi30k.RemoteFile(right.lines, (right.checksums[0], Checksum("md5", "0" * 32)))
    for name in ("train.de.gz", "train.en.gz"):
        (tmp_path / name).write_bytes(remote_files()[name])
    with pytest.raises(UserError, match=r"train\.de\.gz: md5 is [0-9a-f]{32}, expected 0{32}"):
        multi30k.load("train", data_dir=tmp_path, files=files)


@pytest.mark.parametrize("name", ["test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"])
def test_every_published_test_set_is_read_by_name_from_a_folder_holding_only_it(tmp_path, name):
    pairs = [(f"Satz {i} von {name}.", f"Sentence {i} of {name}.") for i in range(3)]
    (tmp_path / f"{name}.de").write_text("".join(f"{de}\n" for de, _ in pairs), encoding="utf-8")
    (tmp_path / f"{name}.en").write_text("".join(f"{en}\n" for _, en in pairs), encoding="utf-8")
    assert multi30k.load(name, data_dir=tmp_path) == pairs
    with pytest.raises(UserError, match=r"train\.de\.gz not found.*--data-dir"):
        multi30k.load("train", data_dir=tmp_path)


def test_test_means_test_2016_flickr():
    assert multi30k.file_names("test") == multi30k.file_names("test_2016_flickr") == ("test_2016_flickr.de",
                                                                                        "test_2016_flickr.en")
    assert multi30k.split_names() == ("train", "val", "test", *multi30k.TEST_SETS)


def test_a_test_set_is_downloaded_by_name_and_alone(server, tmp_path):
    pairs = [("Ein Boot.", "A boat."), ("Zwei Hunde.", "Two dogs.")]
    server.files["test_2017_mscoco.de.gz"] = gz_lines([de for de, _ in pairs])
    server.files["test_2017_mscoco.en.gz"] = gz_lines([en for _, en in pairs])
    assert multi30k.load("test_2017_mscoco", cache_dir=tmp_path, base_url=server.url,
                         files=table(server.files)) == pairs  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_2017_mscoco.de.gz", "test_2017_mscoco.en.gz"]


def test_unknown_split():
    with pytest.raises(UserError, match="unknown Multi30k split 'dev'; choose one of train, val, test, test_2016"):
        multi30k.load("dev")
