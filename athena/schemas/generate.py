"""Request and response shapes of ``POST /api/v1/workflows/generate``."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.models import VISIBILITIES
from athena.schemas.common import StrictSchema, Text, not_blank


class GenerateRequestSchema(StrictSchema):
    """Accepted as JSON or as multipart/form-data (``true``/``false``/``1``/``0`` for the flags;
    empty form fields count as absent)."""

    workspace_uuid = Text(required=True, validate=validate.Length(min=1, max=64),
                          metadata={"description": "Workspace the workflow is for (editor or owner)."})
    prompt = Text(required=True, validate=[not_blank("The prompt may not be blank."), validate.Length(min=1, max=8000)],
                  metadata={"description": "What the workflow should do, in plain language."})
    stream = fields.Boolean(load_default=False,
                            metadata={"description": "Answer with Server-Sent Events (text/event-stream)."})
    auto_create = fields.Boolean(load_default=False,
                                 metadata={"description": "Save the generated workflow and return it (201)."})
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES),
                               metadata={"description": "Visibility of the created workflow."})
    model = Text(validate=validate.Length(min=1, max=200),
                 metadata={"description": "The provider's model id (default gpt-4.1-mini / ATHENA_LLM_MODEL)."})
    account_uuid = Text(validate=validate.Length(min=1, max=64), metadata={
        "description": "The account to call (GET /api/v1/accounts); default: the workspace's default account, "
                       "else the server's OPENAI_API_KEY / OPENAI_BASE_URL."})


class GeneratedWorkflowSchema(Schema):
    data = fields.String(required=True, metadata={"description": "The generated workflow JSON "
                                                                 "({name, description, nodes, edges}) as a string."})


class GenerateInvalidSchema(Schema):
    """422 when the model never produced a valid workflow: the errors and its last candidate."""

    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.Raw())
    candidate = fields.Raw(allow_none=True)
