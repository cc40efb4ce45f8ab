"""The documented resource shapes as small type tables, checked field by field.

A table maps a field to a type spec: ``INT`` (an int, not a bool), ``STR``, ``BOOL``, ``NULL``,
``ISO`` (ISO-8601 UTC ending in ``Z``), ``UUID`` (a canonical UUID string), ``OBJECT``,
``LIST``, ``JSON`` (any JSON value), ``one_of(...)`` (one of these values) or a tuple of specs
(any of them: ``(NULL, ISO)`` is "null or an ISO string"). :func:`problems` lists every
mismatch at once, so a failing test says all that is wrong with a shape."""
from __future__ import annotations

import re
import uuid as uuid_lib
from datetime import datetime
from typing import Any

INT, STR, BOOL, NULL, ISO, UUID, OBJECT, LIST, JSON = ("int", "str", "bool", "null", "iso", "uuid", "object",
                                                       "list", "json")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STATUSES = ("pending", "running", "waiting", "paused", "completed", "failed", "cancelled")


def one_of(*values: Any) -> frozenset:
    return frozenset(values)


def matches(value: Any, spec: Any) -> bool:
    if isinstance(spec, tuple):
        return any(matches(value, alternative) for alternative in spec)
    if isinstance(spec, frozenset):
        return isinstance(value, str) and value in spec
    if spec == INT:
        return type(value) is int
    if spec == STR:
        return isinstance(value, str)
    if spec == BOOL:
        return type(value) is bool
    if spec == NULL:
        return value is None
    if spec == OBJECT:
        return isinstance(value, dict)
    if spec == LIST:
        return isinstance(value, list)
    if spec == JSON:
        return True
    if spec == ISO:
        if not (isinstance(value, str) and ISO_Z.match(value)):
            return False
        try:
            datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            return False
        return True
    if spec == UUID:
        try:
            return isinstance(value, str) and str(uuid_lib.UUID(value)) == value.lower()
        except ValueError:
            return False
    raise AssertionError(f"unknown spec {spec!r}")


def problems(obj: Any, table: dict[str, Any], where: str, *, optional: dict[str, Any] | None = None,
             exact: bool = False, absent: tuple[str, ...] = ()) -> list[str]:
    """Mismatches of ``obj`` against ``table`` (required fields) and ``optional`` (checked when
    present); ``exact``: no other keys; ``absent``: keys that must not be there."""
    if not isinstance(obj, dict):
        return [f"{where}: expected an object, got {type(obj).__name__} {obj!r:.80}"]
    found = []
    for key, spec in table.items():
        if key not in obj:
            found.append(f"{where}.{key}: missing")
        elif not matches(obj[key], spec):
            found.append(f"{where}.{key}: {obj[key]!r:.80} ({type(obj[key]).__name__}) is not {spec!r}")
    for key, spec in (optional or {}).items():
        if key in obj and not matches(obj[key], spec):
            found.append(f"{where}.{key}: {obj[key]!r:.80} ({type(obj[key]).__name__}) is not {spec!r}")
    if exact:
        extra = set(obj) - set(table) - set(optional or {})
        found += [f"{where}.{key}: not documented" for key in sorted(extra)]
    found += [f"{where}.{key}: present but not asked for" for key in absent if key in obj]
    return found


def assert_shape(obj: Any, table: dict[str, Any], where: str, **kwargs: Any) -> None:
    found = problems(obj, table, where, **kwargs)
    assert not found, "\n".join(found)


# -- PaginationMeta / PaginationLinks: exactly the documented keys ---------------------------------
META = {"current_page": INT, "from": (NULL, INT), "last_page": INT, "per_page": INT, "to": (NULL, INT),
        "total": INT, "path": STR}
LINKS = {"first": STR, "last": STR, "prev": (NULL, STR), "next": (NULL, STR)}

