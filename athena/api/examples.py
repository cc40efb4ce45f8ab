"""The request examples of the OpenAPI document: what Swagger UI (/api/v1/docs) fills its forms
with, and what schemathesis' examples phase sends. Each one works as written against a running
server, once its placeholders (WORKSPACE_PLACEHOLDER, WORKFLOW_PLACEHOLDER) are replaced with
real uuids: tests/api/test_openapi_examples.py posts every one and expects a 2xx.

Descriptions here are plain text (Swagger UI renders them as Markdown; no reStructuredText)."""
from __future__ import annotations

import copy
from typing import Any

from athena.schemas.common import JSON_VALUE_REF, NO_NUL

# Placeholders: the uuid of one of the caller's objects cannot be known in advance. Short enough
# for the fields' maxLength (64), so an unreplaced one is a well-formed request answered 404.
WORKSPACE_PLACEHOLDER = "REPLACE-WITH-YOUR-WORKSPACE-UUID"
WORKFLOW_PLACEHOLDER = "REPLACE-WITH-YOUR-WORKFLOW-UUID"
REPLACE_WORKSPACE = ("Replace workspace_uuid with the uuid of a workspace where you are an editor or owner "
                     "(GET /api/v1/workspaces lists them).")
REPLACE_WORKFLOW = ("Replace workflow_uuid with the uuid of an active workflow of yours (GET /api/v1/workflows "
                    "lists them).")

# What a sign-up form would post to the webhook of GREETER below.
SIGN_UP = {"name": "Ada Lovelace", "email": "ada@example.com", "plan": "pro"}

# A real workflow: webhook trigger -> set -> respond_to_webhook. Called with ?wait=true it answers
# {"message": "Welcome, Ada Lovelace!", "email": "ada@example.com", "plan": "pro"}.
GREETER_GRAPH: dict[str, Any] = {
    "nodes": [
        {"id": "signup", "type": "webhook", "name": "Sign-up received", "position": {"x": 0, "y": 0}},
        {"id": "greeting", "type": "set", "name": "Build the greeting", "position": {"x": 280, "y": 0},
         "parameters": {"fields": {"message": "Welcome, {{ trigger.body.name }}!",
                                   "email": "{{ trigger.body.email }}",
                                   "plan": "{{ trigger.body.plan }}"}}},
        {"id": "reply", "type": "respond_to_webhook", "name": "Answer the caller", "position": {"x": 560, "y": 0},
         "parameters": {"status": 200, "body": "{{ nodes.greeting.output }}"}},
    ],
    "edges": [
        {"source": "signup", "target": "greeting"},
        {"source": "greeting", "target": "reply"},
    ],
}
GREETER = {
    "workspace_uuid": WORKSPACE_PLACEHOLDER,
    "name": "Greet a sign-up",
    "description": "A sign-up form posts {name, email, plan} to the webhook; the caller gets a greeting back.",
    "visibility": "workspace",
    "is_active": True,
    **GREETER_GRAPH,
}


