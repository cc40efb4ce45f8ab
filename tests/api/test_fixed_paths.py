"""Every {uuid} path parameter matches only a UUID: a fixed path beside /{uuid} never falls through
to the uuid route, so its other methods are a 405 with its own Allow."""
from __future__ import annotations

from tests.factories import headers_for, make_user, make_workflow, make_workspace

FIXED = {
    "/api/v1/workflow-executions/count": {"GET", "HEAD", "OPTIONS"},
    "/api/v1/workflows/generate": {"POST", "OPTIONS"},
}


def _allow(response) -> set[str]:
    return {method.strip() for method in response.headers.get("Allow", "").split(",") if method.strip()}


def test_options_advertises_only_the_fixed_paths_methods(client):
    headers = headers_for(make_user())
    for path, methods in FIXED.items():
        response = client.options(path, headers=headers)
        assert response.status_code == 200, path
        assert _allow(response) == methods, path


def test_other_methods_on_fixed_paths_are_405_with_allow(client):
    headers = headers_for(make_user())
    for path, methods in FIXED.items():
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - methods:
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 405, (method, path, response.json)
            assert response.is_json and response.json["message"], (method, path)
            assert _allow(response) == methods, (method, path)


def test_a_uuid_path_takes_only_uuids(client):
    owner = make_user()
    workflow = make_workflow(make_workspace(owner), owner)
    headers = headers_for(owner)
    assert client.get(f"/api/v1/workflows/{workflow.uuid}", headers=headers).status_code == 200
    # any case: the uuid is handed over in the lower case it is stored in
    assert client.get(f"/api/v1/workflows/{workflow.uuid.upper()}", headers=headers).status_code == 200
    for segment in ("not-a-uuid", workflow.uuid[:-1], f"{workflow.uuid}0", "count"):
        for path in (f"/api/v1/workflows/{segment}", f"/api/v1/workflow-executions/{segment}/stop",
                     f"/api/v1/workspaces/{segment}"):
            response = client.get(path, headers=headers)
            assert response.status_code in (404, 405) and response.is_json, (path, response.status_code)


def test_the_document_types_uuid_parameters(client):
    spec = client.get("/api/v1/openapi.json").json
    checked = 0
    for path, item in spec["paths"].items():
        for parameter in item.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] != "approval_id":  # an approval's id or uuid
                assert parameter["schema"] == {"type": "string", "format": "uuid"}, (path, parameter)
                checked += 1
    assert checked >= 10
