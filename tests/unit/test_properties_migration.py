"""Properties of the readers of what other hosts and old files send (issue 9 item
12): the save-file reader (``verify``: random, truncated and bit-flipped files, and
well-formed files carrying any config) raises only SaveFileError, and what it
accepts goes through the config's type check; the relocation handshake's message
reader (``wire.receive``) raises only MigrationError.  Deeply nested JSON
(a RecursionError, not a ValueError, from json.loads) was found this way in both."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from fuzzing import budget, target
from hypothesis import given
from hypothesis import strategies as st

from dom0.errors import ConfigError
from dom0.migration import savefile, wire
from dom0.model.config import DomainConfig


def well_formed(config_blob: bytes, stream: bytes, version: int = savefile.VERSION) -> bytes:
    """A save file as the Writer lays it out, with any config bytes and stream."""
    body = savefile.MAGIC + struct.pack(">II", version, len(config_blob)) + config_blob + stream
    return body + savefile.TRAILER + hashlib.sha256(body).digest()


GOOD = well_formed(json.dumps(DomainConfig(name="vm", kernel="/k").to_dict()).encode(),
                   b"QEVM" + bytes(64))
JSON: Any = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                         | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
CONFIGS = st.one_of(
    st.binary(max_size=64),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["name", "memory", "vcpus", "cpus", "disks", "vifs",
                                     "other", "kernel"]), JSON, max_size=4).map(
        lambda d: json.dumps(d).encode()))


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A good file cut short, with bytes flipped, or with bytes spliced in."""
    data = bytearray(GOOD)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=16))
    return bytes(data)


FILES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=60).map(lambda b: savefile.MAGIC + b),
    damaged(),
    st.builds(well_formed, CONFIGS, st.binary(max_size=32)),
    st.builds(well_formed, CONFIGS, st.just(b""), st.integers(0, 2**32 - 1)),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "vm.save")


@budget(400)
@given(data=FILES)
def test_save_file_reader(scratch: str, data: bytes) -> None:
    with target("save-file reader (verify)"):
        with open(scratch, "wb") as f:
            f.write(data)
        try:
            image = savefile.verify(scratch)
        except savefile.SaveFileError:
            return
        assert image.stream_offset + image.stream_length + savefile.TRAILER_SIZE == len(data)
        try:  # what restore does with it next
            DomainConfig.from_dict(image.config)
        except ConfigError:
            pass


NESTED_CONFIG = well_formed(b"[" * 100000 + b"]" * 100000, b"")


def test_save_file_with_deeply_nested_config(scratch: str) -> None:
    with open(scratch, "wb") as f:
        f.write(NESTED_CONFIG)
    with pytest.raises(savefile.SaveFileError):
        savefile.verify(scratch)


# ---- the relocation handshake's reader ----------------------------------------------------

LOOP = asyncio.new_event_loop()


def receive(data: bytes) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        reader = asyncio.StreamReader()  # the default limit, as asyncio.start_server's
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.receive(reader, timeout=5)
    return LOOP.run_until_complete(run())


MESSAGES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.dictionaries(st.sampled_from(["op", "status", "message", "config", "live", "rate",
                                     "domid", "postcopy", "version"]), JSON, max_size=4)
    .map(lambda d: json.dumps(d).encode() + b"\n"),
    st.builds(lambda n: b"x" * n + b"\n", st.integers(60000, 70000)),
)


@budget(400)
@given(MESSAGES)
def test_relocation_message_reader(data: bytes) -> None:
    with target("relocation handshake (wire.receive)"):
        try:
            message = receive(data)
        except wire.MigrationError:
            return
        assert isinstance(message, dict)


def test_relocation_message_deeply_nested() -> None:
    with pytest.raises(wire.MigrationError):
        receive(b"[" * 30000 + b"]" * 30000 + b"\n")
