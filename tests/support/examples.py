"""The ready-made workflows of ``examples/`` for the example tests: reading a file, creating
it (children first) through the real API with ``examples/load.py``, and the ``world`` fixture
(an owner, a workspace and the owner's auth headers)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import headers_for, make_user, make_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKFLOWS = "/api/v1/workflows"


@pytest.fixture
def world():
    owner = make_user()
    workspace = make_workspace(owner)
    return {"owner": owner, "workspace_uuid": workspace.uuid, "headers": headers_for(owner)}


def load(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def _import_loader():
    spec = importlib.util.spec_from_file_location("athena_examples_load", EXAMPLES / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loader = _import_loader()


def create(client, world, example: dict[str, Any], variables: dict[str, Any] | None = None,
           child_variables: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Create the example's children first, then the example itself with its ``$child:<key>``
    sub_workflow references replaced by the children's uuids (``examples/load.py``); its data."""
    def post(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(WORKFLOWS, json=body, headers=world["headers"])
        assert response.status_code == 201, (body["name"], response.json)
        return response.json["data"]

    overrides = {"": variables or {}, **(child_variables or {})}
    return loader.create_all(example, world["workspace_uuid"], post, overrides)[-1]
