"""What the schemathesis run needs around the API: the data it works on (``World``), the hooks that
point some generated requests at that data and put it back afterwards, the few failures excused
(each with its reason), and a summary of the engine's events.

What the run leaves out, forgives or steers, and nothing else (each with its reason):

- ``POST /api/v1/auth/logout`` is not called at all: it revokes the token every other request
  uses, so the rest of the run would test nothing but 401s. (tests/api covers logout.)
- ``POST /api/v1/workflows/generate`` answers 503 "needs a language model" when the server has no
  model configured, as in this run: not_a_server_error forgives exactly that 503 on exactly that
  operation; every other check still applies to it (the 503 is documented, with its schema). The
  generation itself is tested against a fake model in tests/api/test_generate.py.
- ``POST /api/v1/workflows`` and ``PUT /api/v1/workflows/{uuid}``: a workflow graph is checked as a
  whole (a node type's own parameters, edges between nodes that exist, handles, cycles, loop
  bodies), which OpenAPI cannot state. Node and Edge say everything item by item; a schema-valid
  body whose graph breaks a whole-graph rule is a 422 whose errors are all about nodes/edges, and
  positive_data_acceptance forgives exactly that 422. Half of the valid bodies get a valid graph
  instead (``_within_rules_beyond_openapi``), so the success path runs too.
- ``POST /api/v1/workflows/{uuid}/webhook?wait=true`` holds the request open until the execution
  finishes or ``timeout`` seconds pass (up to 300, as documented). This run has no worker, so a
  queued execution never finishes: a valid ``timeout`` is capped at 1 second (and set to 1 when a
  valid request has none), or one request could outlast the whole run.
- Accounts (``POST /api/v1/accounts``, ``PUT /api/v1/accounts/{uuid}``) are checked against their
  provider unless ``verify=false``; this run has no model server, so every account write is sent
  with ``verify=false`` (the check itself is tested against a fake provider in tests/llm). The
  world's account points at a closed loopback port (and accounts the run creates at the example's
  local Ollama, not running here), so a generation on one answers 503 "The model server at
  http://127.0.0.1:<port>/v1 is unreachable": forgiven like the 503 without a model. A schema-valid account write the provider
  check still refuses (a 422 whose errors are all about ``credentials``) is forgiven: OpenAPI
  cannot say which keys a provider accepts.
- ``PUT /api/v1/accounts/{uuid}`` and ``PUT /api/v1/providers/{uuid}`` take a ``workspace_uuid``
  that must be the object's own (an object does not move): another one is a 422 on
  ``workspace_uuid`` alone, forgiven (OpenAPI cannot say "equal to the object's"). After each write the world's workspace is
  left with its own provider and account only (what a request added is removed).
- Free-form JSON object keys (``variables``, a node's extra keys): no NUL in a key, variable names
  of 1 to 255 characters, a ``{"secret": true}`` variable needs a non-empty string value. OpenAPI
  3.0 cannot constrain keys (``propertyNames`` is 3.1): valid requests are generated within those
  rules (``_within_rules_beyond_openapi``) instead of excusing the 422.
"""
from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from schemathesis.core.failures import Failure, ServerError
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import Status, events
from schemathesis.engine.statistic import Statistic
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import TestPhase
from schemathesis.openapi.checks import RejectedPositiveData

from athena.extensions import db
from athena.crypto import encrypt
from athena.models import (
    Account, ApiToken, LargeLanguageModel, Provider, Workflow, WorkflowApproval, WorkflowExecution, Workspace,
    WorkspaceMember,
)
from athena.timeutil import utcnow
from tests.factories import linear_graph, make_llm_objects, make_user, make_workflow, make_workspace, token_for

API = "/api/v1"
LOGOUT = f"{API}/auth/logout"
GENERATE = f"POST {API}/workflows/generate"
WEBHOOK = f"POST {API}/workflows/{{uuid}}/webhook"
WAIT_AT_MOST = 1.0
NO_MODEL = "needs a language model"
WORLD_MODEL_URL = "http://127.0.0.1:9/v1"
# "The model server at <base URL> is unreachable (...)": a loopback one not running, or an
# example host of an account the run stored unchecked (it has no model server behind it)
UNREACHABLE = re.compile(r"^The model server at https?://\S+ is unreachable ")
UNSENDABLE = "The credentials cannot be sent to the provider"
ACCOUNT_WRITES = (f"POST {API}/accounts", f"PUT {API}/accounts/{{uuid}}")
NO_MOVE = (f"PUT {API}/accounts/{{uuid}}", f"PUT {API}/providers/{{uuid}}")
GRAPH_OPERATIONS = (f"POST {API}/workflows", f"PUT {API}/workflows/{{uuid}}")
# Which object a path's first ``{uuid}`` names, by path prefix.
PREFIXES = ((f"{API}/workflow-executions/", "execution"), (f"{API}/workflows/", "workflow"),
            (f"{API}/workspaces/", "workspace"), (f"{API}/providers/", "provider"), (f"{API}/accounts/", "account"),
            (f"{API}/large-language-models/", "llm"))


