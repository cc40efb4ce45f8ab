"""Property-based API test: schemathesis generates requests from the app's own OpenAPI document
(in-process over WSGI), authenticated, and runs all 11 of its per-response checks: no 5xx, every
response matches its documented status code, content type, headers and schema, invalid data is
rejected and schema-valid data is accepted (see RULES_BEYOND_OPENAPI for the few rules the
document cannot state), auth is not ignored, deleted resources stay deleted.

Every operation runs inside ONE pytest test, so the data made by the ``world`` fixture lives
until the end (the conftest cleans the tables after each test). We drive Hypothesis ourselves
from ``operation.as_strategy()``: schemathesis' ``from_fixture``/lazy ``parametrize`` writes
``request.node._nodeid``, which pytest 9.2 no longer has. Generated path uuids are swapped for
real ones about half the time (so success paths and their response schemas are exercised too)
and ``_restore`` undoes what a case may have changed (soft deletes, a revoked token, a changed
role, a stopped execution, a decided approval) before the next case runs."""
from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from athena.extensions import db
from athena.models import ApiToken, Workflow, WorkflowApproval, WorkflowExecution, Workspace, WorkspaceMember
from athena.services.execution_queries import SCOPE_REQUIRED
from athena.timeutil import utcnow
from tests.factories import linear_graph, make_user, make_workflow, make_workspace, token_for

# Rules the document states in prose because OpenAPI 3.0 cannot state them in a schema. A
# schema-valid request that breaks one gets a 422 and that is right: positive_data_acceptance
# excuses exactly that 422, on exactly that operation, for exactly the request that breaks the rule
# (checked here from the request itself), and nothing else:
#   GET /workflow-executions: one of workspace_uuid, organization_multiplai_id, workflow_uuid or
#     workflow_uuids is required (a rule across parameters);
#   GET /workflow-executions/count: workspace_uuid or multiplai_id is required (likewise);
#   POST /workflows, PUT /workflows/{uuid}: nodes and edges must form a valid workflow graph (node
#     types, their parameters, edges between existing nodes) - a 422 whose errors are all about
#     nodes/edges. Half of such requests get a valid graph instead, so the success path runs too.
# Rules about object keys in free-form JSON (no NUL in a key; variable names of 1-255 characters;
# a {"secret": ...} variable needs a non-empty string value) cannot be stated either
# (propertyNames/if-then are OpenAPI 3.1): valid requests are generated within them (_within_key_rules).
EXECUTIONS = "/api/v1/workflow-executions"
SCOPE_FILTERS = {
    f"GET {EXECUTIONS}": (("workspace_uuid", "organization_multiplai_id", "workflow_uuid", "workflow_uuids",
                           "workflow_uuids[]"), SCOPE_REQUIRED),
    f"GET {EXECUTIONS}/count": (("workspace_uuid", "multiplai_id"), "workspace_uuid or multiplai_id is required."),
}
GRAPH_OPERATIONS = ("POST /api/v1/workflows", "PUT /api/v1/workflows/{uuid}")
RULES_BEYOND_OPENAPI = (*SCOPE_FILTERS, *GRAPH_OPERATIONS)


def _graph_error(errors: object) -> bool:
    return isinstance(errors, dict) and bool(errors) and all(
        key in ("nodes", "edges") or key.startswith(("nodes.", "edges.")) for key in errors)


def _breaks_rule_beyond_openapi(case, response) -> bool:
    """Whether ``response`` is the 422 of a RULES_BEYOND_OPENAPI rule that ``case`` breaks."""
    if response.status_code != 422 or case.operation.label not in RULES_BEYOND_OPENAPI:
        return False
    body = response.json()
    if case.operation.label in SCOPE_FILTERS:
        filters, message = SCOPE_FILTERS[case.operation.label]
        query = case.query or {}
        return body.get("message") == message and not any(query.get(name) for name in filters)
    return (isinstance(case.body, dict) and ("nodes" in case.body or "edges" in case.body)
            and _graph_error(body.get("errors")))


