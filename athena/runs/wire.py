"""The wire: the one schema of the events a run publishes, and the one mapping from the
engine's typed events to it.

Every event in the event log (and so on the WebSocket, to the webhook waiter and the ``watch``
CLI) is a flat JSON object: the envelope (``event``, ``ts``, ``execution_uuid``,
``workspace_uuid``, ``workflow_uuid``; ``seq`` is added when it is read) plus the fields
:data:`SCHEMA` declares for its name. docs/events.md is the same table for readers;
tests/runs/test_wire.py checks that every event real runs log matches it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from athena.engine import LlmTokens, LlmUsage, LoopProgress, NodeFinished, NodeStarted

EXECUTION_STATUS = "execution.status"
EXECUTION_FINISHED = "execution.finished"
NODE_STARTED = "node.started"
NODE_FINISHED = "node.finished"
NODE_PROGRESS = "node.progress"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"
LLM_TOKEN = "llm.token"
LLM_USAGE = "llm.usage"

# Events that also go to the workspace channel (the execution list's live feed).
WORKSPACE_EVENTS = frozenset({EXECUTION_STATUS, EXECUTION_FINISHED, APPROVAL_REQUESTED, APPROVAL_DECIDED})
ENVELOPE = ("event", "ts", "execution_uuid", "workspace_uuid", "workflow_uuid")
MAX_EVENT_OUTPUT_BYTES = 64 * 1024

_TEXT, _INT, _ANY = (str,), (int,), (object,)
_OPTIONAL_TEXT = (str, type(None))


@dataclass(frozen=True)
class EventSpec:
    """The fields of one event: always present (``required``) and sometimes present (``optional``),
    each with the types its value may have."""

    required: dict[str, tuple[type, ...]]
    optional: dict[str, tuple[type, ...]] = field(default_factory=dict)


_NODE_TIMES = {"started_at": _OPTIONAL_TEXT, "stopped_at": _OPTIONAL_TEXT}
_APPROVAL = {"approval_id": _INT, "approval_uuid": _TEXT, "node_id": _TEXT, "status": _TEXT,
             "message": _OPTIONAL_TEXT, "timeout_at": _OPTIONAL_TEXT, "default_decision": _OPTIONAL_TEXT}

SCHEMA: dict[str, EventSpec] = {
    EXECUTION_STATUS: EventSpec(
        {"status": _TEXT},
        {"mode": _TEXT, "node_id": _TEXT, "wait_till": _OPTIONAL_TEXT, "info": (dict,)}),
    EXECUTION_FINISHED: EventSpec(
        {"status": _TEXT, "output": _ANY, "output_truncated": (bool,), "error": _OPTIONAL_TEXT}),
    NODE_STARTED: EventSpec(
        {"node_id": _TEXT, "node_type": _TEXT, "started_at": _TEXT}, {"iteration": _INT}),
    NODE_FINISHED: EventSpec(
        {"node_id": _TEXT, "node_type": _OPTIONAL_TEXT, "status": _TEXT, "output": _ANY,
         "output_truncated": (bool,), "error": _OPTIONAL_TEXT, "handle": _ANY, **_NODE_TIMES},
        {"iteration": _INT}),
    NODE_PROGRESS: EventSpec(
        {"node_id": _TEXT, "index": _INT, "length": _INT, "processed": _INT, "errors": _INT}),
    APPROVAL_REQUESTED: EventSpec(_APPROVAL),
    APPROVAL_DECIDED: EventSpec(
        {**_APPROVAL, "decision": _TEXT, "timed_out": (bool,), "comment": _OPTIONAL_TEXT,
         "user": (dict, type(None)), "decided_at": _OPTIONAL_TEXT}),
    LLM_TOKEN: EventSpec({"node_id": _TEXT, "token": _TEXT}),
    LLM_USAGE: EventSpec({"node_id": _TEXT, "usage": (dict,), "model": _OPTIONAL_TEXT}),
}


def bounded(value: Any) -> tuple[Any, bool]:
    """``(value, False)``, or ``(None, True)`` when its JSON is over ``MAX_EVENT_OUTPUT_BYTES``
    (the event then says ``output_truncated``; the checkpoint keeps the whole output)."""
    if len(json.dumps(value, default=str)) > MAX_EVENT_OUTPUT_BYTES:
        return None, True
    return value, False


def _iteration(iteration: int | None) -> dict[str, int]:
    return {"iteration": iteration} if iteration is not None else {}


def from_engine(event: NodeStarted | NodeFinished | LoopProgress | LlmTokens | LlmUsage) -> tuple[str, dict[str, Any]]:
    """The wire event (name, fields) of an engine event that is published as it is."""
    if isinstance(event, NodeStarted):
        return NODE_STARTED, {"node_id": event.node_id, "node_type": event.node_type,
                              "started_at": event.started_at, **_iteration(event.iteration)}
    if isinstance(event, NodeFinished):
        entry = event.entry
        output, truncated = bounded(entry.get("output"))
        return NODE_FINISHED, {
            "node_id": event.node_id, "node_type": entry.get("type"), "status": entry["status"],
            "output": output, "output_truncated": truncated, "error": entry.get("error"),
            "handle": entry.get("handle"), "started_at": entry.get("started_at"),
            "stopped_at": entry.get("stopped_at"), **_iteration(event.iteration)}
    if isinstance(event, LoopProgress):
        return NODE_PROGRESS, {"node_id": event.node_id, "index": event.index, "length": event.length,
                               "processed": event.processed, "errors": event.errors}
    if isinstance(event, LlmTokens):
        return LLM_TOKEN, {"node_id": event.node_id, "token": event.text}
    if isinstance(event, LlmUsage):
        return LLM_USAGE, {"node_id": event.node_id, "usage": dict(event.usage), "model": event.model}
    raise TypeError(f"{type(event).__name__} is not published as it is")


def closing_pair(status: str, output: Any, error: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The terminal ``execution.status`` and ``execution.finished`` of a run (see
    :func:`athena.runs.lifecycle.close`, the one function that emits them)."""
    output, truncated = bounded(output)
    return [(EXECUTION_STATUS, {"status": status}),
            (EXECUTION_FINISHED, {"status": status, "output": output, "output_truncated": truncated,
                                  "error": error})]


