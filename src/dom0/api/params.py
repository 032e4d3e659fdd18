"""The server's check of a request's arguments against the route's declared
parameter types, before any handler runs.

A wrong type must be the caller's error (400, naming the parameter), never an
exception deep in a handler (a 500) — nor worse, a value that works by accident:
an integer ``file`` would reach ``open()`` as a file descriptor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dom0.errors import XendError

#: declared type -> the Python type json gives for it
_PYTHON = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}

#: how an offending value is named in the message
_JSON_NAME = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
              list: "array", type(None): "null"}


def json_type(value: Any) -> str:
    return _JSON_NAME.get(type(value), type(value).__name__)


def _matches(kind: str, value: Any) -> bool:
    if kind == "integer":
        # JSON has no separate integer type on the wire, but Python's bool is an int:
        # true must not pass for 1
        return type(value) is int
    return isinstance(value, _PYTHON[kind])


def check(route: str, params: Mapping[str, str], required: tuple[str, ...],
          args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a handler may trust, or a XendError for the 400 reply.

    A null optional argument means absent (the client sends every keyword it has),
    so it is dropped here; handlers see only present, well-typed values."""
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise XendError(f"{route}: unknown parameter {', '.join(unknown)}", route=route,
                        param=unknown[0])
    missing = [p for p in required if args.get(p) is None]
    if missing:
        raise XendError(f"{route}: missing argument {', '.join(missing)}", route=route,
                        param=missing[0])
    checked: dict[str, Any] = {}
    for name, value in args.items():
        if value is None:
            continue
        kind = params[name]
        if not _matches(kind, value):
            raise XendError(f"{route}: parameter {name} must be {_article(kind)} {kind}, "
                            f"not {json_type(value)}", route=route, param=name, expected=kind)
        if kind == "string" and "\0" in value:
            # no path, name or key has one; open() would fail with a ValueError
            raise XendError(f"{route}: parameter {name} must not contain a NUL character",
                            route=route, param=name, expected=kind)
        checked[name] = value
    return checked


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"
