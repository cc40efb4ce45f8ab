"""The documented example requests.

``LIST_CURL`` and ``GENERATE_CURL`` are copied verbatim from the reference pages
(../shared/reference/athena-workflow-executions.txt, "Get Workflow Executions", and
athena-generate-workflow.txt, "Generate Workflow"): keep every byte as it is there.

The pages show no curl for "Get Workflow Execution Counts" and "Retrieve a Workflow Execution"
(only their paths and parameters in the overview text): ``COUNT_CURL``, ``COUNT_BY_ORGANIZATION_CURL``
and ``RETRIEVE_CURL`` are written in the same documented form (same options, same headers) from
that text. Everything else here is derived from these strings by :func:`with_query` or
:func:`with_form`, which change one part and keep the rest."""
from __future__ import annotations

import re

# Verbatim: "Get Workflow Executions" -> Request Example -> Shell.
LIST_CURL = """curl --location -g --request GET 'https://localhost/api/v1/workflow-executions?workspace_uuid={{workspace_uuid}}&organization_multiplai_id=org-123&user_multiplai_id=user-123&workflow_uuid={{workflow_uuid}}&workflow_uuids=uuid1&workflow_uuids=uuid2&search=&page=&sort_by=&sort_direction=&date_from=2025-01-01&date_to=2025-01-31&with=&with_count=' \\
--header 'X-Multiplai-Authorization;' \\
--header 'Authorization: Bearer <token>'"""

# Verbatim: "Generate Workflow" -> Request Example -> Shell.
GENERATE_CURL = """curl --location --request POST 'https://localhost/api/v1/workflows/generate' \\
--header 'X-Multiplai-Authorization;' \\
--header 'Authorization: Bearer <token>' \\
--form 'workspace_uuid=""' \\
--form 'prompt=""' \\
--form 'stream=""' \\
--form 'auto_create=""' \\
--form 'visibility=""'"""

# Same form, from "Get Execution Count" (GET /v1/workflow-executions/count; required workspace_uuid
# or multiplai_id, start_date, end_date; optional status, requires_human_review, has_command_room_task).
COUNT_CURL = """curl --location -g --request GET 'https://localhost/api/v1/workflow-executions/count?workspace_uuid={{workspace_uuid}}&start_date=2025-01-01&end_date=2025-01-31&status=&requires_human_review=&has_command_room_task=' \\
--header 'X-Multiplai-Authorization;' \\
--header 'Authorization: Bearer <token>'"""

COUNT_BY_ORGANIZATION_CURL = """curl --location -g --request GET 'https://localhost/api/v1/workflow-executions/count?multiplai_id={{multiplai_id}}&start_date=2025-01-01&end_date=2025-01-31&status=&requires_human_review=&has_command_room_task=' \\
--header 'X-Multiplai-Authorization;' \\
--header 'Authorization: Bearer <token>'"""

# Same form, from "Get Workflow Execution" (GET /v1/workflow-executions/{uuid}; "Debugging: Retrieve
# specific execution with with=workflowExecutionData"; relations workflow,workflowExecutionData).
RETRIEVE_CURL = """curl --location -g --request GET 'https://localhost/api/v1/workflow-executions/{{uuid}}?with=workflow,workflowExecutionData' \\
--header 'X-Multiplai-Authorization;' \\
--header 'Authorization: Bearer <token>'"""

_URL = re.compile(r"'(https://localhost/[^'?]*)(\?[^']*)?'")


def with_query(command: str, query: str) -> str:
    """``command`` with its URL's query string replaced by ``query`` (no leading ``?``)."""
    new, count = _URL.subn(lambda m: f"'{m.group(1)}" + (f"?{query}" if query else "") + "'", command)
    assert count == 1
    return new


def query_of(command: str) -> str:
    match = _URL.search(command)
    assert match
    return (match.group(2) or "?")[1:]


def with_form(command: str, **values: str) -> str:
    """``command`` with ``--form 'name=""'`` replaced by ``--form 'name="value"'`` for each value."""
    for name, value in values.items():
        old = f"--form '{name}=\"\"'"
        assert command.count(old) == 1, name
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        assert "'" not in escaped
        command = command.replace(old, f"--form '{name}=\"{escaped}\"'")
    return command


def set_params(command: str, **values: str) -> str:
    """``command`` with the query parameters ``name=...`` (first occurrence) set to ``value``; the
    order and every other parameter kept. A name ending in ``__2`` names the second occurrence; a
    trailing ``_`` is dropped (``with_`` for ``with``)."""
    parts = query_of(command).split("&")
    for key, value in values.items():
        name, _, nth = key.partition("__")
        name = name.rstrip("_")
        positions = [i for i, part in enumerate(parts) if part.split("=", 1)[0] == name]
        parts[positions[int(nth or 1) - 1]] = f"{name}={value}"
    return with_query(command, "&".join(parts))
