"""dom0.api.routes: the OpenAPI description, and docs/openapi.json kept equal to it.

After changing a route, regenerate the document with::

    .venv/bin/python -m dom0.api.openapi_dump > docs/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path

from dom0.api.routes import ROUTES, openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

#: the routes xm relies on (dom0.cli.commands)
USED_BY_XM = {
    "domain.list", "domain.info", "domain.create", "domain.new", "domain.delete",
    "domain.start", "domain.destroy", "domain.shutdown", "domain.reset", "domain.pause",
    "domain.unpause", "domain.rename", "domain.sysrq", "domain.dump", "domain.vcpus",
    "node.info", "node.config", "node.dmesg", "node.log", "node.figures", "domain.trigger",
    "node.debug_keys",
}


def test_one_path_per_route() -> None:
    paths = openapi()["paths"]
    assert len(paths) == len(ROUTES)
    assert set(paths) == {f"/api/{name}" for name in ROUTES}
    for name, route in ROUTES.items():
        op = paths[f"/api/{name}"]
        assert list(op) == ["post"]
        assert op["post"]["operationId"] == name
        assert op["post"]["summary"] == route.summary


def test_routes_used_by_xm_exist() -> None:
    assert USED_BY_XM <= set(ROUTES)


def test_request_schemas() -> None:
    paths = openapi()["paths"]
    schema = paths["/api/domain.rename"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema == {"type": "object",
                      "properties": {"dom": {"type": "string"}, "name": {"type": "string"}},
                      "required": ["dom", "name"]}
    schema = paths["/api/domain.list"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema == {"type": "object",
                      "properties": {"state": {"type": "string"}, "names": {"type": "array"}}}


def test_every_required_parameter_is_declared() -> None:
    for route in ROUTES.values():
        assert set(route.required) <= set(route.params), route.name
        assert set(route.params.values()) <= {"string", "integer", "boolean", "object",
                                              "array"}, route.name


def test_error_schema_referenced() -> None:
    doc = openapi()
    assert doc["openapi"].startswith("3.")
    assert "Error" in doc["components"]["schemas"]
    for op in doc["paths"].values():
        assert op["post"]["responses"]["default"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/Error"}


def test_openapi_is_json_serialisable_and_stable() -> None:
    assert json.loads(json.dumps(openapi())) == openapi()


def test_docs_openapi_json_is_up_to_date() -> None:
    with open(DOC) as f:
        assert json.load(f) == openapi()