def _one(summary: str, value: Any, description: str | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {"summary": summary, "value": copy.deepcopy(value)}
    if description:
        example["description"] = description
    return example


def examples(summary: str, value: Any, description: str | None = None) -> dict[str, dict[str, Any]]:
    """An ``examples`` map of one example (what ``blp.arguments(examples=...)`` takes)."""
    return {"default": _one(summary, value, description)}


SIGN_IN = examples("Sign in", {"email": "ada@example.com", "password": "your-password",
                               "device_name": "API docs page"},
                   "The email and password of your account; device_name names the session token.")
WORKSPACE_CREATE = examples("A workspace", {"name": "Marketing automations",
                                            "description": "Lead capture and nurture workflows."})
WORKSPACE_UPDATE = examples("Rename a workspace", {"name": "Marketing",
                                                   "description": "Lead capture, nurture and reporting."})
MEMBER_CREATE = examples("Add an editor", {"email": "colleague@example.com", "role": "editor"},
                         "The email of a registered user who is not a member yet; role is owner, editor or viewer.")
MEMBER_UPDATE = examples("Make a member a viewer", {"role": "viewer"})
WORKFLOW_CREATE = examples(
    "Webhook, set, respond", GREETER,
    f"{REPLACE_WORKSPACE} A webhook trigger, a set node building a greeting from the posted body and a "
    "respond_to_webhook node answering with it: POST the body of the Trigger a webhook example to "
    "/api/v1/workflows/{uuid}/webhook?wait=true to get the greeting back.")
WORKFLOW_UPDATE = examples(
    "Rename and change the graph",
    {"name": "Greet a sign-up (v2)", "description": "Answers a sign-up with a greeting.", **GREETER_GRAPH},
    "Only the fields sent change; nodes and edges replace the whole graph.")
EXECUTION_CREATE = examples(
    "Run a workflow by hand",
    {"workflow_uuid": WORKFLOW_PLACEHOLDER, "mode": "manual",
     "input": {"body": SIGN_UP, "query": {}, "headers": {}}},
    f"{REPLACE_WORKFLOW} input is the trigger's output: here what the webhook trigger of the Create a "
    "workflow example would output for a sign-up.")
EXECUTION_UPDATE = examples("Ask for a human review", {"requires_human_review": True})
APPROVE = examples("Approve with a comment", {"comment": "Looks good, go ahead."},
                   "The body is optional: an empty request approves without a comment.")
REJECT = examples("Reject with a comment", {"comment": "The amount is too high; ask finance first."},
                  "The body is optional: an empty request rejects without a comment.")
GENERATE = {
    "workspace_uuid": WORKSPACE_PLACEHOLDER,
    "prompt": "When a sign-up form posts a name and an email to the webhook, answer with a welcome message "
              "that greets the person by name.",
    "stream": False,
    "auto_create": False,
}
GENERATE_JSON = examples("Generate a workflow", GENERATE, f"{REPLACE_WORKSPACE} Needs a configured model "
                         "(OPENAI_API_KEY, or OPENAI_BASE_URL for a local one).")
GENERATE_FORM = examples("Generate a workflow (form)", GENERATE,
                         f"{REPLACE_WORKSPACE} The same fields as form fields; the flags are true or false.")

# Accounts: the built-in openai_compatible provider (its uuid is fixed) and a local Ollama; the
# account is checked against the server unless ?verify=false.
OPENAI_COMPATIBLE_PROVIDER_UUID = "6224f44c-90fc-5a4b-a1d8-8ba2b6423ea8"
LOCAL_MODEL_BASE_URL = "http://127.0.0.1:11434/v1"
PROVIDER_CREATE = examples(
    "A workspace's own provider",
    {"workspace_uuid": WORKSPACE_PLACEHOLDER, "slug": "company_gateway", "name": "Company LLM gateway",
     "description": "Our LiteLLM proxy in front of every model.", "base_url": "https://llm.example.com/v1",
     "authentication_config": {"fields": [{"name": "api_key", "required": True},
                                          {"name": "base_url", "required": False}]}},
    f"{REPLACE_WORKSPACE} authentication_config says which credential fields (api_key, base_url, organization, "
    "extra_headers) an account of it must give; api_key and extra_headers are always secret.")
PROVIDER_UPDATE = examples("Rename a provider", {"name": "Company LLM gateway (EU)",
                                                 "base_url": "https://eu.llm.example.com/v1"})
ACCOUNT_CREATE = examples(
    "A local Ollama",
    {"workspace_uuid": WORKSPACE_PLACEHOLDER, "provider_uuid": OPENAI_COMPATIBLE_PROVIDER_UUID,
     "name": "Ollama on this machine", "is_default": True,
     "credentials": {"api_key": "ollama-local-key", "base_url": LOCAL_MODEL_BASE_URL}},
    f"{REPLACE_WORKSPACE} provider_uuid: GET /api/v1/providers (this one is the built-in openai_compatible). "
    "The account is checked with the server's models listing (422 with its reason when refused; ?verify=false "
    "skips it), then its models are synced in the background. For OpenAI: the openai provider's uuid and "
    "credentials {\"api_key\": \"sk-...\"}.")
ACCOUNT_UPDATE = examples(
    "Rename an account and replace its key",
    {"name": "Ollama (workstation)", "credentials": {"api_key": "ollama-new-local-key"}},
    "Only the fields sent change. A secret sent back as shown (masked) keeps the stored one.")

# The webhook takes any body: JSON, a form, or text (the trigger's output has it as body). A JSON
# body is any JSON value but a bare null (answered 400, as invalid JSON); no NUL in a JSON or form
# value (guard_input: 422).
WEBHOOK_JSON = {
    "description": "Any JSON value (null: the trigger's body is null, as with no body).",
    "anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean", "nullable": True},
              {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
              {"type": "object", "additionalProperties": {"$ref": JSON_VALUE_REF}}],
}
WEBHOOK_BODY = {
    "required": False,
    "description": "Any body, of any content type: the workflow's trigger outputs it as body (JSON parsed, a "
                   "form as an object of its fields, anything else as text), next to query and headers.",
    "content": {
        "application/json": {
            "schema": WEBHOOK_JSON,
            "examples": examples("A sign-up", SIGN_UP, "What the workflow of the Create a workflow example reads "
                                 "(name, email, plan). With wait=true it answers {\"message\": \"Welcome, Ada "
                                 "Lovelace!\", \"email\": \"ada@example.com\", \"plan\": \"pro\"}."),
        },
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": {"type": "string", "pattern": NO_NUL}},
            "examples": examples("A sign-up, as a form", SIGN_UP),
        },
        "text/plain": {
            "schema": {"type": "string", "pattern": NO_NUL},
            "examples": examples("Text", "Ada Lovelace <ada@example.com> signed up for pro."),
        },
    },
}
