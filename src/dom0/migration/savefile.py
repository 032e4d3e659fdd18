"""The save file: our own format around QEMU's migration stream.

    b"DOM0SAVE"  u32 version  u32 config-length  config (JSON of DomainConfig)
    QEMU migration stream
    b"DOM0END!"  sha256 of everything before the trailer (32 bytes)

The checksum covers the whole file, so a truncated, corrupted or foreign file
is refused before anything is started.  Files are written to a temporary name
and renamed when complete: a failed save never leaves a half file under the
user's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from dom0.errors import VmError

MAGIC = b"DOM0SAVE"
TRAILER = b"DOM0END!"
VERSION = 1
_HEAD = struct.Struct(">II")
TRAILER_SIZE = len(TRAILER) + 32


class SaveFileError(VmError):
    """The file is not a complete, intact dom0 save file."""


@dataclass(frozen=True)
class SaveImage:
    path: str
    config: dict[str, Any]
    stream_offset: int
    stream_length: int


PARTIAL = ".partial-"


def partial_path(path: str, pid: int | None = None) -> str:
    """Where a save to *path* is written until it is complete (by xend *pid*)."""
    return f"{path}{PARTIAL}{os.getpid() if pid is None else pid}"


def create_private(path: str) -> BinaryIO:
    """A new file only its owner can read (the guest's memory goes in): 0600 from
    its creation on, never a chmod after, and never written through a link someone
    planted under its name (that one is removed and the file created anew)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:  # a leftover of an earlier xend with our pid, or a link
        os.unlink(path)
        fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, "wb")


class Writer:
    """Writes header, stream chunks and trailer, hashing as it goes."""

    def __init__(self, path: str, config: dict[str, Any]) -> None:
        self.path = path
        self.tmp = partial_path(path)
        self.file: BinaryIO = create_private(self.tmp)
        #: the first write that failed (a full disk): the cause a failed save reports,
        #: since QEMU only sees its stream cut
        self.error: OSError | None = None
        self.hash = hashlib.sha256()
        self.stream_bytes = 0
        blob = json.dumps(config, sort_keys=True).encode()
        self._write(MAGIC + _HEAD.pack(VERSION, len(blob)) + blob)

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.hash.update(data)

    def stream(self, data: bytes) -> None:
        self.stream_bytes += len(data)
        try:
            self._write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def commit(self) -> None:
        try:
            self.file.write(TRAILER + self.hash.digest())
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        except OSError as exc:
            self.error = self.error or exc
            raise
        os.replace(self.tmp, self.path)

    def failure(self, exc: BaseException) -> str:
        """Why the save failed, in words a user can act on: the file's own error
        (``No space left on device writing /path``) before what QEMU saw of it."""
        cause = self.error or (exc if isinstance(exc, OSError) else None)
        if cause is not None:
            return f"{cause.strerror or cause} writing {self.path}"
        return str(exc) or type(exc).__name__

    def abort(self) -> None:
        try:
            self.file.close()  # flushing what is buffered may fail again (disk full)
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def verify(path: str) -> SaveImage:
    """Check a save file end to end; return where its QEMU stream is."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as exc:
        raise SaveFileError(f"xm restore: Unable to read file {path}: {exc.strerror}") from None
    with f:
        head = f.read(len(MAGIC) + _HEAD.size)
        if len(head) < len(MAGIC) and MAGIC.startswith(head) and head:
            raise SaveFileError(f"save file {path} is truncated")
        if not head.startswith(MAGIC):
            found = head[: len(MAGIC)]
            raise SaveFileError(f"not a valid guest state file: found {found!r}")
        if len(head) < len(MAGIC) + _HEAD.size:
            raise SaveFileError(f"save file {path} is truncated")
        version, length = _HEAD.unpack(head[len(MAGIC):])
        if version != VERSION:
            raise SaveFileError(f"save file {path} has format version {version}; "
                                f"this xend reads version {VERSION}")
        stream_offset = len(head) + length
        if size < stream_offset + TRAILER_SIZE:
            raise SaveFileError(f"save file {path} is truncated")
        digest = hashlib.sha256(head)
        blob = f.read(length)
        digest.update(blob)
        remaining = size - TRAILER_SIZE - stream_offset
        while remaining:
            chunk = f.read(min(remaining, 4 * 1024 * 1024))
            if not chunk:
                raise SaveFileError(f"save file {path} is truncated")
            digest.update(chunk)
            remaining -= len(chunk)
        trailer = f.read(TRAILER_SIZE)
        if not trailer.startswith(TRAILER):
            raise SaveFileError(f"save file {path} is truncated or corrupted (no trailer)")
        if trailer[len(TRAILER):] != digest.digest():
            raise SaveFileError(f"save file {path} is corrupted (checksum mismatch)")
        try:
            config = json.loads(blob)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            raise SaveFileError("not a valid guest state file: config parse") from None
    return SaveImage(path, config, stream_offset, size - TRAILER_SIZE - stream_offset)
