"""dom0.client.wire: xm's fast JSON must read and write exactly what the json
module does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from dom0.client import wire

VALUES: list[Any] = [
    None, True, False, 0, -1, 7, 10**30, -(10**30), 0.0, -0.0, 1.5, -2.25e-12, 1e300,
    "", "plain", "é ü ñ 中文 🙂", "quote \" backslash \\ slash /", "\n\r\t\b\f\x00\x1f\x7f",
    "\u2028\u2029", "\ud800 lone surrogate", [], {}, [1, [2, [3, [4, []]]]],
    {"a": {"b": {"c": [None, True, False]}}},
    {"domains": [{"name": "Domain-0", "domid": 0, "memory": 1024, "cpu_time": 1234.5,
                  "config": None, "vcpus": [{"number": 0, "affinity": [0, 1]}]},
                 {"name": "gäst", "domid": None, "state": "", "tags": ["x", "y"]}]},
    {"unicode key é": "v", "": "", "nested": {"": []}},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_equals_json_dumps(value: Any) -> None:
    assert wire.dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", VALUES)
def test_round_trip(value: Any) -> None:
    assert wire.loads(wire.dumps(value)) == value
    assert wire.loads(json.dumps(value)) == json.loads(json.dumps(value))


def test_dumps_coerces_like_json() -> None:
    value = {1: (1, 2), 2.5: "x", False: None, None: [()]}
    assert wire.dumps(value) == json.dumps(value)
    assert wire.dumps(float("inf")) == "Infinity" == json.dumps(float("inf"))
    assert wire.dumps(float("-inf")) == "-Infinity"
    assert wire.dumps(float("nan")) == "NaN"


def test_dumps_is_ascii_and_escapes() -> None:
    out = wire.dumps({"k": "é\n\"🙂"})
    assert out == '{"k": "\\u00e9\\n\\"\\ud83d\\ude42"}'
    assert out.isascii()


def test_dumps_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        wire.dumps({"a": object()})
    with pytest.raises(TypeError):
        wire.dumps({object(): 1})
    with pytest.raises(TypeError):
        wire.dumps({1, 2})


TEXTS = [
    '{"a": [1, 2.5, -3e10, true, false, null, "\\u00e9\\n\\t\\"\\\\\\/"]}',
    ' \t\r\n[1, {"b": {}}] \n', '"x"', "0", "-0", "-0.0", "1E+2", "1e-2", "123456789012345678901",
    '"\\ud83d\\ude42"', '"\\ud800"', '"é"', '{"a": 1, "a": 2}', "[[[[[]]]]]", "{}", "[]",
    '{"k":{"k":{"k":"v"}}}', "1e400", "-Infinity", "Infinity",
]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_equals_json_loads(text: str) -> None:
    got, want = wire.loads(text), json.loads(text)
    assert got == want and type(got) is type(want)


def test_loads_nan() -> None:
    assert math.isnan(wire.loads("NaN"))
    assert math.isnan(wire.loads('[NaN]')[0])


@pytest.mark.parametrize("text", [
    "[1] x", '{"a":1}{}', "1 2", "null,", "[]]", '"a""b"', "true false", "{} // comment",
])
def test_loads_rejects_trailing_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        wire.loads(text)


@pytest.mark.parametrize("text", [
    "", "   ", "[1,]", '{"a": }', '{"a":1,}', "tru", "nul", "[01]", '"\x01"', "'x'",
    "{a: 1}", "[", '{"a"', '"unterminated', "+1", ".5", "0x10", '"\\x41"', "[1 2]", "}",
    '{"a" 1}', "undefined",
])
def test_loads_rejects_invalid_json(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)  # the test input really is invalid...
    with pytest.raises(ValueError):
        wire.loads(text)  # ...and wire agrees


# JSON (and json.loads) allows only space, \t, \n and \r around a value; other Unicode
# whitespace must be refused (wire.loads once accepted it).
@pytest.mark.parametrize("text", ["[1]\x0c", "[1]\x0b", "\xa0[1]", "[1]\u2028", "\u3000[1]"])
def test_loads_rejects_non_json_whitespace(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        wire.loads(text)