@dataclass
class World:
    """A workspace (owner + editor), a workflow, a paused execution with a pending approval, a
    failed execution (retry, delete), and a user who is no member yet: real targets for generated
    requests."""

    token: str
    owner: str
    editor: str
    outsider_email: str
    workspace: str
    workflow: str
    execution: str
    failed: str
    approval: str
    provider: str = ""
    account: str = ""
    llm: str = ""
    ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def make(cls) -> World:
        owner, editor, outsider = make_user(), make_user(), make_user()
        workspace = make_workspace(owner, "Fuzzed", members={editor: "editor"})
        workflow = make_workflow(workspace, owner, name="Fuzzed flow")
        execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                      status="paused", requires_human_review=True, started_at=utcnow())
        failed = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                   status="failed", is_finished=True, error="boom", started_at=utcnow(),
                                   stopped_at=utcnow())
        db.session.add_all([execution, failed])
        db.session.flush()
        approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending")
        db.session.add(approval)
        db.session.commit()
        provider, account, model = make_llm_objects(workspace, owner)
        account.credentials = {**account.credentials, "base_url": WORLD_MODEL_URL}  # nothing listens
        db.session.commit()
        return cls(provider=provider.uuid, account=account.uuid, llm=model.uuid, token=token_for(owner), owner=owner.uuid, editor=editor.uuid, outsider_email=outsider.email,
                   workspace=workspace.uuid, workflow=workflow.uuid, execution=execution.uuid, failed=failed.uuid,
                   approval=approval.uuid,
                   ids={"owner": owner.id, "editor": editor.id, "outsider": outsider.id, "workspace": workspace.id,
                        "workflow": workflow.id, "execution": execution.id, "failed": failed.id,
                        "approval": approval.id, "provider": provider.id, "account": account.id, "llm": model.id})

    def restore(self) -> None:
        """Undo what a request may have done to the world (and only to it): soft deletes, a stopped
        execution, a decided approval, a revoked token, changed or removed memberships."""
        ids = self.ids
        db.session.rollback()
        db.session.execute(db.update(Workspace).where(Workspace.id == ids["workspace"]).values(deleted_at=None))
        nodes, edges = linear_graph()
        db.session.execute(db.update(Workflow).where(Workflow.id == ids["workflow"]).values(
            deleted_at=None, is_active=True, nodes=nodes, edges=edges, variables={}, webhook_secret=None))
        db.session.execute(
            db.update(WorkflowExecution).where(WorkflowExecution.id == ids["execution"])
            .values(deleted_at=None, status="paused", is_finished=False, stopped_at=None, requires_human_review=True))
        db.session.execute(db.update(WorkflowExecution).where(WorkflowExecution.id == ids["failed"])
                           .values(deleted_at=None))
        db.session.execute(
            db.update(WorkflowApproval).where(WorkflowApproval.id == ids["approval"])
            .values(status="pending", decided_by=None, decided_at=None, comment=None))
        db.session.execute(db.update(ApiToken).where(ApiToken.user_id == ids["owner"]).values(revoked_at=None))
        workspace_rows = (Account.workspace_id == ids["workspace"]) & (Account.id != ids["account"])
        db.session.execute(db.delete(LargeLanguageModel).where(LargeLanguageModel.account_id.in_(
            db.select(Account.id).where(workspace_rows))))
        db.session.execute(db.delete(Account).where(workspace_rows))
        db.session.execute(db.update(Account).where(Account.id == ids["account"]).values(
            deleted_at=None, is_default=False, provider_id=ids["provider"],
            credentials={"api_key": encrypt("sk-factory-secret-key-0000"), "base_url": WORLD_MODEL_URL}))
        db.session.execute(db.update(LargeLanguageModel).where(LargeLanguageModel.id == ids["llm"]).values(deleted_at=None))
        db.session.execute(db.delete(Provider).where(Provider.workspace_id == ids["workspace"],
                                                     Provider.id != ids["provider"]))
        db.session.execute(db.update(Provider).where(Provider.id == ids["provider"]).values(deleted_at=None))
        db.session.execute(db.delete(WorkspaceMember).where(WorkspaceMember.workspace_id == ids["workspace"]))
        for user, role in (("owner", "owner"), ("editor", "editor")):
            db.session.add(WorkspaceMember(workspace_id=ids["workspace"], user_id=ids[user], role=role,
                                           created_at=utcnow()))
        db.session.commit()
        db.session.expire_all()