def encode(name: str, fields: dict[str, Any], *, ts: str, execution_uuid: str, workspace_uuid: str) -> str:
    """An event as the log stores it: compact JSON whose first member is ``"event"`` (what
    :func:`name_of` reads without decoding the rest)."""
    payload = {"event": name, "ts": ts, "execution_uuid": execution_uuid, "workspace_uuid": workspace_uuid,
               **fields}
    return json.dumps(payload, default=str, separators=(",", ":"))


_NAME_PREFIX = b'{"event":"'


def name_of(raw: bytes) -> str | None:
    """The name of an event encoded by :func:`encode`, read from its first member (the event's
    output is not decoded); None if ``raw`` is not such an event."""
    if not raw.startswith(_NAME_PREFIX):
        return None
    end = raw.find(b'"', len(_NAME_PREFIX))
    return raw[len(_NAME_PREFIX):end].decode() if end > 0 else None


def problems(event: dict[str, Any]) -> list[str]:
    """What is wrong with ``event`` against the schema (empty when it conforms)."""
    name = event.get("event")
    spec = SCHEMA.get(name)
    if spec is None:
        return [f"unknown event {name!r}"]
    found = []
    for key in ENVELOPE[1:4]:
        if not isinstance(event.get(key), str):
            found.append(f"{name}: envelope field {key!r} missing or not text")
    for key, types in spec.required.items():
        if key not in event:
            found.append(f"{name}: field {key!r} missing")
        elif not isinstance(event[key], types):
            found.append(f"{name}: field {key!r} is {type(event[key]).__name__}")
    for key, types in spec.optional.items():
        if key in event and not isinstance(event[key], types):
            found.append(f"{name}: field {key!r} is {type(event[key]).__name__}")
    declared = set(ENVELOPE) | {"seq", "execution_seq"} | set(spec.required) | set(spec.optional)
    found += [f"{name}: undeclared field {key!r}" for key in event if key not in declared]
    return found
