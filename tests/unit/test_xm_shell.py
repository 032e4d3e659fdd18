"""xm shell (the ``xm> `` prompt, fed through a pipe) and xm serve (xm's request
stream over stdio, so ``DOM0_XEND_COMMAND='ssh host xm serve'`` is a remote xm),
both against a real API server over fake services."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_services import FakeDomains
from test_api_server import Running

from dom0.cli.commands.host import SHELL_BANNER, serve
from dom0.client import XendClient
from dom0.client.stdio import read_message, reframe
from dom0.errors import InvalidDomain, XendNotRunning

SRC = str(Path(__file__).resolve().parents[2] / "src")
XM = [sys.executable, "-m", "dom0.cli.main"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    running = Running(str(tmp_path / "run" / "xend.sock"), FakeDomains())
    yield running
    running.close()


def xm(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*XM, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": SRC, **env})


# ---- the shell ----------------------------------------------------------------------


def test_shell_runs_commands_shows_errors_and_goes_on(server: Running) -> None:
    lines = "info\nfrobnicate\ndomid ghost\n\nxm domname vm1\ntrigger\nquit\nlist\n"
    r = xm(["shell"], {"XM_SERVER": server.path}, lines)
    assert r.returncode == 0
    assert r.stdout.startswith(SHELL_BANNER + "\nxm> ")
    out = r.stdout.split("xm> ")
    assert out[1].startswith("host                   : ")  # info
    assert out[5].strip() == "vm1"  # xm domname vm1, after the empty line's prompt
    assert len(out) == 8  # quit ended the shell: the last command never ran
    assert "Error: Subcommand frobnicate not found!" in r.stderr
    assert "Error: Domain 'ghost' does not exist." in r.stderr
    assert "Error: 'xm trigger' requires between 2 and 3 arguments." in r.stderr


def test_shell_ends_at_eof_and_has_help(server: Running) -> None:
    r = xm(["shell"], {"XM_SERVER": server.path}, "help trigger\n")
    assert r.returncode == 0
    assert "Usage: xm trigger <Domain> <nmi|reset|init|s3resume|power> [<VCPU>]" in r.stdout
    assert r.stdout.endswith("xm> \n")  # EOF: a new line, then the shell exits


def test_shell_takes_no_arguments() -> None:
    r = xm(["shell", "x"], {})
    assert r.returncode == 1 and "'xm shell' requires 0 arguments." in r.stderr


# ---- serve --------------------------------------------------------------------------


def _request(route: str, body: bytes = b"{}") -> bytes:
    return (f"POST /api/{route} HTTP/1.1\r\nHost: xend\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def test_serve_answers_each_request_of_the_stream(server: Running,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XM_SERVER", server.path)
    stdin = io.BytesIO(_request("domain.info", b'{"dom": "vm1"}') + _request("node.dmesg"))
    stdout = io.BytesIO()
    assert serve(stdin, stdout) == 0
    stdout.seek(0)
    first, second = read_message(stdout), read_message(stdout)
    assert first is not None and first.endswith(b'{"result": {"name": "vm1", "domid": 1}}')
    assert second is not None and b"(XEN) hello" in second
    assert read_message(stdout) is None


def test_xm_through_xm_serve(server: Running) -> None:
    """The transport is any stdio pipe: here `xm serve` as a local subprocess (the
    functional test runs `xm list` so against a real xend)."""
    command = " ".join([*XM, "serve"])
    r = xm(["info"], {"DOM0_XEND_COMMAND": command, "XM_SERVER": server.path})
    assert r.returncode == 0, r.stderr
    assert r.stdout == xm(["info"], {"XM_SERVER": server.path}).stdout
    assert r.stdout.startswith("host                   : ")
    r = xm(["domid", "ghost"], {"DOM0_XEND_COMMAND": command, "XM_SERVER": server.path})
    assert r.returncode == 3 and r.stderr == "Error: Domain 'ghost' does not exist.\n"


def test_one_serve_carries_many_calls(server: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.setenv("XM_SERVER", server.path)
    monkeypatch.setenv("DOM0_XEND_COMMAND", " ".join([*XM, "serve"]))
    client = XendClient()
    try:
        assert client.domain_info(dom="vm1")["name"] == "vm1"
        with pytest.raises(InvalidDomain):
            client.domain_info(dom="ghost")
        pid = client._command.proc.pid
        assert client.node_dmesg() == "(XEN) hello\n"
        assert client._command.proc.pid == pid  # the same xm serve answered all three
    finally:
        client._command.close()


def test_serve_without_xend_says_so_remotely(tmp_path: Path) -> None:
    command = " ".join([*XM, "serve"])
    r = xm(["list"], {"DOM0_XEND_COMMAND": command, "XM_SERVER": str(tmp_path / "none")})
    assert r.returncode == 1
    assert r.stderr == ("Error: Unable to connect to xend: No such file or directory. "
                        "Is xend running?\n")


def test_a_command_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOM0_XEND_COMMAND", "/nonexistent/xm serve")
    with pytest.raises(XendNotRunning, match="cannot run"):
        XendClient().node_info()
    monkeypatch.setenv("DOM0_XEND_COMMAND", "true")
    with pytest.raises(XendNotRunning, match="closed the stream"):
        XendClient().node_info()


def test_reframe_makes_the_length_exact() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}"
    framed = reframe(raw)
    assert b"Content-Length: 2\r\n" in framed and b"close" not in framed
    assert read_message(io.BytesIO(framed + b"rest")) == framed
