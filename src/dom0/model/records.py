"""A ``dataclass(frozen=True)`` that gives the figures of xm top (an
``__init__`` taking the annotated fields in order, with their class-level defaults;
equality; a repr; no assignment after construction), without importing dataclasses.

Why: importing dataclasses pulls in inspect, re and enum, about 20 ms of every
``xm top`` start, a quarter of one refresh at 50 domains.  Modules using it import
the real ``dataclass`` for mypy (``TYPE_CHECKING``, which mypy takes as true), so the
type checker holds every construction to the same signature the real one would.
Only what the figures use is supported: frozen records, plain (immutable) defaults."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def dataclass(*, frozen: bool) -> Callable[[type], type]:
    if not frozen:
        raise TypeError("records are frozen")
    return record


def record(cls: type) -> type:
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated {key!r}")
            values[key] = value
        for name in names:
            if name not in values:
                if name not in defaults:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                values[name] = defaults[name]
            object.__setattr__(self, name, values[name])

    def __eq__(self: Any, other: Any) -> Any:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    def __repr__(self: Any) -> str:
        return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {cls.__name__} is frozen")

    for fn in (__init__, __eq__, __hash__, __repr__, __setattr__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    return cls
