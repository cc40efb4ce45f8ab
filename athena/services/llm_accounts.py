"""Providers, accounts and large language models (docs/llm.md): workspace-scoped like the rest
of the API, secrets encrypted (athena/crypto.py) and masked, accounts checked against their
provider (a models listing) before they are saved, models synced by an RQ job."""
from __future__ import annotations

import logging
import uuid as uuid_lib
from decimal import Decimal
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Select, select, update
from sqlalchemy.orm import joinedload

from athena.crypto import decrypt, encrypt, is_encrypted
from athena.errors import Conflict, Forbidden, Invalid, NotFound, ProviderFailure, ProviderRefused
from athena.extensions import db
from athena.models import Account, LargeLanguageModel, Provider, User, Workspace
from athena.redis_client import get_queue
from athena.services.access import (
    NOT_FOUND, get_workspace, like_pattern, member_workspace_id_list, member_workspace_ids, require_write,
)
from athena.services.llm_catalog import CREDENTIAL_FIELDS, CREDENTIAL_TYPES, known_model
from athena.services.llm_client import Credentials, account_credentials, list_models
from athena.timeutil import utcnow

log = logging.getLogger(__name__)

SYNC_JOB = "jobs.llm_sync.sync_account_models"
MASK = "…"
READ_ONLY = "Built-in providers are read-only."
OTHER_WORKSPACE = "An object cannot move to another workspace: workspace_uuid must be its own (or left out)."


# -- masking --------------------------------------------------------------------------------------


def mask(secret: str) -> str:
    """First 3 and last 4 characters of a secret of 12 or more; ``…`` for a shorter one."""
    return f"{secret[:3]}{MASK}{secret[-4:]}" if len(secret) >= 12 else MASK


def secret_fields(provider: Provider) -> set[str]:
    return {f["name"] for f in (provider.authentication_config or {}).get("fields", []) if f.get("secret")}


def public_credentials(account: Account) -> dict[str, Any]:
    """The account's credentials as the API shows them: secret fields masked (decrypted only to
    mask them; an undecryptable one shows as the bare mask)."""
    clear = _clear_or_none(account)
    shown: dict[str, Any] = {}
    secrets = secret_fields(account.provider)
    for key, stored in (account.credentials or {}).items():
        value = (clear or {}).get(key, stored)
        if key in secrets:
            if isinstance(value, dict):
                shown[key] = {name: mask(str(item)) if clear else MASK for name, item in value.items()}
            else:
                shown[key] = mask(str(value)) if clear and value else MASK
        else:
            shown[key] = value
    return shown


def _clear_or_none(account: Account) -> dict[str, Any] | None:
    try:
        creds = account_credentials(account)
    except Exception:  # noqa: BLE001 - an undecryptable secret is shown as the bare mask
        return None
    return {"api_key": creds.api_key, "organization": creds.organization, "extra_headers": creds.extra_headers,
            "base_url": (account.credentials or {}).get("base_url")}


# -- providers ------------------------------------------------------------------------------------


def visible_providers(user: User) -> Select:
    """Built-ins and the custom providers of the user's workspaces."""
    return select(Provider).where(Provider.deleted_at.is_(None), Provider.workspace_id.is_(None)
                                  | Provider.workspace_id.in_(member_workspace_ids(user)))


def get_provider(user: User, uuid: str, *, write: bool = False) -> Provider:
    provider = db.session.execute(visible_providers(user).where(Provider.uuid == str(uuid))).scalar_one_or_none()
    if provider is None:
        raise NotFound(NOT_FOUND)
    if write:
        if provider.is_builtin:
            raise Forbidden(READ_ONLY)
        require_write(user, provider.workspace_id)
    return provider


def provider_list_query(user: User, args: dict[str, Any]) -> Select:
    query = visible_providers(user)
    if args.get("workspace_uuid"):
        ids = member_workspace_id_list(user, args["workspace_uuid"])
        query = query.where(Provider.workspace_id.is_(None) | Provider.workspace_id.in_(ids))
    if "is_builtin" in args:
        query = query.where(Provider.is_builtin.is_(args["is_builtin"]))
    if args.get("search"):
        pattern = like_pattern(args["search"])
        query = query.where(Provider.name.ilike(pattern, escape="\\") | Provider.slug.ilike(pattern, escape="\\"))
    column = getattr(Provider, args.get("sort_by") or "id")
    order = column.asc() if args.get("sort_direction", "asc") == "asc" else column.desc()
    return query.order_by(order, Provider.id.asc())


