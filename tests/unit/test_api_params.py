"""dom0.api.params: every route's declared parameter types are enforced before its
handler runs; a wrong type is a 400 naming the parameter, never a 500 (issue 9: an
integer ``file`` must not reach ``open()`` as a file descriptor)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fake_services import FakeDomains, services
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dom0.api import params
from dom0.api.routes import ROUTES
from dom0.api.server import ApiServer
from dom0.errors import XendError

PARAMS = {"dom": "string", "port": "integer", "live": "boolean", "options": "object",
          "names": "array"}


def check(args: dict[str, Any], required: tuple[str, ...] = ("dom",)) -> dict[str, Any]:
    return params.check("domain.test", PARAMS, required, args)


def test_well_typed_arguments_pass() -> None:
    args = {"dom": "vm1", "port": 8002, "live": True, "options": {"a": "b"}, "names": ["x"]}
    assert check(args) == args


def test_null_optional_means_absent() -> None:
    assert check({"dom": "vm1", "port": None, "live": None}) == {"dom": "vm1"}


@pytest.mark.parametrize("name, value, expected, got", [
    ("dom", 7, "a string", "integer"),
    ("dom", ["vm1"], "a string", "array"),
    ("port", "8002", "an integer", "string"),
    ("port", True, "an integer", "boolean"),  # Python's bool is an int: not here
    ("port", 8002.0, "an integer", "number"),
    ("live", 1, "a boolean", "integer"),
    ("live", "yes", "a boolean", "string"),
    ("options", "a=b", "an object", "string"),
    ("options", [], "an object", "array"),
    ("names", {"x": 1}, "an array", "object"),
    ("names", "vm1", "an array", "string"),
])
def test_wrong_type_names_parameter_and_types(name: str, value: Any, expected: str,
                                              got: str) -> None:
    args = {"dom": "vm1", name: value}
    with pytest.raises(XendError) as info:
        check(args)
    kind = PARAMS[name]
    assert str(info.value) == f"domain.test: parameter {name} must be {expected}, not {got}"
    assert info.value.data == {"route": "domain.test", "param": name, "expected": kind}


def test_missing_and_null_required() -> None:
    for args in ({}, {"dom": None}):
        with pytest.raises(XendError, match="^domain.test: missing argument dom$"):
            check(args)


def test_unknown_parameter() -> None:
    with pytest.raises(XendError, match="^domain.test: unknown parameter fd, zz$"):
        check({"dom": "vm1", "zz": 1, "fd": 3})


def test_nul_in_a_string_is_refused() -> None:
    with pytest.raises(XendError, match="must not contain a NUL"):
        check({"dom": "vm\0"})


# ---- through the real handler table --------------------------------------------------


def dispatch(name: str, args: Any, domains: FakeDomains | None = None) -> tuple[int, Any]:
    server = ApiServer(services(domains), "/nonexistent/socket")
    return asyncio.run(server.dispatch(name, json.dumps(args).encode()))


def test_integer_file_never_reaches_the_handler() -> None:
    domains = FakeDomains()
    status, body = dispatch("domain.save", {"dom": "vm1", "file": 1}, domains)
    assert status == 400
    assert body["error"]["message"] == \
        "domain.save: parameter file must be a string, not integer"
    assert domains.calls == []


def test_handler_receives_checked_values() -> None:
    domains = FakeDomains()
    assert dispatch("domain.network_detach", {"dom": "vm1", "devid": 2, "force": None},
                    domains)[0] == 200
    assert domains.calls == [("network_detach", ("vm1", 2, False))]


def test_migrate_defaults_from_relocation_settings() -> None:
    domains = FakeDomains()
    assert dispatch("domain.migrate", {"dom": "vm1", "host": "h", "port": None, "ssl": None},
                    domains) == (200, {"result": "job1"})
    assert dispatch("domain.migrate", {"dom": "vm1", "host": "h", "ssl": True},
                    domains)[0] == 200
    assert [c[1] for c in domains.calls] == [("vm1", "h", 8002, False, False),
                                             ("vm1", "h", 8003, False, True)]


def test_network_attach_option_values_are_strings() -> None:
    status, body = dispatch("domain.network_attach", {"dom": "vm1", "options": {"mac": 5}})
    assert status == 400 and "option mac must be a string" in body["error"]["message"]


@pytest.mark.parametrize("config", [
    {"name": "vm2", "memory": "64"},
    {"name": "vm2", "disks": ["phy:sda1,hda1,w"]},
    {"name": "vm2", "vifs": 3},
    {"name": "vm2", "vcpus": [1]},
    {"name": ""},
])
@pytest.mark.parametrize("route", ["domain.create", "domain.new"])
def test_misshapen_config_is_a_config_error(route: str, config: dict[str, Any]) -> None:
    domains = FakeDomains()
    status, body = dispatch(route, {"config": config}, domains)
    assert status == 400, body
    assert body["error"]["class"] == "ConfigError"
    assert domains.calls == []


def test_body_must_be_an_object() -> None:
    assert dispatch("domain.list", [1])[0] == 400
    assert dispatch("domain.list", "x")[0] == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(ROUTES)))
    route = ROUTES[name]
    args = {p: draw(JSON) for p in route.params if draw(st.booleans())}
    # often a well-formed value for some, so handlers run, not just the checker
    for p in route.params:
        if draw(st.booleans()):
            args[p] = draw(st.sampled_from({
                "string": ["vm1", "1", "Domain-0", "0", "r", "poweroff", "/tmp/x"],
                "integer": [0, 1, 8002, -1],
                "boolean": [True, False],
                "object": [{}, {"name": "vm2", "memory": 64}, {"bridge": "br0"}],
                "array": [[], ["vm1"], ["0", "vm1"]],
            }[route.params[p]]))
    if draw(st.booleans()):
        args[draw(st.text(min_size=1, max_size=5))] = draw(JSON)
    return name, args


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_any_json_value_gives_200_or_4xx(call: tuple[str, dict[str, Any]]) -> None:
    status, body = dispatch(*call)
    assert status == 200 or 400 <= status < 500, (call, body)
    if status != 200:
        assert set(body["error"]) >= {"class", "message"}
