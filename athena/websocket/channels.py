"""The two WebSocket channels (handlers of the routes :func:`athena.websocket.init_app` registers):
the handshake's token and access checks, a snapshot, then every logged event after ``after_seq``,
then the live relay from the Redis event log (see :mod:`athena.websocket.relay`).

``/api/v1/ws/workflow-executions/<uuid>``  one execution; closes (1000) after
                                           ``execution.finished``
``/api/v1/ws/workspaces/<uuid>/executions``  status changes of every execution of a workspace;
                                           open until the client closes

Auth uses the API tokens: ``?token=``, ``Sec-WebSocket-Protocol: bearer, <token>`` (browsers;
the server then selects ``bearer``), ``Authorization`` or ``X-Multiplai-Authorization``.
Refusals are an ``{"event": "error", ...}`` message followed by close code 4401
(unauthenticated), 4404 (not found / not a member) or 4400 (bad ``after_seq``). A socket that
falls more than ``WS_QUEUE_LIMIT`` events behind gets such an error message and close code 1013
(reconnect with ``after_seq`` = the last seq received); 1011 when the event log cannot be read.
The log is read once per process for all sockets (:mod:`athena.websocket.fanout`)."""
from __future__ import annotations

import time
from typing import Any, Callable

from flask import Flask, current_app, request
from simple_websocket import ConnectionClosed
from sqlalchemy import select

from athena.auth import UNAUTHENTICATED, token_from_request, user_for_token
from athena.runs import wire
from athena.runs.eventlog import EventLog, event_log_for_app, stream_key, workspace_stream_key
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, Workspace
from athena.schemas.executions import ExecutionSchema
from athena.services.access import NOT_FOUND, member_workspace_ids, visible_executions
from athena.services.execution_queries import include
from athena.websocket.fanout import DEFAULT_QUEUE_LIMIT, hub_for
from athena.websocket.relay import Finished, Recheck, Refused, Relay, refuse, registry_for, send_json

SUBPROTOCOL = "bearer"
FINISHED_EVENT = wire.EXECUTION_FINISHED
EXECUTION_PATH = "/api/v1/ws/workflow-executions/<execution_uuid>"
WORKSPACE_PATH = "/api/v1/ws/workspaces/<workspace_uuid>/executions"


def execution_snapshot(execution: WorkflowExecution, user: User) -> dict[str, Any]:
    """The execution exactly as ``GET /api/v1/workflow-executions/<uuid>?with=workflowExecutionData``
    shows it (call it inside the DB session the execution was loaded in)."""
    include(user, [execution], {"with_": "workflowExecutionData"})
    return ExecutionSchema().dump(execution)


def request_token() -> str | None:
    """The token of the handshake: query parameter, subprotocol pair, or the API headers."""
    query = (request.args.get("token") or "").strip()
    if query:
        return query
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    lowered = [p.lower() for p in offered]
    if SUBPROTOCOL in lowered:
        index = lowered.index(SUBPROTOCOL)
        if index + 1 < len(offered):
            return offered[index + 1]
    return token_from_request()


def _user(token: str | None) -> User:
    found = user_for_token(token)
    if found is None:
        raise Refused(4401, UNAUTHENTICATED)
    return found[0]


def _after_seq(default: int) -> int:
    raw = request.args.get("after_seq")
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise Refused(4400, "after_seq must be a non-negative integer.")
    return value


def _load_execution(token: str | None, execution_uuid: str) -> tuple[WorkflowExecution, User]:
    user = _user(token)
    execution = db.session.execute(
        visible_executions(user).where(WorkflowExecution.uuid == execution_uuid)
    ).scalar_one_or_none()
    if execution is None:
        raise Refused(4404, NOT_FOUND)
    return execution, user


def _check_workspace(token: str | None, workspace_uuid: str) -> int:
    """The caller's user id, if they are a member of the workspace."""
    user = _user(token)
    found = db.session.execute(
        select(Workspace.id).where(Workspace.uuid == workspace_uuid, Workspace.deleted_at.is_(None),
                                   Workspace.id.in_(member_workspace_ids(user)))
    ).scalar_one_or_none()
    if found is None:
        raise Refused(4404, NOT_FOUND)
    return user.id