def _check_authentication_config(config: dict[str, Any]) -> dict[str, Any]:
    fields = []
    for index, item in enumerate(config.get("fields") or []):
        name = item["name"]
        if name not in CREDENTIAL_FIELDS:
            message = f"authentication_config.fields[{index}].name must be one of {', '.join(CREDENTIAL_FIELDS)}"
            raise Invalid(message, errors={"authentication_config": [message]})
        fields.append({"label": name.replace("_", " ").capitalize(), "type": CREDENTIAL_TYPES[name],
                       "required": False, "secret": name in ("api_key", "extra_headers"), "description": None,
                       **{key: value for key, value in item.items() if value is not None}})
    fields = list({f["name"]: f for f in fields}.values())  # a field named twice: the last one counts
    for name in ("api_key", "extra_headers"):  # a key is always a secret, whatever the config says
        for f in fields:
            if f["name"] == name:
                f["secret"] = True
    return {"fields": fields}


def _slug_taken(slug: str, workspace_id: int, exclude_id: int | None = None) -> bool:
    query = select(Provider.id).where(Provider.slug == slug, Provider.deleted_at.is_(None),
                                      Provider.workspace_id.is_(None) | (Provider.workspace_id == workspace_id))
    if exclude_id is not None:
        query = query.where(Provider.id != exclude_id)
    return db.session.execute(query.limit(1)).first() is not None


def _apply_provider(provider: Provider, body: dict[str, Any]) -> None:
    if "slug" in body and _slug_taken(body["slug"], provider.workspace_id, provider.id):
        message = f"The slug {body['slug']!r} is taken in this workspace (built-ins included)."
        raise Conflict(message, errors={"slug": [message]})
    if "authentication_config" in body:
        body = {**body, "authentication_config": _check_authentication_config(body["authentication_config"])}
    for key, value in body.items():
        setattr(provider, key, value)


def _own_workspace(body: dict[str, Any], workspace_id: int) -> dict[str, Any]:
    """PUT: a workspace_uuid equal to the object's is ignored, another one is a 422."""
    body = dict(body)
    uuid = body.pop("workspace_uuid", None)
    if uuid is not None:
        own = db.session.get(Workspace, workspace_id)
        if own is None or own.uuid != uuid:
            raise Invalid(OTHER_WORKSPACE, errors={"workspace_uuid": [OTHER_WORKSPACE]})
    return body


def create_provider(user: User, body: dict[str, Any]) -> Provider:
    body = dict(body)
    workspace = get_workspace(user, body.pop("workspace_uuid"), write=True)
    provider = Provider(workspace_id=workspace.id, user_id=user.id, is_builtin=False,
                        authentication_config=_check_authentication_config(
                            {"fields": [{"name": "api_key", "required": True}, {"name": "base_url", "required": True}]}))
    _apply_provider(provider, body)
    db.session.add(provider)
    db.session.commit()
    return provider


def update_provider(user: User, provider: Provider, body: dict[str, Any]) -> Provider:
    _apply_provider(provider, _own_workspace(body, provider.workspace_id))
    db.session.commit()
    return provider


def delete_provider(provider: Provider) -> None:
    in_use = db.session.execute(select(Account.id).where(Account.provider_id == provider.id,
                                                         Account.deleted_at.is_(None)).limit(1)).first()
    if in_use is not None:
        raise Conflict("The provider still has accounts: delete them first.")
    provider.deleted_at = utcnow()
    db.session.commit()


# -- accounts -------------------------------------------------------------------------------------


def visible_accounts(user: User) -> Select:
    return select(Account).where(Account.deleted_at.is_(None), Account.workspace_id.in_(member_workspace_ids(user)))


def get_account(user: User, uuid: str, *, write: bool = False) -> Account:
    account = db.session.execute(visible_accounts(user).where(Account.uuid == str(uuid))).scalar_one_or_none()
    if account is None:
        raise NotFound(NOT_FOUND)
    if write:
        require_write(user, account.workspace_id)
    return account


