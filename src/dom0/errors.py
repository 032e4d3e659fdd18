"""The one error hierarchy of dom0.

Every error a user can see derives from :class:`XendError`.  The daemon sends an
error across the API as ``{"class": <name>, "message": <text>, "data": {...}}``;
the client looks the class up here by name and re-raises it, so `xm` maps errors
to output and exit codes in exactly one place (``dom0.cli.main``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any


class XendError(Exception):
    """Root of every error dom0 reports.  ``str(e)`` is the text after ``Error: ``."""

    exit_code = 1
    #: print the command's usage after the message (xm does so for xend faults)
    show_usage = True

    def __init__(self, message: str = "", **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return self.message

    def to_wire(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "message": self.message, "data": self.data}


class InvalidDomain(XendError):
    """The domain named does not exist (xm exit code 3)."""

    exit_code = 3
    show_usage = False

    def __init__(self, domain: str) -> None:
        super().__init__(f"Domain '{domain}' does not exist.", domain=domain)


class VmError(XendError):
    """An operation on a domain failed or is not allowed in its state."""


class ConfigError(VmError):
    """A domain configuration is invalid."""


class DeviceError(VmError):
    """A device could not be attached, detached or configured."""


class BackendError(VmError):
    """QEMU failed: carries its exit status, argv and its own output."""


class SecurityError(VmError):
    """The access control policy (sHype/ACM) refuses, or a policy or label is invalid.
    (A VmError: wherever a domain may be refused, a policy refusal is one, e.g. the
    relocation server sends it back to the migrating host.)"""

    show_usage = False


class OptionError(XendError):
    """Bad command-line options or config-file evaluation (xm side)."""


class ConfigFileError(XendError):
    """A config file could not be evaluated (already formatted like xm did)."""

    show_usage = False


class UsageError(XendError):
    """Wrong number or form of arguments to an xm command."""


class XendNotRunning(XendError):
    """xm cannot reach xend."""

    show_usage = False


class ProtocolError(XendError):
    """xend answered something that is not our protocol."""

    show_usage = False


_WIRE_CLASSES = {
    c.__name__: c
    for c in (XendError, VmError, ConfigError, DeviceError, BackendError, OptionError, UsageError,
              SecurityError, XendNotRunning)
}


def from_wire(payload: dict[str, Any]) -> XendError:
    """Rebuild the error the daemon named; unknown names become a plain XendError."""
    name = payload.get("class", "XendError")
    message = payload.get("message", "")
    data = payload.get("data") or {}
    if name == "InvalidDomain":
        return InvalidDomain(str(data.get("domain", message)))
    cls = _WIRE_CLASSES.get(name, XendError)
    return cls(message, **data)
