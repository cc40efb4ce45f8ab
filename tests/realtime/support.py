"""Helpers for the WebSocket tests: rows for an execution, a worker-like event writer and a
real ``websocket-client`` reader running in its own thread (so it answers the server's pings)."""
from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import websocket

from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, WorkflowExecutionData, Workspace
from athena.timeutil import utcnow
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.support.servers import wait_for

SAFETY_TIMEOUT = 60.0  # a bound that only matters when something hangs


@dataclass
class Scene:
    user: User
    token: str
    workspace: Workspace
    workflow: Workflow
    execution: WorkflowExecution
    uuid: str = ""  # plain copies: usable from threads without an app context
    workspace_uuid: str = ""

    def __post_init__(self) -> None:
        self.uuid, self.workspace_uuid = self.execution.uuid, self.workspace.uuid


def make_execution(workflow: Workflow, user: User, status: str = "running", **kw: Any) -> WorkflowExecution:
    finished = status in ("completed", "failed", "cancelled")
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id,
                                  status=status, is_finished=finished, mode="manual", started_at=utcnow(),
                                  stopped_at=utcnow() if finished else None, **kw)
    db.session.add(execution)
    db.session.flush()
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[{"id": "start"}],
                                         meta={"trigger": "test"}))
    db.session.commit()
    return execution


def make_scene(status: str = "running", user: User | None = None) -> Scene:
    user = user or make_user()
    workspace = make_workspace(user)
    workflow = make_workflow(workspace, user)
    return Scene(user, token_for(user), workspace, workflow, make_execution(workflow, user, status))


def run_events(count: int) -> list[tuple[str, dict[str, Any]]]:
    """What a worker logs for a run: ``count`` (>= 3) events, status first, finish last."""
    events: list[tuple[str, dict[str, Any]]] = [("execution.status", {"status": "running"})]
    for i in range(count - 3):
        node = f"n{i // 2}"
        events.append(("node.started", {"node_id": node}) if i % 2 == 0
                      else ("node.finished", {"node_id": node, "status": "success"}))
    return events + [("execution.status", {"status": "completed"}), ("execution.finished", {"status": "completed"})]


def emit(log, scene: Scene, events: list[tuple[str, dict[str, Any]]],
         after_each: Callable[[int], None] | None = None) -> list[int]:
    seqs = []
    for name, fields in events:
        seqs.append(log.append(scene.uuid, scene.workspace_uuid, name, **fields).seq)
        if after_each is not None:
            after_each(seqs[-1])
    return seqs


def assert_same_workspace_feed(clients: list, uuids: list[str]) -> list[dict[str, Any]]:
    """Every workspace client got the whole feed of ``uuids`` (status running, status completed,
    finished per execution), numbered 1..n, the same messages in the same order, exactly once,
    and is still open; returns the feed."""
    total = 3 * len(uuids)
    for client in clients:
        client.wait_events(total)
    reference = clients[0].events
    assert [e["seq"] for e in reference] == list(range(1, total + 1))
    assert sorted(e["execution_uuid"] for e in reference if e["event"] == "execution.finished") == sorted(uuids)
    for client in clients:
        assert client.events == reference  # the same messages, in the same order, exactly once
        assert client.close_code is None and client.error is None
    return reference


def execution_url(base: str, uuid: str, **query: Any) -> str:
    return f"{base}/api/v1/ws/workflow-executions/{uuid}" + (f"?{urlencode(query)}" if query else "")


def workspace_url(base: str, uuid: str, **query: Any) -> str:
    return f"{base}/api/v1/ws/workspaces/{uuid}/executions" + (f"?{urlencode(query)}" if query else "")


class Reader:
    """Connects on ``start()`` (handshake done when it returns), then reads in a thread."""

    def __init__(self, url: str, headers: list[str] | None = None, subprotocols: list[str] | None = None):
        self.url = url
        self.headers = headers or []
        self.subprotocols = subprotocols
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: BaseException | None = None
        self.subprotocol: str | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Reader":
        self.ws = websocket.create_connection(self.url, header=self.headers, subprotocols=self.subprotocols,
                                              enable_multithread=True, timeout=SAFETY_TIMEOUT)
        self.subprotocol = self.ws.getsubprotocol()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    data = bytes(frame.data or b"")
                    self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    self.close_reason = data[2:].decode()
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    text = frame.data.decode() if isinstance(frame.data, bytes) else frame.data
                    self.messages.append(json.loads(text))
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to inspect
            self.error = exc
        finally:
            self.done.set()
            self.ws.shutdown()

    @property
    def snapshot(self) -> dict[str, Any]:
        self.wait(lambda: self.messages or self.done.is_set(), "first message")
        assert self.messages and self.messages[0]["event"] == "snapshot", (self.messages, self.close_code)
        return self.messages[0]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if "seq" in m]

    def wait(self, predicate: Callable[[], Any], what: str = "messages") -> Any:
        return wait_for(predicate, timeout=SAFETY_TIMEOUT, interval=0.01, message=f"{what} on {self.url}")

    def wait_events(self, count: int) -> list[dict[str, Any]]:
        self.wait(lambda: len(self.events) >= count or self.done.is_set(), f"{count} events")
        return self.events

    def finish(self) -> "Reader":
        """Wait until the server closed the socket."""
        assert self.done.wait(SAFETY_TIMEOUT), f"socket still open: {self.url}"
        self._thread.join(SAFETY_TIMEOUT)
        return self

    def close(self, abrupt: bool = False) -> "Reader":
        """Client-side close: a close frame (the reader sees the echo), or drop the TCP connection."""
        if not self.done.is_set():
            if abrupt:  # no close frame: the TCP connection just goes away
                self.ws.sock.shutdown(socket.SHUT_RDWR)
            else:
                self.ws.send_close()
        return self.finish()


def connect(readers: list[Reader], url: str, **kw: Any) -> Reader:
    """A started reader, registered in the ``readers`` fixture's list (dropped after the test)."""
    reader = Reader(url, **kw).start()
    readers.append(reader)
    return reader