def positive_data_acceptance_beyond_openapi(ctx, response, case):
    """positive_data_acceptance (2xx, 3xx, 401, 403, 404, 409, 429, 5xx for valid data), except the
    422 of a RULES_BEYOND_OPENAPI rule for the request that breaks it."""
    if _breaks_rule_beyond_openapi(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


# All 11 per-response checks schemathesis has.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, positive_data_acceptance_beyond_openapi,
          ignored_auth, missing_required_header, unsupported_method, use_after_free]
# A 502/503/504 an operation documents (e.g. "the model provider is unreachable") is its contract
# with the client, not a crash: such responses get every check but not_a_server_error. 500 never.
GATEWAY_STATUSES = (502, 503, 504)
# Which object a path's first ``{uuid}`` names, by path prefix.
PREFIXES = (
    ("/api/v1/workflow-executions/", "execution"),
    ("/api/v1/workflows/", "workflow"),
    ("/api/v1/workspaces/", "workspace"),
)
# 25 examples per operation: 15 valid requests, 10 invalid ones (keeps the run well under 2 minutes).
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, fast
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def world(app):
    owner = make_user()
    editor = make_user()
    workspace = make_workspace(owner, "Fuzzed", members={editor: "editor"})
    workflow = make_workflow(workspace, owner, name="Fuzzed flow")
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="paused", requires_human_review=True, started_at=utcnow())
    db.session.add(execution)
    db.session.flush()
    approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending")
    db.session.add(approval)
    db.session.commit()
    return {
        "token": token_for(owner),
        "owner": owner.uuid,
        "editor": editor.uuid,
        "workspace": workspace.uuid,
        "workflow": workflow.uuid,
        "execution": execution.uuid,
        "approval": approval.uuid,
        "roles": {owner.id: "owner", editor.id: "editor"},
    }


