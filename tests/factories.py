"""Factories for models: plain functions that write real rows."""
from __future__ import annotations

import itertools

from athena.auth import hash_password, issue_token
from athena.extensions import db
from athena.models import Organization, User, Workflow, Workspace, WorkspaceMember
from athena.timeutil import utcnow

_counter = itertools.count(1)
PASSWORD = "correct horse battery"
# Hashing with argon2 is slow on purpose; factories reuse one hash.
_PASSWORD_HASH: str | None = None


def make_user(email: str | None = None, organization: Organization | None = None, **kw) -> User:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = hash_password(PASSWORD)
    n = next(_counter)
    user = User(email=email or f"user{n}@example.com", name=f"User {n}", password_hash=_PASSWORD_HASH,
                organization=organization, **kw)
    db.session.add(user)
    db.session.commit()
    return user


def make_organization(name: str | None = None) -> Organization:
    org = Organization(name=name or f"Org {next(_counter)}")
    db.session.add(org)
    db.session.commit()
    return org


def make_workspace(owner: User, name: str | None = None, members: dict[User, str] | None = None) -> Workspace:
    workspace = Workspace(name=name or f"Workspace {next(_counter)}", user_id=owner.id,
                          organization_id=owner.organization_id)
    db.session.add(workspace)
    db.session.flush()
    db.session.add(WorkspaceMember(workspace_id=workspace.id, user_id=owner.id, role="owner", created_at=utcnow()))
    for user, role in (members or {}).items():
        db.session.add(WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=role, created_at=utcnow()))
    db.session.commit()
    return workspace


def token_for(user: User, kind: str = "session") -> str:
    clear, _ = issue_token(user, kind)
    db.session.commit()
    return clear


def headers_for(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


def linear_graph(count: int = 2, trigger: str = "manual") -> tuple[list[dict], list[dict]]:
    nodes = [{"id": "start", "type": trigger, "parameters": {}}]
    for i in range(1, count):
        nodes.append({"id": f"n{i}", "type": "set", "parameters": {"fields": {"i": i}}})
    edges = [{"id": f"e{i}", "source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, count)]
    return nodes, edges


def make_workflow(workspace: Workspace, user: User, nodes: list | None = None, edges: list | None = None,
                  **kw) -> Workflow:
    if nodes is None:
        nodes, edges = linear_graph()
    workflow = Workflow(workspace_id=workspace.id, user_id=user.id, name=kw.pop("name", f"Workflow {next(_counter)}"),
                        nodes=nodes, edges=edges or [], variables=kw.pop("variables", {}), **kw)
    db.session.add(workflow)
    db.session.commit()
    return workflow


def make_llm_objects(workspace: Workspace, user: User, key: str = "sk-factory-secret-key-0000"):
    """A custom provider of the workspace, an account of it (encrypted key, verify skipped) and one
    synced model: rows written directly (no provider is asked)."""
    from athena.crypto import encrypt
    from athena.models import Account, LargeLanguageModel, Provider

    provider = Provider(workspace_id=workspace.id, user_id=user.id, slug=f"custom_{next(_counter)}",
                        name="Custom gateway", is_builtin=False, base_url="https://llm.example.com/v1",
                        authentication_config={"fields": [
                            {"name": "api_key", "label": "API key", "type": "string", "required": False,
                             "secret": True, "description": None},
                            {"name": "base_url", "label": "Base URL", "type": "url", "required": False,
                             "secret": False, "description": None}]})
    db.session.add(provider)
    db.session.flush()
    account = Account(workspace_id=workspace.id, user_id=user.id, provider_id=provider.id, name="Factory account",
                      is_default=False, credentials={"api_key": encrypt(key)}, sync_status="synced")
    db.session.add(account)
    db.session.flush()
    model = LargeLanguageModel(workspace_id=workspace.id, account_id=account.id, provider_id=provider.id,
                               model_id="gpt-4.1-mini", name="gpt-4.1-mini", is_known=True, context_window=1047576)
    db.session.add(model)
    db.session.commit()
    return provider, account, model