# -- WorkflowExecution -------------------------------------------------------------------------------
EXECUTION = {
    "id": INT, "uuid": UUID, "is_finished": BOOL, "mode": STR, "retry_of": (NULL, STR),
    "retry_success_id": (NULL, STR), "started_at": (NULL, ISO), "stopped_at": (NULL, ISO),
    "wait_till": (NULL, ISO), "status": one_of(*STATUSES), "created_at": ISO, "updated_at": ISO,
    "deleted_at": NULL,
}
# What Athena adds to every execution.
EXECUTION_ATHENA = {
    "workflow_uuid": UUID, "workspace_uuid": UUID, "parent_execution_uuid": (NULL, UUID), "input": JSON,
    "output": JSON, "error": (NULL, STR), "requires_human_review": BOOL, "has_command_room_task": BOOL,
}
RELATIONS = ("workflow", "workflow_execution_data")
COUNTS = {"workflow_approvals_count": INT, "pending_workflow_approvals_count": INT}

# -- Workflow (the documented example's fields) plus the two new counters -------------------------
WORKFLOW = {
    "id": INT, "uuid": UUID, "user_id": INT, "workspace_id": INT, "template_id": (NULL, INT), "name": STR,
    "description": (NULL, STR), "profile_photo_url": (NULL, STR), "profile_photo_config": (NULL, OBJECT),
    "visibility": STR, "is_active": BOOL, "is_owner": BOOL, "is_favorite": BOOL, "trigger_count": INT,
    "allow_cloning": BOOL, "allow_account_usage": BOOL, "last_used_at": (NULL, ISO), "created_at": ISO,
    "updated_at": ISO, "deleted_at": NULL, "executions_count": INT, "executions_in_progress_count": INT,
    "executions_for_review_count": INT, "executions_completed_count": INT,
    "executions_failed_count": INT, "executions_cancelled_count": INT,
}
COUNTERS = ("executions_in_progress_count", "executions_for_review_count", "executions_completed_count",
            "executions_failed_count", "executions_cancelled_count")

# -- WorkflowExecutionData -------------------------------------------------------------------------------
EXECUTION_DATA = {"uuid": UUID, "workflow_data": LIST, "metadata": OBJECT, "data": STR, "created_at": ISO,
                  "updated_at": ISO, "deleted_at": NULL}
WORKFLOW_DATA_ENTRY = {"status": STR, "output": JSON, "started_at": (NULL, ISO), "stopped_at": (NULL, ISO)}
METADATA = {"running_node": (NULL, STR), "workflow_execution_data_id": INT, "execution_time": INT}
METADATA_WHEN_PRESENT = {
    "processed_count": INT, "error_count": INT, "retry_count": INT, "loop_index": INT,
    "wait_until": (NULL, ISO), "wait_until_timestamp": INT, "wait_started_at": (NULL, ISO),
    "wait_completed_at": (NULL, ISO),
}


def assert_execution(item: dict, where: str, *, relations: tuple[str, ...] = (), counts: bool = False) -> None:
    """An execution: documented and Athena fields with their types; the relations and counts
    present exactly when asked for."""
    table = {**EXECUTION, **EXECUTION_ATHENA, **(COUNTS if counts else {})}
    found = problems(item, table, where, absent=tuple(r for r in RELATIONS if r not in relations)
                     + (() if counts else tuple(COUNTS)))
    if "workflow" in relations:
        found += problems(item.get("workflow"), WORKFLOW, f"{where}.workflow")
    if "workflow_execution_data" in relations:
        found += data_problems(item.get("workflow_execution_data"), f"{where}.workflow_execution_data")
    assert not found, "\n".join(found)


def data_problems(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: expected a list, got {value!r:.80}"]
    found = []
    for index, row in enumerate(value):
        found += problems(row, EXECUTION_DATA, f"{where}[{index}]")
        if not isinstance(row, dict):
            continue
        for n, entry in enumerate(row.get("workflow_data") or []):
            found += problems(entry, WORKFLOW_DATA_ENTRY, f"{where}[{index}].workflow_data[{n}]")
        found += problems(row.get("metadata"), METADATA, f"{where}[{index}].metadata",
                          optional=METADATA_WHEN_PRESENT)
    return found


def assert_page(body: Any, where: str = "list") -> None:
    """The documented list envelope: exactly data, meta, links; meta and links exactly as documented."""
    assert isinstance(body, dict) and set(body) == {"data", "meta", "links"}, f"{where}: {body!r:.300}"
    assert isinstance(body["data"], list), f"{where}.data: {body['data']!r:.80}"
    found = problems(body["meta"], META, f"{where}.meta", exact=True)
    found += problems(body["links"], LINKS, f"{where}.links", exact=True)
    assert not found, "\n".join(found)
