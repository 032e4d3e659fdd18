"""dom0.errors and dom0.client: errors crossing the API keep their class, and
the client's reply parsing."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from dom0 import errors
from dom0.client import DEFAULT_SOCKET, XendClient, server_path
from dom0.errors import (
    BackendError,
    ConfigError,
    DeviceError,
    InvalidDomain,
    OptionError,
    ProtocolError,
    UsageError,
    VmError,
    XendError,
    XendNotRunning,
    from_wire,
)

# ---- errors -------------------------------------------------------------------------


def test_invalid_domain() -> None:
    exc = InvalidDomain("x")
    assert str(exc) == "Domain 'x' does not exist."
    assert exc.exit_code == 3
    assert exc.show_usage is False
    assert exc.data == {"domain": "x"}


def test_invalid_domain_wire_round_trip() -> None:
    wire = json.loads(json.dumps(InvalidDomain("x").to_wire()))
    assert wire == {"class": "InvalidDomain", "message": "Domain 'x' does not exist.",
                    "data": {"domain": "x"}}
    back = from_wire(wire)
    assert type(back) is InvalidDomain
    assert back.exit_code == 3
    assert str(back) == "Domain 'x' does not exist."


@pytest.mark.parametrize("cls", [XendError, VmError, ConfigError, DeviceError, BackendError,
                                 OptionError, UsageError])
def test_wire_round_trip_keeps_class_message_and_data(cls: type[XendError]) -> None:
    exc = cls("something failed", status=2, argv=["qemu", "-S"])
    back = from_wire(json.loads(json.dumps(exc.to_wire())))
    assert type(back) is cls
    assert str(back) == "something failed"
    assert back.data == {"status": 2, "argv": ["qemu", "-S"]}
    assert back.exit_code == exc.exit_code


def test_unknown_wire_class_becomes_xend_error() -> None:
    back = from_wire({"class": "SomethingNew", "message": "m"})
    assert type(back) is XendError
    assert str(back) == "m"
    assert back.data == {}


def test_from_wire_defaults() -> None:
    back = from_wire({})
    assert type(back) is XendError and str(back) == ""


def test_invalid_domain_without_data_uses_message() -> None:
    assert str(from_wire({"class": "InvalidDomain", "message": "vm9"})) == \
        "Domain 'vm9' does not exist."


def test_hierarchy_and_defaults() -> None:
    for cls in (VmError, ConfigError, DeviceError, BackendError, OptionError, UsageError,
                XendNotRunning, ProtocolError, InvalidDomain, errors.ConfigFileError):
        assert issubclass(cls, XendError)
    assert issubclass(ConfigError, VmError)
    assert XendError("x").exit_code == 1
    assert XendError("x").show_usage is True
    assert XendNotRunning("x").show_usage is False
    assert errors.ConfigFileError("x").show_usage is False


# ---- XendClient._parse ----------------------------------------------------------------


def reply(body: object, status: str = "200 OK") -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def test_parse_good_reply() -> None:
    assert XendClient._parse(reply({"result": [{"name": "Domain-0", "domid": 0}]})) == \
        [{"name": "Domain-0", "domid": 0}]
    assert XendClient._parse(reply({"result": None})) is None
    assert XendClient._parse(reply({})) is None


def test_parse_error_reply_raises_the_named_class() -> None:
    raw = reply({"error": InvalidDomain("ghost").to_wire()}, "404 Not Found")
    with pytest.raises(InvalidDomain) as info:
        XendClient._parse(raw)
    assert info.value.exit_code == 3
    assert str(info.value) == "Domain 'ghost' does not exist."


def test_parse_vm_error_reply() -> None:
    raw = reply({"error": {"class": "VmError", "message": "Domain is not running",
                           "data": {"state": "halted"}}}, "500 Internal Server Error")
    with pytest.raises(VmError, match="^Domain is not running$") as info:
        XendClient._parse(raw)
    assert info.value.data == {"state": "halted"}


@pytest.mark.parametrize("raw", [b"", b"garbage", b"HTTP/1.1 200 OK\r\n", b"200 OK\r\n\r\n{}",
                                 b"SSH-2.0-OpenSSH\r\n\r\n"])
def test_parse_garbage_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        XendClient._parse(raw)
    assert str(info.value) == "Xend has probably crashed!  Invalid or missing HTTP status code."


def test_parse_non_json_body_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="Xend has probably crashed!"):
        XendClient._parse(b"HTTP/1.1 200 OK\r\n\r\n<html>oops</html>")


# ---- server path and a real round trip over a Unix socket ------------------------------


def test_server_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XM_SERVER", raising=False)
    assert server_path() == DEFAULT_SOCKET == "/var/run/xend/xmlrpc.sock"
    monkeypatch.setenv("XM_SERVER", "/tmp/x.sock")
    assert server_path() == "/tmp/x.sock"
    monkeypatch.setenv("XM_SERVER", "httpu:///tmp/y.sock")
    assert server_path() == "/tmp/y.sock"
    assert XendClient().path == "/tmp/y.sock"
    assert XendClient("/explicit").path == "/explicit"


def test_call_not_running(tmp_path: Path) -> None:
    with pytest.raises(XendNotRunning) as info:
        XendClient(str(tmp_path / "none.sock")).call("domain.list")
    assert str(info.value) == \
        "Unable to connect to xend: No such file or directory. Is xend running?"


def test_call_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(4096)
            received.append(data[: len(head) + 4] + body)
            conn.sendall(reply({"result": {"echo": json.loads(body)}}))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = XendClient(path, timeout=5).call("domain.info", dom="vm1")
    finally:
        thread.join(5)
        server.close()
    assert result == {"echo": {"dom": "vm1"}}
    assert received[0].startswith(b"POST /api/domain.info HTTP/1.1\r\n")