def account_list_query(user: User, args: dict[str, Any]) -> Select:
    query = visible_accounts(user)
    if args.get("workspace_uuid"):
        query = query.where(Account.workspace_id.in_(member_workspace_id_list(user, args["workspace_uuid"])))
    if args.get("provider_uuid"):
        query = query.where(Account.provider_id.in_(select(Provider.id).where(Provider.uuid == args["provider_uuid"])))
    if "is_default" in args:
        query = query.where(Account.is_default.is_(args["is_default"]))
    if args.get("search"):
        query = query.where(Account.name.ilike(like_pattern(args["search"]), escape="\\"))
    column = getattr(Account, args.get("sort_by") or "created_at")
    order = column.asc() if args.get("sort_direction", "desc") == "asc" else column.desc()
    return query.order_by(order, Account.id.asc() if args.get("sort_direction") == "asc" else Account.id.desc())


def check_write_access(user: User, workspace_uuid: Any) -> None:
    """Before a create body is validated: the caller may write in the workspace it names (403/404
    now rather than a 422 about the rest of the body). A missing or malformed one is left to the
    validation."""
    if isinstance(workspace_uuid, str) and workspace_uuid:
        get_workspace(user, workspace_uuid, write=True)


def _provider_for(user: User, provider_uuid: str, workspace_id: int) -> Provider:
    provider = db.session.execute(visible_providers(user).where(Provider.uuid == provider_uuid)).scalar_one_or_none()
    if provider is None or provider.workspace_id not in (None, workspace_id):
        message = "No such provider for this workspace."
        raise NotFound(message, errors={"provider_uuid": [message]})
    return provider


