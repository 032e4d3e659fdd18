"""Print the OpenAPI description of the xend API: ``python -m dom0.api.openapi_dump``.
The repository keeps its output as docs/openapi.json; a unit test keeps them equal."""

import json

from dom0.api.routes import openapi

if __name__ == "__main__":
    print(json.dumps(openapi(), indent=2, sort_keys=True))
