"""Dataset acquisition: resumable verified downloads from a local HTTP server, digests locked on first use,
safe extraction, manual mode."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import logging
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import py7zr
import pytest
import yaml
from file_server import FileServer

from qfm_iqm.data.download import ManualDownloadRequired, acquire, extract, fetch
from qfm_iqm.data.lock import DigestLock
from qfm_iqm.data.registry import KINDS
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- fetch -------------------------------------------------------------------------------------------------------


def test_fetch_downloads_and_verifies(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    dest = tmp_path / "deep" / "dir" / "a.bin"
    assert fetch(server.url("a.bin"), dest, sha(PAYLOAD), chunk_size=1 << 16) == sha(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]  # no .part left
    fetch(server.url("a.bin"), dest, sha(PAYLOAD).upper())  # present and verified: no request
    assert len(server.log) == 1


def test_fetch_resumes_after_cut_connection(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    server.cut_after["a.bin"] = 300_001
    dest = tmp_path / "a.bin"
    fetch(server.url("a.bin"), dest, sha(PAYLOAD), chunk_size=1 << 16)
    assert dest.read_bytes() == PAYLOAD
    assert [e["range"] for e in server.log] == [None, "bytes=300001-"]
    assert [e["status"] for e in server.log] == [200, 206]
    assert sum(e["sent"] for e in server.log) < 2 * len(PAYLOAD)
    assert not (tmp_path / "a.bin.part").exists()


def test_fetch_resumes_from_existing_part(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:123_456])
    fetch(server.url("a.bin"), tmp_path / "a.bin", sha(PAYLOAD))
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert [(e["range"], e["sent"]) for e in server.log] == [("bytes=123456-", len(PAYLOAD) - 123_456)]


def test_fetch_restarts_when_server_ignores_range(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes from another version")
    fetch(server.url("a.bin"), tmp_path / "a.bin", sha(PAYLOAD))
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert [e["status"] for e in server.log] == [200]


def test_fetch_checksum_mismatch_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    wrong = sha(b"something else")
    with pytest.raises(InputError) as err:
        fetch(server.url("a.bin"), tmp_path / "a.bin", wrong)
    message = str(err.value)
    assert server.url("a.bin") in message and wrong in message and sha(PAYLOAD) in message
    assert list(tmp_path.iterdir()) == []


def test_fetch_404_names_url(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="404") as err:
        fetch(server.url("missing.zip"), tmp_path / "missing.zip", sha(b""))
    assert server.url("missing.zip") in str(err.value)
    assert len(server.log) == 1  # a client error is not retried
    assert list(tmp_path.iterdir()) == []


# --- archives ----------------------------------------------------------------------------------------------------

TREE = {"top/a.txt": b"hello archive\n", "top/sub/b.bin": bytes(range(256)) * 3}


def rar4(files: dict[str, bytes]) -> bytes:
    """A RAR 4.x archive of stored (method 0x30) files; no tool here can create one."""

    def block(head_type: int, flags: int, body: bytes, data: bytes = b"") -> bytes:
        rest = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest + data

    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, bytes(6))  # marker, archive header
    dos_time = (2024 - 1980) << 25 | 1 << 21 | 1 << 16
    for name, data in files.items():
        raw = name.replace("/", "\\").encode()  # RAR 4 separates path parts with backslashes
        size = len(data)
        head = struct.pack("<IIBIIBBHI", size, size, 3, zlib.crc32(data), dos_time, 20, 0x30, len(raw), 0o100644)
        out += block(0x74, 0x8000, head + raw, data)  # file header (0x8000: ADD_SIZE present), then the data
    return out + block(0x7B, 0x4000, b"")  # end of archive


def make_zip(path: Path, files: dict[str, bytes]) -> None:
    path.write_bytes(make_zip_bytes(files))


def make_zip_bytes(files: dict[str, bytes], stored: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def make_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def make_7z(path: Path, files: dict[str, bytes]) -> None:
    """py7zr refuses to write ``..`` in a name: write ``xx``, then patch the (plain) header and its CRCs."""
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as sz:
        sz.set_encoded_header_mode(False)
        for name, data in files.items():
            sz.writestr(data, name.replace("..", "xx"))
    out = buf.getvalue()
    for name in files:
        out = out.replace(name.replace("..", "xx").encode("utf-16-le"), name.encode("utf-16-le"))
    out = bytearray(out)
    offset, size = struct.unpack_from("<QQ", out, 12)  # next header: where, how long; then its CRC at 28
    struct.pack_into("<I", out, 28, zlib.crc32(out[32 + offset : 32 + offset + size]))
    struct.pack_into("<I", out, 8, zlib.crc32(out[12:32]))  # start header CRC
    path.write_bytes(out)


def make_rar(path: Path, files: dict[str, bytes]) -> None:
    path.write_bytes(rar4(files))


MAKERS: dict[str, Callable[[Path, dict[str, bytes]], None]] = {
    "x.zip": make_zip,
    "x.tar.gz": make_tar,
    "x.7z": make_7z,
    "x.rar": make_rar,
}
needs_unar = pytest.mark.skipif(shutil.which("unar") is None, reason="extracting .rar needs the `unar` tool")
ARCHIVES = [pytest.param(name, marks=needs_unar) if name.endswith(".rar") else name for name in MAKERS]


@pytest.mark.parametrize("name", ARCHIVES)
def test_extract_merges_into_dest(name: str, tmp_path: Path) -> None:
    archive = tmp_path / name
    MAKERS[name](archive, TREE)
    dest = tmp_path / "raw"
    (dest / "top").mkdir(parents=True)
    (dest / "top" / "a.txt").write_bytes(b"old")
    (dest / "top" / "keep.txt").write_bytes(b"kept")
    extract(archive, dest)
    assert (dest / "top" / "a.txt").read_bytes() == TREE["top/a.txt"]
    assert (dest / "top" / "sub" / "b.bin").read_bytes() == TREE["top/sub/b.bin"]
    assert (dest / "top" / "keep.txt").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "raw"])  # no temporary directory left


@needs_unar
def test_handmade_rar_is_accepted_by_lsar(tmp_path: Path) -> None:
    (tmp_path / "x.rar").write_bytes(rar4(TREE))
    listing = subprocess.run(["lsar", str(tmp_path / "x.rar")], check=True, capture_output=True, text=True).stdout
    assert "top/a.txt" in listing and "top/sub/b.bin" in listing


@pytest.mark.parametrize("name", ARCHIVES)
def test_extract_refuses_path_traversal(name: str, tmp_path: Path) -> None:
    archive = tmp_path / name
    MAKERS[name](archive, {"ok.txt": b"fine", "../evil.txt": b"evil"})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match=re.escape("../evil.txt")) as err:
        extract(archive, out / "dest")
    assert str(archive) in str(err.value)
    assert list(out.iterdir()) == []  # neither dest, nor a temporary directory, nor evil.txt


@pytest.mark.parametrize("name", ARCHIVES)
def test_extract_corrupt_archive_leaves_dest_untouched(name: str, tmp_path: Path) -> None:
    archive = tmp_path / name
    MAKERS[name](archive, TREE)
    data = bytearray(archive.read_bytes())
    if name.endswith(".rar"):
        data[data.index(TREE["top/a.txt"])] ^= 1  # stored data no longer matches its CRC32
    else:
        data = data[: len(data) // 2]
    archive.write_bytes(bytes(data))
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"kept")
    with pytest.raises(InputError, match=re.escape(str(archive))):
        extract(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "raw"])


def test_extract_unknown_suffix(tmp_path: Path) -> None:
    archive = tmp_path / "data.lzh"
    archive.write_bytes(b"whatever")
    with pytest.raises(InputError, match=r"data\.lzh.*\.zip.*\.rar"):
        extract(archive, tmp_path / "raw")


# --- acquire -----------------------------------------------------------------------------------------------------

LAYOUT = ("images/a.bin", "labels.csv")


def archives(tmp_path: Path) -> dict[str, bytes]:
    """A toy dataset split over a zip (images) and a tar.gz (labels), both with the top folder ``toy``."""
    make_zip(tmp_path / "images.zip", {"toy/images/a.bin": PAYLOAD[:1000]})
    make_tar(tmp_path / "labels.tar.gz", {"toy/labels.csv": b"image,mos\na.bin,3.5\n"})
    return {name: (tmp_path / name).read_bytes() for name in ("images.zip", "labels.tar.gz")}


def test_acquire_manual_mode_then_user_places_files(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "made").mkdir()
    made = archives(tmp_path / "made")
    server.files["labels.tar.gz"] = made["labels.tar.gz"]
    source = DatasetSource(
        homepage="https://example.org/toy",
        files=(RemoteFile("images.zip", None), RemoteFile("labels.tar.gz", server.url("labels.tar.gz"))),
        layout=LAYOUT,
        subdir="toy",
        how_to_obtain="fill in the request form at https://example.org/toy",
    )
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    with pytest.raises(ManualDownloadRequired) as err:
        acquire("toy", source, raw, downloads, raw / "toy")
    message = str(err.value)
    for part in (
        "images.zip",
        "via https://example.org/toy",
        f"labels.tar.gz  from {server.url('labels.tar.gz')}",
        "fill in the request form",
        str(downloads.resolve()),
        str((raw / "toy" / "images/a.bin").resolve()),
        "datasets.toy.files",
        "rerun the same command",
    ):
        assert part in message
    assert server.log == []  # no checksum, no download
    downloads.mkdir()
    for name, data in made.items():
        (downloads / name).write_bytes(data)
    acquire("toy", source, raw, downloads, raw / "toy")
    assert (raw / "toy" / "images" / "a.bin").read_bytes() == PAYLOAD[:1000]
    assert (raw / "toy" / "labels.csv").is_file()
    assert server.log == []


def test_acquire_rejects_wrong_user_file_but_keeps_it(tmp_path: Path) -> None:
    source = DatasetSource("https://example.org/toy", (RemoteFile("images.zip", None, sha256=sha(b"x")),), LAYOUT)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "images.zip").write_bytes(b"not it")
    with pytest.raises(InputError, match="images.zip") as err:
        acquire("toy", source, tmp_path / "raw", downloads, tmp_path / "raw")
    assert sha(b"not it") in str(err.value) and sha(b"x") in str(err.value)
    assert (downloads / "images.zip").read_bytes() == b"not it"


def test_acquire_downloads_pinned_files_once(server: FileServer, tmp_path: Path) -> None:
    server.files.update(archives(tmp_path))
    files = tuple(RemoteFile(name, server.url(name), sha(data)) for name, data in server.files.items())
    source = DatasetSource("https://example.org/toy", files, LAYOUT, subdir="toy")
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    acquire("toy", source, raw, downloads, raw / "toy")
    assert all((raw / "toy" / p).exists() for p in LAYOUT)
    assert sorted(p.name for p in downloads.iterdir()) == ["images.zip", "labels.tar.gz"]
    assert len(server.log) == 2
    acquire("toy", source, raw, downloads, raw / "toy")
    assert len(server.log) == 2


def test_acquire_reports_layout_still_missing(tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    make_zip(downloads / "images.zip", {"toy/images/a.bin": b"1"})
    source = DatasetSource("https://example.org/toy", (RemoteFile("images.zip", None),), LAYOUT, subdir="toy")
    with pytest.raises(InputError) as err:
        acquire("toy", source, tmp_path / "raw", downloads, tmp_path / "raw" / "toy")
    assert str(tmp_path / "raw" / "toy" / "labels.csv") in str(err.value) and "images.zip" in str(err.value)


def test_acquire_copies_plain_files(tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "labels.csv").write_bytes(b"image,mos\n")
    source = DatasetSource("https://example.org/toy", (RemoteFile("labels.csv", None, extract=False),), ("labels.csv",))
    acquire("toy", source, tmp_path / "raw", downloads, tmp_path / "raw")
    assert (tmp_path / "raw" / "labels.csv").read_bytes() == b"image,mos\n"
    assert (downloads / "labels.csv").is_file()


# --- trust on first use ------------------------------------------------------------------------------------------


def open_source(server: FileServer, made: dict[str, bytes], **kw) -> DatasetSource:
    """The toy dataset, served openly: URLs but no published checksums."""
    server.files.update(made)
    files = tuple(RemoteFile(name, server.url(name), size=len(data)) for name, data in made.items())
    return DatasetSource("https://example.org/toy", files, LAYOUT, subdir="toy", served_openly=True,
                         unpacked_size=2000, **kw)


def acquire_in(clone: Path, source: DatasetSource, **kw) -> dict[str, str]:
    """Acquire the toy dataset in a checkout at ``clone``, with its lock file at ``config/datasets.lock.yaml``."""
    raw = clone / "data/toy/raw"
    return acquire("toy", source, raw, clone / "data/toy/downloads", raw / source.subdir,
                   lock=DigestLock(clone / "config/datasets.lock.yaml"), **kw)


def test_first_use_downloads_and_writes_the_lock(server: FileServer, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    made = archives(tmp_path)
    caplog.set_level(logging.INFO)
    digests = acquire_in(tmp_path / "clone", open_source(server, made))
    assert digests == {name: sha(data) for name, data in made.items()}
    assert all((tmp_path / "clone/data/toy/raw/toy" / p).exists() for p in LAYOUT)
    lock = yaml.safe_load((tmp_path / "clone/config/datasets.lock.yaml").read_text())
    assert set(lock) == {"toy"} and set(lock["toy"]) == set(made)
    for name, data in made.items():
        assert lock["toy"][name] == {"sha256": sha(data), "size": len(data), "url": server.url(name),
                                     "date": datetime.date.today().isoformat()}
    assert "Commit this file" in (tmp_path / "clone/config/datasets.lock.yaml").read_text()
    before = caplog.text.index("acquiring images.zip, labels.tar.gz")  # stated before the first request
    assert "download about" in caplog.text[before:] and "unpacked about" in caplog.text[before:]
    assert "free there" in caplog.text[before:]
    assert caplog.text.index("trusted on first use") > before


def clone_with_lock(server: FileServer, tmp_path: Path) -> tuple[DatasetSource, dict[str, bytes], str]:
    """The toy dataset acquired in a first clone, and a second clone holding only the lock file it committed."""
    made = archives(tmp_path)
    source = open_source(server, made)
    acquire_in(tmp_path / "first", source)
    shutil.copytree(tmp_path / "first/config", tmp_path / "second/config")
    return source, made, (tmp_path / "second/config/datasets.lock.yaml").read_text()


def test_a_second_clone_with_the_lock_verifies_the_same_file(server: FileServer, tmp_path: Path) -> None:
    source, made, lock_text = clone_with_lock(server, tmp_path)
    acquire_in(tmp_path / "second", source, policy="strict")  # pinned by the lock: strict downloads it too
    assert all((tmp_path / "second/data/toy/downloads" / name).read_bytes() == data for name, data in made.items())
    assert (tmp_path / "second/data/toy/raw/toy/images/a.bin").read_bytes() == PAYLOAD[:1000]
    assert (tmp_path / "second/config/datasets.lock.yaml").read_text() == lock_text
    assert len(server.log) == 4


def test_a_changed_file_on_the_server_is_refused_naming_both_digests(server: FileServer, tmp_path: Path) -> None:
    source, made, lock_text = clone_with_lock(server, tmp_path)
    changed = make_zip_bytes({"toy/images/a.bin": b"other pixels"})
    server.files["images.zip"] = changed
    with pytest.raises(InputError) as err:
        acquire_in(tmp_path / "second", source)
    message = str(err.value)
    lock_path = tmp_path / "second/config/datasets.lock.yaml"
    assert sha(made["images.zip"]) in message and sha(changed) in message
    assert f"{lock_path}: toy/images.zip" in message
    assert not (tmp_path / "second/data/toy/downloads/images.zip").exists()
    assert not (tmp_path / "second/data/toy/downloads/images.zip.part").exists()
    assert not (tmp_path / "second/data/toy/raw/toy").exists()
    assert lock_path.read_text() == lock_text


def test_strict_refuses_an_unpinned_file(server: FileServer, tmp_path: Path) -> None:
    source = open_source(server, archives(tmp_path))
    with pytest.raises(ManualDownloadRequired) as err:
        acquire_in(tmp_path / "clone", source, policy="strict")
    message = str(err.value)
    assert "acquire.policy is strict" in message and "images.zip" in message and "datasets.toy.files" in message
    assert server.log == [] and not (tmp_path / "clone/config/datasets.lock.yaml").exists()
    with pytest.raises(InputError, match="unknown acquire.policy 'trusting'"):
        acquire_in(tmp_path / "clone", source, policy="trusting")


def test_first_use_resumes_a_cut_connection(server: FileServer, tmp_path: Path) -> None:
    big = make_zip_bytes({"toy/images/a.bin": PAYLOAD, "toy/labels.csv": b"image,mos\na.bin,3.5\n"}, stored=True)
    source = open_source(server, {"images.zip": big})
    server.cut_after["images.zip"] = 400_000
    acquire_in(tmp_path / "clone", source)
    assert [e["range"] for e in server.log] == [None, "bytes=400000-"]
    lock = DigestLock(tmp_path / "clone/config/datasets.lock.yaml").get("toy", "images.zip")
    assert lock.sha256 == sha(big) and lock.size == len(big)


def test_a_file_put_there_by_hand_is_locked_too(tmp_path: Path) -> None:
    made = archives(tmp_path)
    source = DatasetSource("https://example.org/toy", tuple(RemoteFile(n, None) for n in made), LAYOUT, subdir="toy")
    downloads = tmp_path / "clone/data/toy/downloads"
    downloads.mkdir(parents=True)
    for name, data in made.items():
        (downloads / name).write_bytes(data)
    acquire_in(tmp_path / "clone", source)
    lock = DigestLock(tmp_path / "clone/config/datasets.lock.yaml")
    assert {n: lock.get("toy", n).sha256 for n in made} == {n: sha(d) for n, d in made.items()}
    assert lock.get("toy", "images.zip").url is None


def test_a_config_pin_that_contradicts_the_lock_is_an_error(server: FileServer, tmp_path: Path) -> None:
    _, made, _ = clone_with_lock(server, tmp_path)
    pinned = DatasetSource("https://example.org/toy", (RemoteFile("images.zip", server.url("images.zip"), sha(b"x")),),
                           LAYOUT, subdir="toy")
    with pytest.raises(InputError) as err:
        acquire_in(tmp_path / "second", pinned)
    assert sha(b"x") in str(err.value) and sha(made["images.zip"]) in str(err.value) and "toy/images.zip" in str(err.value)


def test_progress_goes_to_a_log_as_lines_with_size_and_rate(server: FileServer, tmp_path: Path) -> None:
    server.files["a.bin"] = PAYLOAD
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        fetch(server.url("a.bin"), tmp_path / "a.bin", None)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")  # no carriage returns in a log file: one line per redraw
    assert re.search(r"a\.bin: 100%.*1\.00M/1\.00M \[.*B/s\]", text.splitlines()[-1])


# --- datasets that need a person ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["live", "spaq", "livefb"])
def test_datasets_that_need_a_person_stay_in_manual_mode(kind: str, tmp_path: Path) -> None:
    source = KINDS[kind].source  # LIVEFB's repository archive has a URL, but the images need its notebook
    with pytest.raises(ManualDownloadRequired) as err:
        acquire_in(tmp_path, source, kind=kind)
    message = str(err.value)
    assert source.how_to_obtain in message and "never downloaded automatically" in message
    assert all(f"  - {f.name}  " in message for f in source.files)
    assert not (tmp_path / "config/datasets.lock.yaml").exists()
