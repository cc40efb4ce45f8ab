from __future__ import annotations

import json
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from athena.models import MODES, STATUSES
from athena.schemas.common import JSON_VALUE_REF, SPACE_CLASS, Json, QuerySchema, StrictSchema, Text, UtcDateTime
from athena.schemas.workflows import WorkflowSchema


_META_PROPERTIES = {
    "running_node": {"type": "string", "nullable": True, "description": "The node running now."},
    "workflow_execution_data_id": {"type": "integer", "description": "This data row's id."},
    "execution_time": {"type": "integer", "description": "Milliseconds spent running, all stretches of the run."},
    "wait_until": {"type": "string", "format": "date-time", "description": "A wait node's deadline."},
    "wait_until_timestamp": {"type": "integer", "description": "The same, in Unix seconds."},
    "wait_started_at": {"type": "string", "format": "date-time"},
    "wait_completed_at": {"type": "string", "format": "date-time"},
    "loop_index": {"type": "integer", "description": "The running loop's item index."},
    "processed_count": {"type": "integer", "description": "Nodes that finished."},
    "error_count": {"type": "integer", "description": "Nodes that failed."},
    "retry_count": {"type": "integer", "description": "Retries of nodes."},
}


class DataMetadata(fields.Dict):
    """The stored ``metadata`` with ``workflow_execution_data_id`` always the row's own id (an
    inline run is written in one batch, before that id is known)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"properties": _META_PROPERTIES, "additionalProperties": True}, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return super()._serialize({**(value or {}), "workflow_execution_data_id": obj.id}, attr, obj, **kwargs)


class WorkflowExecutionDataWorkflowDataSchema(Schema):
    """One node's run (the documented WorkflowExecutionDataWorkflowData), in execution order."""

    class Meta:
        ordered = True

    node_id = fields.String(required=True)
    type = fields.String(required=True, metadata={"description": "The node's type."})
    status = fields.String(required=True, metadata={
        "enum": ["running", "success", "error", "skipped", "waiting", "paused"]})
    output = fields.Raw(allow_none=True, metadata={"anyOf": [{"$ref": JSON_VALUE_REF}]})
    error = fields.String(allow_none=True)
    handle = fields.String(allow_none=True, metadata={"description": "The output handle it took."})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    stopped_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    attempts = fields.Integer(allow_none=True)