class WorkflowVisibility:
    """Events of other members' private workflows are not relayed (checked once per workflow
    and socket). A workflow's owner and visibility are shared by the sockets of a process for
    ``SHARED_SECONDS``, so a new workflow's first event costs one query per process, not one
    per socket."""

    SHARED_SECONDS = 5.0
    _shared: dict[str, tuple[float, tuple[str, int] | None]] = {}

    def __init__(self, app: Flask, user_id: int) -> None:
        self.app, self.user_id, self.known = app, user_id, {}

    def cached(self, event: dict[str, Any]) -> bool | None:
        """The verdict without a query: None when it is not known yet."""
        uuid = event.get("workflow_uuid")
        return True if uuid is None else self.known.get(uuid)

    def __call__(self, event: dict[str, Any]) -> bool:
        uuid = event.get("workflow_uuid")
        if uuid is None:
            return True
        if uuid not in self.known:
            found = self._owner_and_visibility(uuid)
            self.known[uuid] = found is not None and (found[0] != "private" or found[1] == self.user_id)
        return self.known[uuid]

    def _owner_and_visibility(self, uuid: str) -> tuple[str, int] | None:
        shared = self._shared.get(uuid)
        if shared is not None and time.monotonic() - shared[0] < self.SHARED_SECONDS:
            return shared[1]
        with self.app.app_context():
            try:
                row = db.session.execute(
                    select(Workflow.visibility, Workflow.user_id).where(Workflow.uuid == uuid)).first()
            finally:
                db.session.remove()
        found = (row[0], row[1]) if row is not None else None
        if len(self._shared) > 10_000:
            self._shared.clear()
        self._shared[uuid] = (time.monotonic(), found)
        return found


def _snapshot_message(execution: WorkflowExecution, user: User, last_seq: int) -> dict[str, Any]:
    return {"event": "snapshot", "execution": execution_snapshot(execution, user), "last_seq": last_seq}


def _relay(ws: Any, app: Flask, log: EventLog, key: str, cursor: int, recheck: Recheck, head: int,
           **kw: Any) -> Relay:
    """``head``: a seq the log is known to hold (the snapshot's ``last_seq``)."""
    return Relay(ws, log, key, cursor, recheck, hub_for(app), head=head, block_seconds=app.config["WS_POLL_SECONDS"],
                 recheck_seconds=app.config["WS_RECHECK_SECONDS"],
                 finish_grace_seconds=app.config["WS_FINISH_GRACE_SECONDS"],
                 queue_limit=int(app.config.get("WS_QUEUE_LIMIT", DEFAULT_QUEUE_LIMIT)),
                 direct_write=bool(app.config.get("WS_DIRECT_WRITE", True)), **kw)


def execution_channel(ws: Any, execution_uuid: str) -> None:
    app = current_app._get_current_object()
    log = event_log_for_app(app)
    key = stream_key(execution_uuid)
    token = request_token()
    # last_seq is read before the row: the snapshot is at least as new as the events up to
    # last_seq (the writer commits before it logs); anything newer is replayed after it.
    last_seq = log.last_seq(key)
    try:
        execution, user = _load_execution(token, execution_uuid)
        after_seq = _after_seq(0)
        snapshot = _snapshot_message(execution, user, last_seq)
        finished = bool(execution.is_finished)
    finally:
        db.session.remove()  # no session is held during the relay

    def recheck() -> Finished | None:
        try:
            current, user = _load_execution(token, execution_uuid)
            return Finished(_snapshot_message(current, user, log.last_seq(key))) if current.is_finished else None
        finally:
            db.session.remove()

    tail = log.read_after(key, last_seq - 1, count=1) if last_seq else []
    send_json(ws, snapshot)
    relay = _relay(ws, app, log, key, after_seq, recheck, last_seq, stop_event=FINISHED_EVENT)
    if tail and tail[0].get("event") == FINISHED_EVENT:
        relay.end_seq = tail[0]["seq"]
    elif finished and not last_seq:
        ws.close(reason=1000)  # finished and its log expired: the snapshot is all there is
        return
    elif finished:
        relay.finish_within_grace()  # the writer may still be appending the final event
    relay.run()


def workspace_channel(ws: Any, workspace_uuid: str) -> None:
    app = current_app._get_current_object()
    log = event_log_for_app(app)
    key = workspace_stream_key(workspace_uuid)
    token = request_token()
    try:
        user_id = _check_workspace(token, workspace_uuid)
    finally:
        db.session.remove()
    last_seq = log.last_seq(key)
    after_seq = _after_seq(last_seq)

    def recheck() -> None:
        try:
            _check_workspace(token, workspace_uuid)
        finally:
            db.session.remove()

    send_json(ws, {"event": "snapshot", "workspace_uuid": workspace_uuid, "last_seq": last_seq})
    _relay(ws, app, log, key, after_seq, recheck, last_seq, workspace=True,
           visible=WorkflowVisibility(app, user_id)).run()


def serve(channel: str, handler: Callable[[Any, str], None], ws: Any, uuid: str) -> None:
    """Run a channel's handler for one socket: refusals become their close codes, a client that
    went away is no error, anything else is logged and closes the socket with 1011."""
    app = current_app._get_current_object()
    with registry_for(app).track(f"{channel}:{uuid}"):
        try:
            handler(ws, uuid)
        except Refused as refused:
            try:
                refuse(ws, refused)
            except (ConnectionClosed, OSError):
                pass
        except (ConnectionClosed, OSError):
            pass  # the client went away: nothing to tell anyone
        except Exception:  # noqa: BLE001 - e.g. Redis down: log it, tell the client, free the thread
            app.logger.exception("websocket %s channel %s failed", channel, uuid)
            try:
                ws.close(reason=1011, message="Internal server error")
            except (ConnectionClosed, OSError):
                pass
