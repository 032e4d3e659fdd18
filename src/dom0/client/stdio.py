"""xm's requests through a command's standard input and output, and ``xm serve``'s
side of that stream: ``DOM0_XEND_COMMAND='ssh host xm serve'`` makes xm a remote xm.

The stream is xm's own request stream, unchanged: HTTP/1.1 requests one after the
other on the command's stdin, each answered on its stdout by one response framed by
its Content-Length.  ``xm serve`` (spec §1.2: "proxy between stdio and
/var/run/xend/xmlrpc.sock") forwards each request to xend's root-only socket, one
connection per request as xm itself makes them, and re-frames the reply.

Imported only when a command is configured or ``xm serve`` runs, and subprocess only
by the side that runs a command: xm's start-up path pays for neither."""

from __future__ import annotations

import os

from dom0.client import wire
from dom0.errors import ProtocolError, XendNotRunning

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    import subprocess
    from typing import IO

ENV = "DOM0_XEND_COMMAND"
#: a request's or reply's head may not be longer (a stream that is not ours)
MAX_HEAD = 64 * 1024
#: nor its body (save files and configs travel by path, so replies are small)
MAX_BODY = 256 * 1024 * 1024


def read_message(stream: IO[bytes]) -> bytes | None:
    """One HTTP message (head and Content-Length body) from *stream*; None at a clean
    end of stream."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline(MAX_HEAD + 1)
        if not line:
            if head:
                raise ProtocolError("the stream ended inside a message")
            return None
        head += line
        if len(head) > MAX_HEAD:
            raise ProtocolError("a message head longer than 64 KiB")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    if not 0 <= length <= MAX_BODY:
        raise ProtocolError(f"a message body of {length} bytes")
    body = stream.read(length)
    if len(body) != length:
        raise ProtocolError("the stream ended inside a message")
    return head + body


def reframe(raw: bytes) -> bytes:
    """A reply read up to the socket's close, with its Content-Length made exact so
    it can share a stream with the next one."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ProtocolError("Xend has probably crashed!  Invalid or missing HTTP status code.")
    lines = [ln for ln in head.split(b"\r\n")
             if ln.split(b":")[0].strip().lower() not in (b"content-length", b"connection",
                                                          b"transfer-encoding")]
    lines += [b"Content-Length: %d" % len(body), b"Connection: keep-alive"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def error_reply(exc: Exception) -> bytes:
    """A reply carrying an error the remote xm prints as the local one would."""
    cls = type(exc).__name__ if isinstance(exc, XendNotRunning) else "XendError"
    body = wire.dumps({"error": {"class": cls, "message": str(exc), "data": {}}}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class CommandTransport:
    """Requests through one long-lived command (``ssh host xm serve``)."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def exchange(self, request: bytes) -> bytes:
        import shlex
        import subprocess  # here: `xm serve`, the other end, never needs it

        if self.proc is None or self.proc.poll() is not None:
            try:
                self.proc = subprocess.Popen(shlex.split(self.command), stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE)
            except (OSError, ValueError) as exc:
                raise XendNotRunning(
                    f"Unable to connect to xend: cannot run {self.command!r}: {exc}.") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
            reply = read_message(self.proc.stdout)
        except BrokenPipeError:
            reply = None
        if reply is None:
            raise XendNotRunning(
                f"Unable to connect to xend: {self.command!r} closed the stream. "
                "Is xend running?")
        return reply

    def close(self) -> None:
        import subprocess

        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def configured_command() -> str | None:
    return os.environ.get(ENV) or None
