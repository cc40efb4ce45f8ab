"""Value checks of answers against the seeded rows (the types are checked by tests/contract/shapes.py)."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from athena.timeutil import iso
from tests.contract.scene import EXECUTION_TIME_MS, TERMINAL, Scene, SeededExecution
from tests.contract.shapes import COUNTERS, assert_execution, assert_page

LIST_PATH = "/api/v1/workflow-executions"


def assert_seeded(item: dict, row: SeededExecution, scene: Scene) -> None:
    """``item`` (an execution in an answer) says what was seeded for ``row``."""
    parent = scene.row(row.parent).uuid if row.parent else None
    retry_of = scene.row(row.retry_of).uuid if row.retry_of else None
    retried_by = next((e.uuid for e in scene.executions if e.retry_of == row.key), None)
    expected = {
        "id": row.id, "uuid": row.uuid, "status": row.status, "mode": row.mode,
        "is_finished": row.status in TERMINAL, "retry_of": retry_of, "retry_success_id": retried_by,
        "created_at": iso(row.created_at), "started_at": None if row.status == "pending" else iso(row.created_at),
        "stopped_at": iso(row.created_at) if row.status in TERMINAL else None, "wait_till": None,
        "deleted_at": None, "workflow_uuid": scene.workflows[row.workflow]["uuid"],
        "workspace_uuid": scene.workspaces[row.workspace]["uuid"], "parent_execution_uuid": parent,
        "input": row.input, "output": row.output, "error": row.error,
        "requires_human_review": row.requires_human_review, "has_command_room_task": row.has_command_room_task,
    }
    actual = {key: item.get(key, "<missing>") for key in expected}
    assert actual == expected, (row.key, {k: (actual[k], v) for k, v in expected.items() if actual[k] != v})


def assert_rows(body: dict, scene: Scene, expected_keys: list[str], *, relations: tuple[str, ...] = (),
                counts: bool = False) -> None:
    """A list answer: the documented envelope, exactly ``expected_keys`` in that order, each
    execution typed field by field and carrying its seeded values."""
    assert_page(body)
    assert scene.keys(body["data"]) == expected_keys, (scene.keys(body["data"]), expected_keys)
    for index, item in enumerate(body["data"]):
        row = scene.row(expected_keys[index])
        assert_execution(item, f"data[{index}]", relations=relations, counts=counts)
        assert_seeded(item, row, scene)
        if counts:
            assert item["workflow_approvals_count"] == len(row.approvals)
            assert item["pending_workflow_approvals_count"] == row.approvals.count("pending")
        if "workflow" in relations:
            assert_workflow_values(item["workflow"], scene, row.workflow)
        if "workflow_execution_data" in relations:
            assert_data_values(item["workflow_execution_data"], scene, row)


def assert_meta(body: dict, base_url: str, *, page: int, per_page: int, total: int) -> None:
    """meta and links of a page, as documented (Laravel's paginator: from/to null on an empty page)."""
    last_page = max(1, -(-total // per_page))
    count = max(0, min(per_page, total - (page - 1) * per_page))
    assert body["meta"] == {
        "current_page": page, "from": (page - 1) * per_page + 1 if count else None, "last_page": last_page,
        "per_page": per_page, "to": (page - 1) * per_page + count if count else None, "total": total,
        "path": base_url + LIST_PATH,
    }
    links = body["links"]
    expected_pages = {"first": 1, "last": last_page, "prev": page - 1 if page > 1 else None,
                      "next": page + 1 if page < last_page else None}
    for name, expected in expected_pages.items():
        if expected is None:
            assert links[name] is None, (name, links[name])
            continue
        parts = urlsplit(links[name])
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == base_url + LIST_PATH, links[name]
        assert parse_qs(parts.query, keep_blank_values=True)["page"] == [str(expected)], (name, links[name])


def workflow_counters(scene: Scene, workflow: str) -> dict[str, int]:
    """The counters as a partition of the workflow's live executions (issue 12, item 2)."""
    live = [e.status for e in scene.executions if e.workflow == workflow and not e.deleted]
    return {"executions_count": len(live),
            "executions_in_progress_count": sum(s in ("pending", "running", "waiting") for s in live),
            "executions_for_review_count": live.count("paused"),
            "executions_completed_count": live.count("completed"),
            "executions_failed_count": live.count("failed"),
            "executions_cancelled_count": live.count("cancelled")}


def assert_workflow_values(workflow: dict, scene: Scene, key: str) -> None:
    seeded = scene.workflows[key]
    expected = {
        "id": seeded["id"], "uuid": seeded["uuid"], "user_id": seeded["user_id"],
        "workspace_id": seeded["workspace_id"], "template_id": None, "name": seeded["name"],
        "description": seeded["description"], "profile_photo_url": None, "profile_photo_config": None,
        "visibility": seeded["visibility"], "is_active": seeded["is_active"], "is_owner": True, "is_favorite": False,
        "trigger_count": seeded["trigger_count"], "allow_cloning": seeded["allow_cloning"],
        "allow_account_usage": seeded["allow_account_usage"],
        "last_used_at": seeded["last_used_at"], "created_at": seeded["created_at"], "deleted_at": None,
        **workflow_counters(scene, key),
    }
    actual = {name: workflow.get(name, "<missing>") for name in expected}
    assert actual == expected, {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    assert workflow["executions_count"] == sum(workflow[name] for name in COUNTERS), "the counters do not add up"


def assert_data_values(data: list, scene: Scene, row: SeededExecution) -> None:
    assert len(data) == 1, data
    item = data[0]
    assert item["uuid"] == row.data_uuid
    assert item["workflow_data"] == row.workflow_data
    metadata = item["metadata"]
    assert metadata["workflow_execution_data_id"] == row.data_id
    assert metadata["running_node"] == row.running_node
    assert metadata["execution_time"] == EXECUTION_TIME_MS  # stored in milliseconds, an int
    assert {k: metadata.get(k) for k in ("processed_count", "error_count", "retry_count")} == {
        "processed_count": 1, "error_count": 0, "retry_count": 0}
    graph = json.loads(item["data"])  # the JSON text of the graph snapshot
    workflow = scene.workflows[row.workflow]
    assert graph["nodes"] == workflow["nodes"] and graph["edges"] == workflow["edges"]
