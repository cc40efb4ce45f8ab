"""Athena's WebSockets (flask-sock): live execution events from the Redis event log.

Entry: :func:`init_app` (called by ``create_app``) registers the two channels
(``/api/v1/ws/workflow-executions/<uuid>`` and ``/api/v1/ws/workspaces/<uuid>/executions``) and
the socket options. docs/websocket.md describes the package. The modules, in the order an event
travels:

- :mod:`~athena.websocket.fanout`: one reader thread per process (the hub) reads every watched
  stream of the event log (:mod:`athena.runs.eventlog`) and queues each event for its subscriptions;
- :mod:`~athena.websocket.subscription`: one socket's bounded queue of a stream (and the hub
  thread's direct delivery to a parked socket);
- :mod:`~athena.websocket.relay`: one socket's loop: replay from the log, then the live queue,
  exactly once and in order; close codes;
- :mod:`~athena.websocket.writer`: how events are written to a socket (``WS_DIRECT_WRITE``);
- :mod:`~athena.websocket.frames`: the wire form (JSON text and frame, made once per event);
- :mod:`~athena.websocket.channels`: the routes' handlers: token, access, snapshot, relay.
"""
from __future__ import annotations

from typing import Any

from flask import Flask

from athena.extensions import sock
from athena.websocket.channels import (
    EXECUTION_PATH, SUBPROTOCOL, WORKSPACE_PATH, execution_channel, serve, workspace_channel,
)
from athena.websocket.relay import registry_for

__all__ = ["init_app"]


def init_app(app: Flask) -> None:
    """Register the WebSocket channels on ``app`` (flask-sock's ``sock`` is initialised by
    ``create_app``)."""
    # Pings keep idle sockets alive through proxies and detect vanished clients; the server
    # selects the "bearer" subprotocol when a browser sends its token that way.
    options = dict(app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": app.config["WS_PING_SECONDS"]}))
    subprotocols = list(options.get("subprotocols") or [])
    options["subprotocols"] = subprotocols if SUBPROTOCOL in subprotocols else [*subprotocols, SUBPROTOCOL]
    app.config["SOCK_SERVER_OPTIONS"] = options
    registry_for(app)

    @sock.route(EXECUTION_PATH)
    def ws_workflow_execution(ws: Any, execution_uuid: str) -> None:
        serve("execution", execution_channel, ws, execution_uuid)

    @sock.route(WORKSPACE_PATH)
    def ws_workspace_executions(ws: Any, workspace_uuid: str) -> None:
        serve("workspace", workspace_channel, ws, workspace_uuid)