def _coin(value: object) -> bool:
    """A deterministic (Hypothesis replays must be stable) fair coin derived from generated data."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def _phase(case) -> TestPhase | None:
    return case.meta.phase.name if case.meta is not None else None


def _positive_at(case, location: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return True
    component = meta.components.get(location)
    return component is None or component.mode is GenerationMode.POSITIVE


def _real_targets(case, world: World) -> None:
    """About half the time, point a valid path or body at the world's objects, so success paths and
    their response schemas are exercised too (random uuids only ever find 404s)."""
    params = case.path_parameters
    if params and _positive_at(case, ParameterLocation.PATH):
        if "uuid" in params and _coin(params["uuid"]):
            kind = next((kind for prefix, kind in PREFIXES if case.path.startswith(prefix)), "workspace")
            if kind == "execution" and _coin(f"{params['uuid']}?"):
                kind = "failed"
            params["uuid"] = getattr(world, kind)
        if "user_uuid" in params and _coin(params["user_uuid"]):
            params["user_uuid"] = world.editor if _coin(f"{params['user_uuid']}!") else world.owner
        if "approval_id" in params and _coin(params["approval_id"]):
            params["approval_id"] = world.approval
    body = case.body
    if isinstance(body, dict) and _positive_at(case, ParameterLocation.BODY) and _coin(body):
        if isinstance(body.get("workspace_uuid"), str):
            body["workspace_uuid"] = world.workspace
        if isinstance(body.get("workflow_uuid"), str):
            body["workflow_uuid"] = world.workflow
        if isinstance(body.get("provider_uuid"), str):
            body["provider_uuid"] = world.provider
        if isinstance(body.get("account_uuid"), str):
            body["account_uuid"] = world.account
        if isinstance(body.get("email"), str):
            body["email"] = world.outsider_email


def _no_provider_check(case) -> None:
    """Account writes skip the provider check: no model server here (see the module docstring)."""
    if case.operation.label in ACCOUNT_WRITES and _positive_at(case, ParameterLocation.QUERY):
        case.query = {**(case.query or {}), "verify": "false"}


def _short_waits(case) -> None:
    """A webhook call waits at most WAIT_AT_MOST seconds (see the module docstring)."""
    if case.operation.label != WEBHOOK or not isinstance(case.query, dict):
        return
    timeout = case.query.get("timeout")
    seconds = _number(timeout)
    if seconds is not None and 0.1 <= seconds <= 300:  # a valid one, as a number or as its text (coverage phase)
        case.query["timeout"] = min(seconds, WAIT_AT_MOST)
    elif timeout in (None, "") and _positive_at(case, ParameterLocation.QUERY):
        case.query["timeout"] = WAIT_AT_MOST


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _without_nul_in_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key.replace("\x00", ""): _without_nul_in_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul_in_keys(item) for item in value]
    return value


def _within_rules_beyond_openapi(case) -> None:
    """A valid body stays valid under the key rules OpenAPI 3.0 cannot state, and half of the valid
    workflow bodies with a graph get a valid one (see the module docstring)."""
    if not isinstance(case.body, (dict, list)) or not _positive_at(case, ParameterLocation.BODY):
        return
    case.body = body = _without_nul_in_keys(case.body)  # a list body (the webhook's) may hold objects too
    if not isinstance(body, dict):
        return
    if isinstance(body.get("variables"), dict):
        body["variables"] = {(name or "v")[:255]: value for name, value in body["variables"].items()}
        for value in body["variables"].values():
            if isinstance(value, dict) and value.get("secret"):
                value["value"] = "a secret value"
    if case.operation.label in GRAPH_OPERATIONS and ("nodes" in body or "edges" in body) and _coin(f"{body}#"):
        body["nodes"], body["edges"] = linear_graph(3)


def _only_about(errors: object, field: str) -> bool:
    return isinstance(errors, dict) and bool(errors) and all(
        key == field or key.startswith(f"{field}.") for key in errors)


def _graph_errors(errors: object) -> bool:
    return isinstance(errors, dict) and bool(errors) and all(
        key in ("nodes", "edges") or key.startswith(("nodes.", "edges.")) for key in errors)


def excuse(failure: Failure, label: str, status: int, answer: Any, body: Any) -> str | None:
    """Why ``failure`` (of the request ``label`` with JSON ``body``, answered ``status`` ``answer``)
    is excused, or None: it is a failure (see the module docstring)."""
    if isinstance(failure, ServerError) and label == GENERATE and status == 503 and isinstance(answer, dict) \
            and NO_MODEL in str(answer.get("message")):
        return "generation without a model"
    if isinstance(failure, ServerError) and label == GENERATE and status == 503 and isinstance(answer, dict) \
            and UNREACHABLE.match(str(answer.get("message"))):
        return "generation on an account whose server is not running"
    if isinstance(failure, RejectedPositiveData) and label == GENERATE and status == 422 \
            and isinstance(answer, dict) and str(answer.get("message")).startswith(UNSENDABLE):
        return "generation on an account stored unchecked with credentials no HTTP header can carry"
    if isinstance(failure, RejectedPositiveData) and label in ACCOUNT_WRITES and status == 422 \
            and isinstance(answer, dict) and _only_about(answer.get("errors"), "credentials"):
        return "credentials the provider check refuses"
    if isinstance(failure, RejectedPositiveData) and label in NO_MOVE and status == 422 \
            and isinstance(answer, dict) and answer.get("errors") == {"workspace_uuid": [answer.get("message")]}:
        return "an object does not move to another workspace"
    if isinstance(failure, RejectedPositiveData) and label in GRAPH_OPERATIONS and status == 422 \
            and isinstance(body, dict) and ("nodes" in body or "edges" in body) and isinstance(answer, dict) \
            and _graph_errors(answer.get("errors")):
        return "a whole-graph rule"
    return None


def _json(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def install_hooks(schema, world: World, app) -> dict[str, int]:
    """The hooks on ``schema``; returns the count of excused failures by reason (for the summary)."""
    excused: dict[str, int] = {}

    @schema.hook
    def map_case(context, case):
        if _phase(case) is not TestPhase.STATEFUL:  # the stateful phase follows links to its own resources
            _real_targets(case, world)
        _within_rules_beyond_openapi(case)
        _short_waits(case)
        _no_provider_check(case)
        return case

    @schema.hook
    def after_call(context, case, response):
        if case.method.upper() != "GET" and _phase(case) is not TestPhase.STATEFUL:
            with app.app_context():
                world.restore()

    @schema.hook
    def filter_failure(context, failure, case, response):
        reason = excuse(failure, case.operation.label, response.status_code, _json(response), case.body)
        if reason is not None:
            excused[reason] = excused.get(reason, 0) + 1
        return reason is None

    return excused


@dataclass
class Summary:
    """What ``st run`` prints at the end, from the engine's events."""

    statistic: Statistic = field(default_factory=Statistic)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    scenarios: dict[str, int] = field(default_factory=dict)
    # The stateful phase's transitions: (from the document's links, inferred by schemathesis).
    links: tuple[int, int] = (0, 0)
    # Status codes each operation answered.
    statuses: dict[str, set[int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def consume(self, stream) -> Summary:
        errored: set[str] = set()  # scenarios that ended in an error the engine did not report itself
        for event in stream:
            if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
                self.statistic.on_scenario_finished(event.recorder)
                for case_id, node in event.recorder.cases.items():
                    interaction = event.recorder.interactions.get(case_id)
                    if interaction is not None and interaction.response is not None:
                        self.statuses.setdefault(node.value.operation.label, set()).add(
                            interaction.response.status_code)
                self.scenarios[event.phase.value] = self.scenarios.get(event.phase.value, 0) + 1
                if event.status == Status.ERROR:
                    errored.add(f"{event.phase.value} {event.label}")
            elif isinstance(event, events.NonFatalError):
                self.errors.append(f"{event.label}: {event.info.format()}")
            elif isinstance(event, events.FatalError):
                self.errors.append(f"fatal: {event.exception!r}")
            elif isinstance(event, events.PhaseStarted) and isinstance(event.payload, events.StatefulPhasePayload):
                inferred = event.payload.inferred_transitions
                self.links = (event.payload.transitions_total - inferred, inferred)
            elif isinstance(event, events.PhaseFinished):
                skip = event.phase.skip_reason
                self.phases[event.phase.name.value] = event.status.value + (f" ({skip.value})" if skip else "")
        if errored and not self.errors:
            self.errors.extend(f"{label}: scenario error" for label in sorted(errored))
        self.seconds = time.monotonic() - self.started
        return self

    @property
    def failures(self) -> int:
        return self.statistic.total_failures

    @property
    def never_succeeded(self) -> list[str]:
        """Operations that never answered 2xx: only their refusals were checked."""
        return sorted(label for label, codes in self.statuses.items() if not any(200 <= c < 300 for c in codes))

    def line(self) -> str:
        stat = self.statistic
        return (f"{len(stat.tested_operations)} operations, {stat.total_cases} cases, {self.failures} failures, "
                f"{len(self.errors)} errors, {self.seconds:.0f} s; phases {self.phases}; scenarios {self.scenarios}; "
                f"links {self.links[0]} documented + {self.links[1]} inferred; "
                f"never 2xx: {self.never_succeeded}")

    def report(self, config) -> str:
        parts = [self.line()]
        for label, groups in self.statistic.failures.items():
            for index, group in enumerate(groups.values(), 1):
                parts.append(f"{label}\n" + group.format(index=index, curl=group.code_sample, config=config))
        parts.extend(self.errors)
        return "\n\n".join(parts)
