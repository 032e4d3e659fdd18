"""dom0.client.routes: the typed client mirrors the API's route table exactly, so
a route and its client method cannot drift apart (names, parameters, types,
which are required)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

from dom0.api.routes import ROUTES
from dom0.client import XendClient
from dom0.client.routes import XendApi

#: the declared JSON type -> the annotation of the client's keyword
ANNOTATION = {"string": "str", "integer": "int", "boolean": "bool", "object": "dict[str, Any]",
              "array": "list[str]"}


def method_name(route: str) -> str:
    return route.replace(".", "_")


def test_one_method_per_route_and_no_other() -> None:
    methods = {n for n, v in vars(XendApi).items() if callable(v) and not n.startswith("_")}
    assert methods - {"call"} == {method_name(r) for r in ROUTES}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_method_parameters_match_the_route(route: str) -> None:
    declared = ROUTES[route]
    sig = inspect.signature(getattr(XendApi, method_name(route)))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params)
    assert {p.name for p in params} == set(declared.params)
    for p in params:
        kind = ANNOTATION[declared.params[p.name]]
        if p.name in declared.required:
            assert p.default is p.empty, p.name
            assert p.annotation == kind, p.name
        else:
            assert p.default is None, p.name
            assert p.annotation == f"{kind} | None", p.name


class Recorder(XendApi):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def call(self, _route: str, /, **args: Any) -> Any:
        self.sent.append((_route, args))


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_method_sends_its_route_with_every_parameter(route: str) -> None:
    recorder = Recorder()
    declared = ROUTES[route]
    args = {p: f"<{p}>" for p in declared.params}
    getattr(recorder, method_name(route))(**args)
    assert recorder.sent == [(route, args)]


def test_client_is_a_typed_api() -> None:
    assert issubclass(XendClient, XendApi)


def test_client_imports_nothing_heavy() -> None:
    # xm's start: the client must not pull in typing, json, socket, re or enum
    code = ("import sys\nbefore = set(sys.modules)\nimport dom0.client\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    for heavy in ("typing", "json", "socket", "re", "enum", "aiohttp", "dom0.api"):
        assert heavy not in out, heavy
