"""JSON for xm's fast path.  ``import json`` drags in ``re`` and ``enum`` (about
8 ms of every ``xm list``); the C scanner and encoder behind it need neither.
Falls back to the json module if the C accelerator is missing."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - every CPython we support has it
    _json = None  # type: ignore[assignment]


_JSON_SPACE = " \t\n\r"  # the only whitespace JSON allows


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, Any] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name)


def loads(text: str) -> Any:
    if _json is None:
        import json

        return json.loads(text)
    scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
    i = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = scanner(text, i)
    except StopIteration:
        raise ValueError("invalid JSON") from None
    if text[end:].strip(_JSON_SPACE):
        raise ValueError("extra data after JSON value")
    return value


def dumps(value: Any) -> str:
    if _json is None:
        import json

        return json.dumps(value)
    encoder = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)
    return "".join(encoder(value, 0))


def _default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
