from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing, validate

from athena.models import MODES, STATUSES
from athena.schemas.common import SPACE_CLASS, Json, QuerySchema, StrictSchema, Text, UtcDateTime
from athena.schemas.workflows import WorkflowSchema


class DataMetadata(fields.Dict):
    """The stored ``metadata`` with ``workflow_execution_data_id`` always the row's own id (an
    inline run is written in one batch, before that id is known)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return super()._serialize({**(value or {}), "workflow_execution_data_id": obj.id}, attr, obj, **kwargs)


class ExecutionDataSchema(Schema):
    class Meta:
        ordered = True

    uuid = fields.String(required=True)
    workflow_data = fields.List(fields.Dict(), required=True)
    metadata = DataMetadata(attribute="meta", required=True)
    data = fields.Raw(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


def _included(name: str):
    def getter(execution):
        return getattr(execution, name, missing)

    return getter


class ExecutionSchema(Schema):
    """The documented WorkflowExecution resource; relations only when asked for with ``with=``."""

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
    status = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)
    workflow_uuid = fields.Function(lambda e: e.workflow.uuid)
    workspace_uuid = fields.Function(lambda e: e.workflow.workspace.uuid)
    parent_execution_uuid = fields.Function(lambda e: getattr(e, "parent_uuid", None), allow_none=True)
    input = fields.Raw(allow_none=True)
    output = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)
    requires_human_review = fields.Boolean()
    has_command_room_task = fields.Boolean()
    workflow = fields.Function(_included("included_workflow"), allow_none=True,
                               metadata={"description": "with=workflow"})
    workflow_execution_data = fields.Function(_included("included_data"),
                                              metadata={"description": "with=workflowExecutionData"})
    workflow_approvals_count = fields.Function(_included("workflow_approvals_count"))
    pending_workflow_approvals_count = fields.Function(_included("pending_workflow_approvals_count"))


def dump_included_workflow(workflow) -> dict:
    return WorkflowSchema().dump(workflow)


def dump_included_data(data) -> list[dict]:
    return [ExecutionDataSchema().dump(data)] if data is not None else []


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