def _coin(value: object) -> bool:
    """A deterministic (Hypothesis replays must be stable) fair coin derived from generated data."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def _real_uuids(case, world) -> None:
    params = case.path_parameters or {}
    if "uuid" in params and _coin(params["uuid"]):
        params["uuid"] = world[next((kind for prefix, kind in PREFIXES if case.path.startswith(prefix)), "workspace")]
    if "user_uuid" in params and _coin(params["user_uuid"]):
        params["user_uuid"] = world["editor" if _coin(f"{params['user_uuid']}!") else "owner"]
    if "approval_id" in params and _coin(params["approval_id"]):
        params["approval_id"] = world["approval"]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("workspace_uuid"), str) and _coin(body):
        body["workspace_uuid"] = world["workspace"]


def _without_nul_in_keys(value):
    if isinstance(value, dict):
        return {key.replace("\x00", ""): _without_nul_in_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul_in_keys(item) for item in value]
    return value


def _within_key_rules(case) -> None:
    """A valid (positive) request within the key rules OpenAPI 3.0 cannot state, and with a valid
    workflow graph half the time (see RULES_BEYOND_OPENAPI)."""
    if not isinstance(case.body, dict):
        return
    case.body = body = _without_nul_in_keys(case.body)
    if isinstance(body.get("variables"), dict):
        body["variables"] = {(name or "v")[:255]: value for name, value in body["variables"].items()}
        for value in body["variables"].values():
            if isinstance(value, dict) and value.get("secret"):
                value["value"] = "a secret value"
    if case.operation.label in GRAPH_OPERATIONS and ("nodes" in body or "edges" in body) and _coin(f"{body}#"):
        body["nodes"], body["edges"] = linear_graph(3)


def _restore(world) -> None:
    db.session.rollback()
    db.session.execute(db.update(Workspace).values(deleted_at=None))
    db.session.execute(db.update(Workflow).where(Workflow.uuid == world["workflow"]).values(deleted_at=None))
    db.session.execute(
        db.update(WorkflowExecution).where(WorkflowExecution.uuid == world["execution"])
        .values(deleted_at=None, status="paused", is_finished=False, stopped_at=None, requires_human_review=True)
    )
    db.session.execute(
        db.update(WorkflowApproval).where(WorkflowApproval.uuid == world["approval"])
        .values(status="pending", decided_by=None, decided_at=None, comment=None)
    )
    db.session.execute(db.update(ApiToken).values(revoked_at=None))
    for user_id, role in world["roles"].items():
        db.session.execute(db.update(WorkspaceMember).where(WorkspaceMember.user_id == user_id).values(role=role))
    db.session.commit()
    db.session.expire_all()


def test_api_conforms_to_its_openapi_document(app, world):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {world['token']}"}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # raises if the document itself is invalid
        operations += 1
        for mode, examples in EXAMPLES.items():

            @settings(HYPOTHESIS, max_examples=examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                if mode is GenerationMode.POSITIVE:  # a negative case's path may be the invalid part
                    _real_uuids(case, world)
                    _within_key_rules(case)
                try:
                    response = case.call(headers=headers)
                    documented = operation.definition.raw.get("responses", {})
                    gateway = response.status_code in GATEWAY_STATUSES and str(response.status_code) in documented
                    checks = [check for check in CHECKS if not (gateway and check is not_a_server_error)]
                    case.validate_response(response, checks=checks, headers=headers)
                finally:
                    if case.method.upper() != "GET":
                        _restore(world)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all, then report
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"
    assert operations >= 15
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def _one_positive_case(schema, method: str, path: str):
    drawn = []

    @settings(HYPOTHESIS, max_examples=1)
    @given(case=schema[path][method].as_strategy(generation_mode=GenerationMode.POSITIVE))
    def draw(case):
        drawn.append(case)

    draw()
    return drawn[0]


def test_positive_data_acceptance_excuses_only_the_rules_beyond_openapi(app, client, world):
    """The exceptions are as narrow as RULES_BEYOND_OPENAPI says: a 422 still fails the check on
    another operation, for another reason, or for a request that does not break the rule."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {world['token']}"}
    no_scope = client.get(EXECUTIONS, headers=headers)
    dates = {"start_date": "2000-01-01", "end_date": "2000-01-01"}  # required by the count
    no_count_scope = client.get(f"{EXECUTIONS}/count", query_string=dates, headers=headers)
    graph = client.post("/api/v1/workflows", headers=headers, json={
        "workspace_uuid": world["workspace"], "name": "x", "nodes": [{"id": "a", "type": "no such type"}]})
    nul = client.post("/api/v1/workflows", headers=headers, json={"workspace_uuid": world["workspace"], "name": "\0"})
    assert {no_scope.status_code, no_count_scope.status_code, graph.status_code, nul.status_code} == {422}
    assert _graph_error(graph.json["errors"]) and not _graph_error(nul.json["errors"])

    def verdict(method: str, path: str, response, *, query=None, body=None) -> bool:
        case = _one_positive_case(schema, method, path)
        if query is not None:
            case.query = query
        if body is not None:
            case.body = body
        try:
            case.validate_response(response, checks=[positive_data_acceptance_beyond_openapi])
        except BaseExceptionGroup as group:
            assert any(isinstance(failure, RejectedPositiveData) for failure in group.exceptions)
            return False
        return True

    graph_body = {"workspace_uuid": world["workspace"], "name": "x", "nodes": [{"id": "a"}]}
    assert verdict("GET", EXECUTIONS, no_scope, query={})
    assert not verdict("GET", EXECUTIONS, no_scope, query={"workspace_uuid": world["workspace"]})
    assert verdict("GET", f"{EXECUTIONS}/count", no_count_scope, query=dates)
    assert not verdict("GET", f"{EXECUTIONS}/count", no_count_scope, query={**dates, "multiplai_id": "x"})
    assert not verdict("GET", f"{EXECUTIONS}/count", no_scope, query=dates)  # the other rule's message
    assert verdict("POST", "/api/v1/workflows", graph, body=graph_body)
    assert not verdict("POST", "/api/v1/workflows", nul, body=graph_body)  # not about the graph
    assert not verdict("POST", "/api/v1/workflows", graph, body={"workspace_uuid": world["workspace"], "name": "x"})
    assert not verdict("POST", "/api/v1/workspaces", graph, body={"name": "x"})  # another operation