class _AsStored(fields.Nested):
    """Documented as the nested schema; dumped as stored (a run entry keeps every key it has)."""

    def _serialize(self, nested_obj: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return nested_obj


def _graph_text(data: Any) -> str | None:
    return None if data.data is None else json.dumps(data.data, separators=(",", ":"))


class ExecutionDataSchema(Schema):
    class Meta:
        ordered = True

    uuid = fields.String(required=True)
    workflow_data = fields.List(_AsStored(WorkflowExecutionDataWorkflowDataSchema), required=True)
    metadata = DataMetadata(attribute="meta", required=True)
    data = fields.Function(_graph_text, allow_none=True, metadata={
        "type": "string", "description": "The JSON text of the graph the execution runs (nodes, edges, variables)."})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


class ExecutionSchema(Schema):
    """The documented WorkflowExecution resource; relations only when asked for with ``with=``,
    approval counts with ``with_count=`` (attributes ``execution_queries.include`` sets)."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    is_finished = fields.Boolean(required=True)
    mode = fields.String(required=True)
    retry_of = fields.String(allow_none=True)
    retry_success_id = fields.String(allow_none=True)
    started_at = UtcDateTime(allow_none=True)
    stopped_at = UtcDateTime(allow_none=True)
    wait_till = UtcDateTime(allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)
    workflow_uuid = fields.Function(lambda e: e.workflow.uuid, metadata={"type": "string"})
    workspace_uuid = fields.Function(lambda e: e.workflow.workspace.uuid, metadata={"type": "string"})
    parent_execution_uuid = fields.Function(lambda e: e.parent.uuid if e.parent_execution_id else None,
                                            allow_none=True, metadata={"type": "string"})
    input = fields.Raw(allow_none=True, metadata={"anyOf": [{"$ref": JSON_VALUE_REF}]})
    output = fields.Raw(allow_none=True, metadata={"anyOf": [{"$ref": JSON_VALUE_REF}]})
    error = fields.String(allow_none=True)
    requires_human_review = fields.Boolean()
    has_command_room_task = fields.Boolean()
    workflow = fields.Nested(WorkflowSchema, attribute="included_workflow", metadata={"description": "with=workflow"})
    workflow_execution_data = fields.List(fields.Nested(ExecutionDataSchema), attribute="included_data",
                                          metadata={"description": "with=workflowExecutionData"})
    workflow_approvals_count = fields.Integer(metadata={"description": "with_count=workflowApprovals"})
    pending_workflow_approvals_count = fields.Integer(
        metadata={"description": "with_count=pendingWorkflowApprovals"})


class ExecutionCreateSchema(StrictSchema):
    workflow_uuid = Text(required=True, validate=validate.Length(max=64))
    input = Json()
    mode = fields.String(load_default="manual", validate=validate.OneOf(["manual", "api", "webhook", "schedule"]))


class ExecutionUpdateSchema(StrictSchema):
    """Only what a client may change; status moves through /stop and the worker."""

    requires_human_review = fields.Boolean()
    has_command_room_task = fields.Boolean()


WITH_OPTIONS = ("workflow", "workflowExecutionData")
WITH_COUNT_OPTIONS = ("workflowApprovals", "pendingWorkflowApprovals")


class _CsvOf:
    """A comma-separated subset of ``options``; whitespace around a part and empty parts are
    ignored. A validator with a ``regex`` (the pattern apispec documents) that explains itself
    better than a plain Regexp would: it names the unknown parts."""

    def __init__(self, options: tuple[str, ...]) -> None:
        self.options = options
        part = rf"[{SPACE_CLASS}]*(?:{'|'.join(options)})?[{SPACE_CLASS}]*"
        self.regex = re.compile(rf"^{part}(?:,{part})*$")

    # marshmallow 4 ignores a validator's return value: it has to raise.
    def __call__(self, value: str) -> None:
        if self.regex.match(value) is None:
            unknown = [part.strip() for part in value.split(",") if part.strip() not in ("", *self.options)]
            raise ValidationError(f"Unknown value(s) {', '.join(unknown)}; allowed: {', '.join(self.options)}.")


class IncludeArgsSchema(QuerySchema):
    with_ = fields.String(data_key="with", validate=_CsvOf(WITH_OPTIONS),
                          metadata={"description": "comma-separated: workflow,workflowExecutionData"})
    with_count = fields.String(validate=_CsvOf(WITH_COUNT_OPTIONS),
                               metadata={"description": "comma-separated: workflowApprovals,pendingWorkflowApprovals"})


class ExecutionListArgsSchema(IncludeArgsSchema):
    """At least one of workspace_uuid, organization_multiplai_id, workflow_uuid or workflow_uuids
    (non-empty) is required: a 422 otherwise (OpenAPI cannot state a rule across parameters)."""

    workflow_uuid = Text(validate=validate.Length(max=64))
    workflow_uuids = fields.List(Text(validate=validate.Length(max=64)), validate=validate.Length(max=100))
    # The documented spelling is ``workflow_uuids[]`` (PHP/Laravel style); both are accepted and merged.
    workflow_uuids_brackets = fields.List(Text(validate=validate.Length(max=64)),
                                          data_key="workflow_uuids[]", validate=validate.Length(max=100),
                                          metadata={"description": "same as workflow_uuids"})
    workspace_uuid = Text(validate=validate.Length(max=64))
    organization_multiplai_id = Text(validate=validate.Length(max=64))
    user_multiplai_id = Text(validate=validate.Length(max=64))
    status = fields.String(validate=validate.OneOf(STATUSES))
    mode = fields.String(validate=validate.OneOf(MODES))
    search = Text(validate=validate.Length(max=255))
    sort_by = fields.String(load_default="created_at", validate=validate.OneOf(["created_at", "updated_at"]))
    sort_direction = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))
    date_from = fields.Date()
    date_to = fields.Date()


class ExecutionCountArgsSchema(QuerySchema):
    """workspace_uuid or multiplai_id (non-empty) is required: a 422 otherwise."""

    workspace_uuid = Text(validate=validate.Length(max=64))
    multiplai_id = Text(validate=validate.Length(max=64))
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
    status = fields.String(validate=validate.OneOf(STATUSES))
    requires_human_review = fields.Boolean()
    has_command_room_task = fields.Boolean()


class ExecutionCountSchema(Schema):
    count = fields.Integer(required=True)


class WebhookArgsSchema(QuerySchema):
    wait = fields.Boolean(load_default=False)
    timeout = fields.Float(validate=validate.Range(min=0.1, max=300))
