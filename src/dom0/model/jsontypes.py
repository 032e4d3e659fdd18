"""Checking a JSON value against a dataclass field's declared Python type.

A config arrives as JSON at every edge that is not a config file: the API
(``create``/``new``), the store, save files and incoming migrations all go through
``DomainConfig.from_dict``.  JSON's types are not Python's: ``true`` is an int to
Python, ``3`` is not a string, and a wrong type caught late is a TypeError deep in
the backend (or worse, an integer ``cpus`` that boots).  So each value is checked
against the type the dataclass declares, the one place types are written down: no
second list of expected types to keep in step.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from dom0.errors import ConfigError

#: how a JSON value's type is named in errors (the JSON names a client sent)
_JSON_NAMES: dict[type, str] = {bool: "boolean", int: "integer", float: "number",
                                str: "string", list: "array", dict: "object",
                                type(None): "null"}


def json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def type_name(tp: Any) -> str:
    """A declared type in JSON words: ``string or array of string or null``."""
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if isinstance(tp, types.UnionType) or origin is typing.Union:
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"array of {type_name(item)}"
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return "object" if not args or args[1] is Any else f"object of {type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "object"
    return _JSON_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def check_json(value: Any, tp: Any, where: str) -> None:
    """Raise ConfigError naming *where* and the expected type unless *value* (as JSON
    decoding made it) fits *tp*.  bool is not an int here: JSON ``true`` is not 1."""
    if not _fits(value, tp, where):
        raise ConfigError(f"Invalid type for {where}: expected {type_name(tp)}, "
                          f"got {json_name(value)}")


def _fits(value: Any, tp: Any, where: str) -> bool:
    """Whether *value* fits *tp*; a container whose items do not fit raises with the
    item's own place (``disks[0].uname``), which says more than the container."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if isinstance(tp, types.UnionType) or origin is typing.Union:
        others = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is not None and len(others) == 1 and dataclasses.is_dataclass(others[0]):
            return _fits(value, others[0], where)  # an optional part: name its own field
        return any(_fits_quietly(value, a) for a in typing.get_args(tp))
    if origin is list or tp is list:
        if not isinstance(value, list):
            return False
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            check_json(v, item, f"{where}[{i}]")
        return True
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        _, item = typing.get_args(tp) or (str, Any)
        for k, v in value.items():
            if not isinstance(k, str):
                return False
            check_json(v, item, f"{where}.{k}")
        return True
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            return False
        check_fields(value, tp, where + ".")
        return True
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def _fits_quietly(value: Any, tp: Any) -> bool:
    """A union member fits only if all of it does (``str | list[str]`` given ``[1]``
    is simply not a fit; the union's error names the whole union)."""
    try:
        return _fits(value, tp, "")
    except ConfigError:
        return False


def check_fields(data: dict[str, Any], cls: type, prefix: str = "") -> None:
    """Check a JSON object meant for dataclass *cls*: no unknown keys, every required
    field present, every value of its field's type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"Unknown configuration keys: "
                          f"{', '.join(prefix + str(k) for k in sorted(map(str, unknown)))}")
    for name, f in fields.items():
        if name in data:
            check_json(data[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"Missing configuration key: {prefix}{name}")
