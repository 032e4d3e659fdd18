"""dom0.migration.savefile: the save file around QEMU's migration stream is
written atomically and refused, before anything starts, when it is foreign,
truncated, corrupted or of another version."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from dom0.errors import VmError
from dom0.migration.savefile import (
    MAGIC,
    TRAILER,
    TRAILER_SIZE,
    VERSION,
    SaveFileError,
    SaveImage,
    Writer,
    verify,
)

CONFIG: dict[str, Any] = {
    "name": "guest-é",
    "memory": 256,
    "vcpus": 2,
    "disk": ["file:/var/lib/xen/images/guest.img,xvda,w"],
    "vif": [{"mac": "00:16:3e:00:00:01", "bridge": "xenbr0"}],
    "on_crash": "restart",
    "extra": None,
}
# a stand-in for QEMU's stream: starts as QEMU's does, contains every byte value
STREAM_CHUNKS = [b"QEVM\x00\x00\x00\x03", bytes(range(256)) * 16, b"", b"\x00" * 1000, b"end"]
STREAM = b"".join(STREAM_CHUNKS)


def write_save(path: Path, config: dict[str, Any] = CONFIG,
               chunks: list[bytes] = STREAM_CHUNKS) -> Path:
    w = Writer(str(path), config)
    for chunk in chunks:
        w.stream(chunk)
    w.commit()
    return path


def build_file(config_blob: bytes, stream: bytes, version: int = VERSION,
               magic: bytes = MAGIC) -> bytes:
    """A save file put together by hand, with a correct checksum."""
    body = magic + struct.pack(">II", version, len(config_blob)) + config_blob + stream
    return body + TRAILER + hashlib.sha256(body).digest()


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return write_save(tmp_path / "guest.save")


# ---- the writer ------------------------------------------------------------------


def test_layout_is_header_stream_trailer(saved: Path) -> None:
    data = saved.read_bytes()
    blob = json.dumps(CONFIG, sort_keys=True).encode()
    head = MAGIC + struct.pack(">II", VERSION, len(blob)) + blob
    assert data.startswith(head)
    assert data[len(head):len(head) + len(STREAM)] == STREAM
    body = data[:-TRAILER_SIZE]
    assert data[-TRAILER_SIZE:] == TRAILER + hashlib.sha256(body).digest()
    assert len(data) == len(head) + len(STREAM) + TRAILER_SIZE
    assert data == build_file(blob, STREAM)


def test_writer_counts_stream_bytes(tmp_path: Path) -> None:
    w = Writer(str(tmp_path / "g.save"), CONFIG)
    for chunk in STREAM_CHUNKS:
        w.stream(chunk)
    assert w.stream_bytes == len(STREAM)
    w.abort()


def test_nothing_at_the_final_path_before_commit(tmp_path: Path) -> None:
    final = tmp_path / "guest.save"
    w = Writer(str(final), CONFIG)
    w.stream(STREAM)
    assert not final.exists()
    # the bytes so far live under a temporary name in the same directory
    assert [p.name for p in tmp_path.iterdir()] == [Path(w.tmp).name]
    assert Path(w.tmp).parent == tmp_path
    assert Path(w.tmp).name != final.name
    w.commit()
    assert final.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["guest.save"]


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "guest.save"
    w = Writer(str(final), CONFIG)
    w.stream(STREAM)
    w.abort()
    assert list(tmp_path.iterdir()) == []
    w.abort()  # a second abort is harmless
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_an_existing_save_intact(tmp_path: Path) -> None:
    final = write_save(tmp_path / "guest.save")
    before = final.read_bytes()
    w = Writer(str(final), {"name": "other"})
    w.stream(b"partial")
    assert final.read_bytes() == before
    w.abort()
    assert final.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["guest.save"]


def test_commit_replaces_an_existing_save(tmp_path: Path) -> None:
    final = write_save(tmp_path / "guest.save")
    w = Writer(str(final), {"name": "other"})
    w.stream(b"new stream")
    assert verify(str(final)).config == CONFIG  # the old one, until commit
    w.commit()
    image = verify(str(final))
    assert image.config == {"name": "other"}
    assert [p.name for p in tmp_path.iterdir()] == ["guest.save"]


# ---- verify() on good files --------------------------------------------------------


def test_verify_returns_config_and_stream_position(saved: Path) -> None:
    image = verify(str(saved))
    assert isinstance(image, SaveImage)
    assert image.path == str(saved)
    assert image.config == CONFIG
    assert image.stream_length == len(STREAM)
    data = saved.read_bytes()
    blob = json.dumps(CONFIG, sort_keys=True).encode()
    assert image.stream_offset == len(MAGIC) + 8 + len(blob)
    assert data[image.stream_offset:image.stream_offset + image.stream_length] == STREAM
    with open(saved, "rb") as f:  # how restore reads it: seek and hand over
        f.seek(image.stream_offset)
        assert f.read(image.stream_length) == STREAM
        assert f.read() == data[-TRAILER_SIZE:]


def test_verify_empty_stream_and_empty_config(tmp_path: Path) -> None:
    path = write_save(tmp_path / "g.save", {}, [])
    image = verify(str(path))
    assert image.config == {}
    assert image.stream_length == 0
    assert image.stream_offset == path.stat().st_size - TRAILER_SIZE


def test_verify_stream_larger_than_a_read_chunk(tmp_path: Path) -> None:
    rng = random.Random(7)
    chunks = [rng.randbytes(1024 * 1024) for _ in range(9)]  # 9 MiB, > 2 x 4 MiB reads
    path = write_save(tmp_path / "big.save", CONFIG, chunks)
    image = verify(str(path))
    assert image.stream_length == 9 * 1024 * 1024
    with open(path, "rb") as f:
        f.seek(image.stream_offset)
        assert f.read(image.stream_length) == b"".join(chunks)


def test_stream_that_looks_like_a_trailer_is_still_just_stream(tmp_path: Path) -> None:
    tricky = [TRAILER + b"\x00" * 32, MAGIC, TRAILER]
    path = write_save(tmp_path / "g.save", CONFIG, tricky)
    image = verify(str(path))
    data = path.read_bytes()
    assert data[image.stream_offset:image.stream_offset + image.stream_length] == b"".join(tricky)


# ---- refusals ------------------------------------------------------------------------


def test_errors_are_vm_errors() -> None:
    assert issubclass(SaveFileError, VmError)


@pytest.mark.parametrize("content, found", [
    (b"hello, world\n", b"hello, w"),
    (b"QEVM\x00\x00\x00\x03rest of a raw qemu stream", b"QEVM\x00\x00\x00\x03"),
    (b"LinuxGuestRecord", b"LinuxGue"),
    (b"abc", b"abc"),
    (b"", b""),
])
def test_foreign_file(tmp_path: Path, content: bytes, found: bytes) -> None:
    path = tmp_path / "foreign"
    path.write_bytes(content)
    with pytest.raises(SaveFileError) as exc:
        verify(str(path))
    assert str(exc.value) == f"not a valid guest state file: found {found!r}"


def test_foreign_file_message_text(tmp_path: Path) -> None:
    path = tmp_path / "foreign"
    path.write_bytes(b"hello, world\n")
    with pytest.raises(SaveFileError, match=r"^not a valid guest state file: found b'hello, w'$"):
        verify(str(path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.save"
    with pytest.raises(SaveFileError) as exc:
        verify(str(path))
    assert str(exc.value) == (
        f"xm restore: Unable to read file {path}: No such file or directory")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SaveFileError) as exc:
        verify(str(tmp_path))
    assert str(exc.value).startswith(f"xm restore: Unable to read file {tmp_path}: ")


def test_wrong_version(tmp_path: Path) -> None:
    path = tmp_path / "v2.save"
    path.write_bytes(build_file(b"{}", STREAM, version=VERSION + 1))
    with pytest.raises(SaveFileError) as exc:
        verify(str(path))
    assert str(exc.value) == (
        f"save file {path} has format version {VERSION + 1}; this xend reads version {VERSION}")


def test_version_zero(tmp_path: Path) -> None:
    path = tmp_path / "v0.save"
    path.write_bytes(build_file(b"{}", STREAM, version=0))
    with pytest.raises(SaveFileError, match="has format version 0; this xend reads version 1"):
        verify(str(path))


def test_config_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "g.save"
    path.write_bytes(build_file(b"{not json", STREAM))
    with pytest.raises(SaveFileError) as exc:
        verify(str(path))
    assert str(exc.value) == "not a valid guest state file: config parse"


def _truncation_message_ok(message: str, path: Path, keep: int) -> bool:
    if keep == 0:  # an empty file could be anything
        return message.startswith("not a valid guest state file: found ")
    return message in (f"save file {path} is truncated",
                       f"save file {path} is truncated or corrupted (no trailer)")


def test_truncated_anywhere(tmp_path: Path) -> None:
    # every length short of the whole file, on a small file (header, stream, trailer)
    small = write_save(tmp_path / "small.save", {"name": "g"},
                       [b"QEVM\x00\x00\x00\x03", b"ab" * 50])
    data = small.read_bytes()
    cut = tmp_path / "cut.save"
    for keep in range(len(data)):
        cut.write_bytes(data[:keep])
        with pytest.raises(SaveFileError) as exc:
            verify(str(cut))
        assert _truncation_message_ok(str(exc.value), cut, keep), (keep, str(exc.value))


@pytest.mark.parametrize("region", ["header", "config", "stream", "trailer"])
def test_truncated_in_each_region(saved: Path, tmp_path: Path, region: str) -> None:
    data = saved.read_bytes()
    offset = verify(str(saved)).stream_offset
    keep = {
        "header": len(MAGIC) + 5,  # in the version/length words
        "config": offset - 3,
        "stream": offset + len(STREAM) // 2,
        "trailer": len(data) - 1,
    }[region]
    cut = tmp_path / "cut.save"
    cut.write_bytes(data[:keep])
    with pytest.raises(SaveFileError, match="is truncated"):
        verify(str(cut))


def test_trailer_missing_entirely(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    cut = tmp_path / "cut.save"
    cut.write_bytes(data[:-TRAILER_SIZE])
    with pytest.raises(SaveFileError) as exc:
        verify(str(cut))
    assert str(exc.value) == f"save file {cut} is truncated or corrupted (no trailer)"


def test_appended_garbage_is_refused(saved: Path) -> None:
    with open(saved, "ab") as f:
        f.write(b"x")
    with pytest.raises(SaveFileError):
        verify(str(saved))


def _flip(path: Path, data: bytes, bit: int) -> None:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(flipped))


def test_one_flipped_bit_in_the_stream(saved: Path) -> None:
    data = saved.read_bytes()
    image = verify(str(saved))
    _flip(saved, data, (image.stream_offset + 100) * 8 + 3)
    with pytest.raises(SaveFileError) as exc:
        verify(str(saved))
    assert str(exc.value) == f"save file {saved} is corrupted (checksum mismatch)"


def test_flipped_bits_in_the_stream_randomised(saved: Path) -> None:
    data = saved.read_bytes()
    image = verify(str(saved))
    rng = random.Random(0xD0_0D)
    first = image.stream_offset * 8
    last = (image.stream_offset + image.stream_length) * 8 - 1
    bits = {first, last} | {rng.randint(first, last) for _ in range(60)}
    for bit in sorted(bits):
        _flip(saved, data, bit)
        with pytest.raises(SaveFileError, match=r"corrupted \(checksum mismatch\)$"):
            verify(str(saved))


@pytest.mark.parametrize("region", ["config", "digest"])
def test_flipped_bit_in_config_or_digest(saved: Path, region: str) -> None:
    data = saved.read_bytes()
    image = verify(str(saved))
    byte = {"config": image.stream_offset - 5, "digest": len(data) - 1}[region]
    _flip(saved, data, byte * 8)
    with pytest.raises(SaveFileError, match=r"checksum mismatch"):
        verify(str(saved))


def test_flipped_bits_anywhere_randomised(saved: Path) -> None:
    data = saved.read_bytes()
    rng = random.Random(12345)
    bits = {rng.randrange(len(data) * 8) for _ in range(150)}
    # and every bit of the header and of the trailer's tag
    bits |= set(range((len(MAGIC) + 8) * 8))
    bits |= set(range((len(data) - TRAILER_SIZE) * 8, (len(data) - 32) * 8))
    for bit in sorted(bits):
        _flip(saved, data, bit)
        with pytest.raises(SaveFileError):
            verify(str(saved))
    saved.write_bytes(data)
    assert verify(str(saved)).config == CONFIG  # the original was fine all along


# ---- who may read it: the guest's memory is in there ---------------------------------------


@pytest.fixture
def open_umask() -> Any:
    """The most permissive umask: a mode must come from the code, not the umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_save_and_partial_files_are_created_0600(tmp_path: Path, open_umask: Any) -> None:
    final = tmp_path / "g.save"
    w = Writer(str(final), CONFIG)
    assert stat.S_IMODE(os.stat(w.tmp).st_mode) == 0o600
    w.stream(b"state")
    w.commit()
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o600


def test_a_partial_name_taken_by_a_symlink_is_not_followed(tmp_path: Path) -> None:
    """The partial is created, never opened: a link planted under its name (to a
    file the attacker wants overwritten) is refused, not written through."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    final = tmp_path / "g.save"
    (tmp_path / f"g.save.partial-{os.getpid()}").symlink_to(victim)
    w = Writer(str(final), CONFIG)
    w.stream(b"state")
    w.commit()
    assert victim.read_bytes() == b"keep" and verify(str(final)).config == CONFIG