def _merge_credentials(provider: Provider, stored: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """The credentials to store: secret fields encrypted; a secret sent back as its mask (or left
    out) keeps the stored value; ``null`` removes an optional field."""
    secrets = secret_fields(provider)
    current = _decrypted(stored)
    merged = dict(stored)
    for key, value in (given or {}).items():
        if value is None or value == "" or value == {}:
            merged.pop(key, None)
            continue
        if key in secrets:
            if isinstance(value, dict):
                old = current.get(key) if isinstance(current.get(key), dict) else {}
                value = {name: old.get(name) if item in (MASK, mask(str(old.get(name) or ""))) and name in old
                         else item for name, item in value.items()}
                if any(MASK in str(item) for item in value.values()):
                    message = f"credentials.{key}: send each value itself (a masked value only keeps a stored one)"
                    raise Invalid(message, errors={f"credentials.{key}": [message]})
                merged[key] = {name: encrypt(str(item)) for name, item in value.items()}
            elif isinstance(current.get(key), str) and value in (MASK, mask(current[key])):
                continue  # the mask sent back: the stored secret stays
            elif MASK in value:
                message = (f"credentials.{key}: send the secret itself (a masked value only keeps the "
                           "secret stored now)")
                raise Invalid(message, errors={f"credentials.{key}": [message]})
            else:
                merged[key] = encrypt(value)
        else:
            merged[key] = value.rstrip("/") if key == "base_url" else value
    for f in (provider.authentication_config or {}).get("fields", []):
        if f.get("required") and not merged.get(f["name"]):
            message = f"credentials.{f['name']} is required by the provider {provider.slug!r}."
            raise Invalid(message, errors={f"credentials.{f['name']}": [message]})
    unknown = sorted(set(merged) - set(CREDENTIAL_FIELDS))
    if unknown:
        message = f"credentials.{unknown[0]} is not a credential field."
        raise Invalid(message, errors={f"credentials.{unknown[0]}": [message]})
    return merged


def _decrypted(stored: dict[str, Any]) -> dict[str, Any]:
    def clear(value: Any) -> Any:
        if isinstance(value, str) and is_encrypted(value):
            try:
                return decrypt(value)
            except Exception:  # noqa: BLE001 - an unreadable secret cannot match a mask
                return None
        if isinstance(value, dict):
            return {k: clear(v) for k, v in value.items()}
        return value

    return {key: clear(value) for key, value in stored.items()}


def verify(account: Account) -> list[dict[str, Any]]:
    """Check the credentials with a models listing; 422 (ProviderRefused) with the provider's
    reason when the key or URL is wrong or unreachable."""
    credentials: Credentials = account_credentials(account)
    try:
        return list_models(credentials)
    except ProviderRefused:
        raise
    except ProviderFailure as exc:
        raise ProviderRefused(f"The account could not be checked against the provider: {exc.message}",
                              errors=exc.errors or {"credentials": [exc.message]}) from None


def _make_default(account: Account) -> None:
    db.session.execute(update(Account).where(Account.workspace_id == account.workspace_id, Account.id != account.id,
                                             Account.is_default.is_(True)).values(is_default=False))


def create_account(user: User, body: dict[str, Any], *, check: bool = True) -> Account:
    body = dict(body)
    workspace = get_workspace(user, body.pop("workspace_uuid"), write=True)
    provider = _provider_for(user, body.pop("provider_uuid"), workspace.id)
    has_default = db.session.execute(select(Account.id).where(
        Account.workspace_id == workspace.id, Account.deleted_at.is_(None), Account.is_default.is_(True))
        .limit(1)).first() is not None
    account = Account(workspace_id=workspace.id, user_id=user.id, provider=provider, provider_id=provider.id,
                      name=body["name"], is_default=body.get("is_default", not has_default),
                      credentials=_merge_credentials(provider, {}, body.get("credentials")), sync_status="pending")
    if check:
        verify(account)
        account.last_verified_at = utcnow()
    db.session.add(account)
    db.session.flush()
    if account.is_default:
        _make_default(account)
    db.session.commit()
    enqueue_sync(account)
    return account


def update_account(user: User, account: Account, body: dict[str, Any], *, check: bool = True) -> Account:
    body = _own_workspace(body, account.workspace_id)
    changed_credentials = "credentials" in body or "provider_uuid" in body
    if "provider_uuid" in body:
        provider = _provider_for(user, body.pop("provider_uuid"), account.workspace_id)
        account.provider, account.provider_id = provider, provider.id
    if "credentials" in body or changed_credentials:
        account.credentials = _merge_credentials(account.provider, dict(account.credentials or {}),
                                                 body.pop("credentials", None))
    for key in ("name", "is_default"):
        if key in body:
            setattr(account, key, body[key])
    if check:
        try:
            verify(account)
        except ProviderFailure:
            db.session.rollback()
            raise
        account.last_verified_at = utcnow()
    if account.is_default:
        _make_default(account)
    db.session.commit()
    if changed_credentials or check:
        enqueue_sync(account)
    return account


def delete_account(account: Account) -> None:
    now = utcnow()
    account.deleted_at, account.is_default = now, False
    db.session.execute(update(LargeLanguageModel).where(LargeLanguageModel.account_id == account.id,
                                                        LargeLanguageModel.deleted_at.is_(None)).values(deleted_at=now))
    db.session.commit()


def enqueue_sync(account: Account) -> Account:
    """Queue the model sync (the job takes the account's id only: no secret in its arguments).
    Redis away: the account stays ``pending`` and a later sync request queues it."""
    try:
        get_queue().enqueue(SYNC_JOB, account.id, job_id=f"athena-llm-sync-{account.uuid}-{uuid_lib.uuid4().hex[:12]}",
                            job_timeout=int(current_app.config.get("LLM_VERIFY_TIMEOUT", 15) * 4 + 30),
                            result_ttl=300, failure_ttl=24 * 3600)
    except RedisError:
        log.warning("could not queue the model sync of account %s (Redis unreachable)", account.uuid)
        return account
    db.session.execute(update(Account).where(Account.id == account.id).values(sync_status="queued"))
    db.session.commit()
    db.session.refresh(account)
    return account


def sync_models(account_id: int) -> str:
    """The job's work: list the provider's models, upsert them merged with the known-models table,
    soft-delete the ones no longer listed. Idempotent; a failure is stored on the account."""
    account = db.session.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        return "missing"
    account.sync_status = "syncing"
    db.session.commit()
    try:
        listed = list_models(account_credentials(account))
    except Exception as exc:  # noqa: BLE001 - stored for the API to show
        db.session.rollback()
        message = getattr(exc, "message", None) or str(exc)
        db.session.execute(update(Account).where(Account.id == account_id)
                           .values(sync_status="failed", sync_error=message[:2000]))
        db.session.commit()
        return f"failed: {message}"
    rows = {row.model_id: row for row in db.session.execute(
        select(LargeLanguageModel).where(LargeLanguageModel.account_id == account.id)).scalars()}
    now = utcnow()
    seen = set()
    for item in listed:
        model_id = str(item["id"])[:255]
        if model_id in seen:
            continue
        seen.add(model_id)
        row = rows.get(model_id) or LargeLanguageModel(account_id=account.id, model_id=model_id)
        _describe_model(row, account, item)
        row.deleted_at = None
        row.updated_at = now
        db.session.add(row)
    for model_id, row in rows.items():
        if model_id not in seen and row.deleted_at is None:
            row.deleted_at = now
    account.sync_status, account.sync_error, account.models_synced_at = "synced", None, now
    db.session.commit()
    return f"synced {len(seen)} models"


def _describe_model(row: LargeLanguageModel, account: Account, item: dict[str, Any]) -> None:
    known = known_model(row.model_id) or {}
    row.workspace_id, row.provider_id = account.workspace_id, account.provider_id
    row.name = row.model_id
    row.owned_by = item.get("owned_by") or known.get("owned_by")
    row.family = known.get("family")
    row.is_known = bool(known)
    row.context_window = known.get("context_window")
    row.max_output_tokens = known.get("max_output_tokens")
    for capability in ("tools", "json_schema", "vision"):
        setattr(row, f"supports_{capability}", bool(known.get(f"supports_{capability}", False)))
    row.supports_streaming = bool(known.get("supports_streaming", True))
    for side in ("input", "output"):
        price = known.get(f"{side}_price_per_million")
        setattr(row, f"{side}_price_per_million", None if price is None else Decimal(str(price)))


# -- large language models ----------------------------------------------------------------------


def visible_models(user: User) -> Select:
    return (select(LargeLanguageModel)
            .join(Account, Account.id == LargeLanguageModel.account_id)
            .where(LargeLanguageModel.deleted_at.is_(None), Account.deleted_at.is_(None),
                   LargeLanguageModel.workspace_id.in_(member_workspace_ids(user)))
            .options(joinedload(LargeLanguageModel.account), joinedload(LargeLanguageModel.provider)))


def get_model(user: User, uuid: str) -> LargeLanguageModel:
    model = db.session.execute(visible_models(user).where(LargeLanguageModel.uuid == str(uuid))).unique().scalar_one_or_none()
    if model is None:
        raise NotFound(NOT_FOUND)
    return model


def model_list_query(user: User, args: dict[str, Any]) -> Select:
    query = visible_models(user)
    if args.get("workspace_uuid"):
        query = query.where(LargeLanguageModel.workspace_id.in_(member_workspace_id_list(user, args["workspace_uuid"])))
    if args.get("account_uuid"):
        query = query.where(Account.uuid == args["account_uuid"])
    if args.get("provider_uuid"):
        query = query.where(LargeLanguageModel.provider_id.in_(
            select(Provider.id).where(Provider.uuid == args["provider_uuid"])))
    if args.get("provider"):
        query = query.where(LargeLanguageModel.provider_id.in_(select(Provider.id).where(Provider.slug == args["provider"])))
    for capability in args.get("capability") or ():
        query = query.where(getattr(LargeLanguageModel, f"supports_{capability}").is_(True))
    if "is_known" in args:
        query = query.where(LargeLanguageModel.is_known.is_(args["is_known"]))
    if args.get("search"):
        pattern = like_pattern(args["search"])
        query = query.where(LargeLanguageModel.model_id.ilike(pattern, escape="\\")
                            | LargeLanguageModel.owned_by.ilike(pattern, escape="\\"))
    column = getattr(LargeLanguageModel, args.get("sort_by") or "model_id")
    direction = args.get("sort_direction", "asc")
    order = (column.asc() if direction == "asc" else column.desc()).nulls_last()
    return query.order_by(order, LargeLanguageModel.id.asc())

