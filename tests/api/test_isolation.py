"""Workspace isolation, proven for every endpoint that takes an id in its path.

The endpoints come from the app's own OpenAPI document, so an endpoint added later is covered
without touching this file. Each path parameter is filled with the matching object of the
victim's workspace (by the path segment before it, then by the parameter's name; a random
uuid otherwise), a body is built from the documented request schema, and the caller is a
member of ANOTHER workspace with a valid token. Every call must answer 404 and leave every
row of every table exactly as it was."""
from __future__ import annotations

from sqlalchemy import inspect as sa_inspect

from athena.extensions import db
from athena.models import WorkflowApproval, WorkflowExecution
from athena.timeutil import utcnow
from tests.api.helpers import METHODS, changed_tables, fill_path, request_parts, snapshot
from tests.factories import headers_for, make_llm_objects, make_user, make_workflow, make_workspace

# Operations that legitimately answer an outsider with something other than 404, each with
# the reason. Keep this empty unless an endpoint is public by design (e.g. a webhook that
# authenticates with a per-workflow secret instead of workspace membership).
NOT_WORKSPACE_SCOPED: dict[tuple[str, str], str] = {}


def _victim() -> dict[str, str]:
    owner, editor = make_user(), make_user()
    workspace = make_workspace(owner, "Victim", members={editor: "editor"})
    workflow = make_workflow(workspace, owner, name="Victim flow", webhook_secret="v" * 32)
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="paused", requires_human_review=True, started_at=utcnow())
    db.session.add(execution)
    db.session.flush()
    approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending",
                                message="Ship it?")
    db.session.add(approval)
    db.session.commit()
    provider, account, model = make_llm_objects(workspace, owner)
    return {"workspace": workspace.uuid, "workflow": workflow.uuid, "execution": execution.uuid,
            "approval": approval.uuid, "member": editor.uuid, "provider": provider.uuid, "account": account.uuid,
            "llm": model.uuid}


def test_every_id_taking_endpoint_is_404_to_another_workspace(app, client):
    victim = _victim()
    attacker = make_user()
    own = make_workspace(attacker, "Attacker's own")
    make_workflow(own, attacker, name="Attacker flow")
    headers = headers_for(attacker)
    spec = client.get("/api/v1/openapi.json").json
    assert set(sa_inspect(db.engine).get_table_names()) >= {t.name for t in db.metadata.sorted_tables}

    probed, problems = [], []
    for path, item in spec["paths"].items():
        if "{" not in path:
            continue
        for method in METHODS:
            if method not in item or (method.upper(), path) in NOT_WORKSPACE_SCOPED:
                continue
            body, query = request_parts(spec, item[method], attacker.email)
            url = fill_path(path, victim)
            before = snapshot()
            response = client.open(url, method=method.upper(), json=body, query_string=query, headers=headers)
            probed.append(f"{method.upper()} {path}")
            if response.status_code != 404 or not response.is_json:
                problems.append(f"{method.upper()} {url} body={body!r} -> {response.status_code} "
                                f"{response.get_data(as_text=True)[:300]}")
            changed = changed_tables(before)
            if changed:
                problems.append(f"{method.upper()} {url} changed rows in {changed}")
    # the document really was enumerated (the Foundation endpoints at least)
    assert {"GET /api/v1/workspaces/{uuid}", "DELETE /api/v1/workspaces/{uuid}/members/{user_uuid}",
            "PUT /api/v1/workflows/{uuid}", "POST /api/v1/workflows/{uuid}/favorite"} <= set(probed)
    assert not problems, "\n".join(problems)

    # and the same calls by the victim's own editor reach the objects (so the 404s above were earned)
    editor_headers = {"Authorization": headers_for_member(victim["member"])}
    for path in ("/api/v1/workspaces/{uuid}", "/api/v1/workflows/{uuid}"):
        assert client.get(fill_path(path, victim), headers=editor_headers).status_code == 200


def headers_for_member(user_uuid: str) -> str:
    from athena.models import User

    user = db.session.execute(db.select(User).where(User.uuid == user_uuid)).scalar_one()
    return headers_for(user)["Authorization"]
