"""Event sinks (athena/runs/sinks.py) against a real Redis, and a real client pointed at a port
where nothing listens (Redis unreachable)."""
from __future__ import annotations

import pytest
from redis import Redis
from redis.exceptions import RedisError

from athena.models.base import new_uuid
from athena.runs import wire
from athena.runs.eventlog import EventLog, stream_key
from athena.runs.sinks import BufferedSink, EventLogSink
from tests.support.redis_down import unused_port


def _unreachable() -> EventLog:
    return EventLog(Redis(host="127.0.0.1", port=unused_port(), socket_connect_timeout=0.5))


def test_a_live_event_is_dropped_not_raised_while_redis_is_unreachable(redis_conn):
    uuid = new_uuid()
    sink = EventLogSink(_unreachable(), uuid, "ws", "wf")
    sink.queue(wire.NODE_STARTED, node_id="ask", node_type="llm", started_at="t")
    sink.emit_live(wire.LLM_TOKEN, node_id="ask", token="lost")  # no error: the node goes on
    assert [name for name, _ in sink.pending] == [wire.NODE_STARTED]  # the held event is kept
    with pytest.raises(RedisError):
        sink.flush()  # a durable flush is never silently dropped: the job leaves the run to the sweeper

    sink = EventLogSink(_unreachable(), uuid, "ws", "wf")
    sink.queue(wire.NODE_STARTED, node_id="ask", node_type="llm", started_at="t")
    sink.emit_live(wire.LLM_TOKEN, node_id="ask", token="lost")
    sink.log = EventLog(redis_conn)  # Redis is back
    sink.emit_live(wire.LLM_TOKEN, node_id="ask", token="kept")
    logged = sink.log.read_after(stream_key(uuid), 0)
    assert [(e["event"], e.get("token")) for e in logged] == [(wire.NODE_STARTED, None), (wire.LLM_TOKEN, "kept")]


def test_the_closing_claim_is_won_once_per_execution(redis_conn):
    uuid = new_uuid()
    sinks = [EventLogSink(EventLog(redis_conn), uuid, "ws", "wf") for _ in range(3)]
    assert [sink.claim_close() for sink in sinks] == [True, False, False]


def test_a_buffered_sink_writes_everything_in_one_go_with_its_claim(redis_conn):
    uuid = new_uuid()
    log = EventLog(redis_conn)
    sink = BufferedSink(log, uuid, "ws", "wf")
    sink.queue(wire.EXECUTION_STATUS, status="running")
    sink.emit(wire.EXECUTION_STATUS, status="completed")
    sink.flush()
    assert log.read_after(stream_key(uuid), 0) == []  # nothing before write()
    assert sink.claim_close() and not sink.claim_close()
    sink.write(redis_conn)
    assert [e["status"] for e in log.read_after(stream_key(uuid), 0)] == ["running", "completed"]
    assert not EventLogSink(log, uuid, "ws", "wf").claim_close()  # write() recorded the claim
