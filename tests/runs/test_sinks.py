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


PAIR = wire.closing_pair("completed", {"a": 1}, None)


def test_the_closing_pair_is_sent_once_per_execution_with_the_held_events(redis_conn):
    uuid = new_uuid()
    log = EventLog(redis_conn)
    sinks = [EventLogSink(log, uuid, "ws", "wf") for _ in range(3)]
    for number, sink in enumerate(sinks):
        sink.queue(wire.NODE_PROGRESS, node_id="n", index=number, length=3, processed=number, errors=0)
    assert [sink.close(PAIR) for sink in sinks] == [True, False, False]
    logged = [(e["event"], e.get("index")) for e in log.read_after(stream_key(uuid), 0)]
    # each sink's held event went out; the pair only once, with the first close
    assert logged == [(wire.NODE_PROGRESS, 0), (wire.EXECUTION_STATUS, None), (wire.EXECUTION_FINISHED, None),
                      (wire.NODE_PROGRESS, 1), (wire.NODE_PROGRESS, 2)]


def test_a_buffered_sink_writes_everything_in_one_go_with_its_claim(redis_conn):
    uuid = new_uuid()
    log = EventLog(redis_conn)
    sink = BufferedSink(log, uuid, "ws", "wf")
    sink.queue(wire.EXECUTION_STATUS, status="running")
    sink.emit(wire.NODE_PROGRESS, node_id="n", index=1, length=1, processed=1, errors=0)
    sink.flush()
    assert sink.close(PAIR) and not sink.close(PAIR)
    assert log.read_after(stream_key(uuid), 0) == []  # nothing before write()
    sink.write(redis_conn)
    assert [e["event"] for e in log.read_after(stream_key(uuid), 0)] == [
        wire.EXECUTION_STATUS, wire.NODE_PROGRESS, wire.EXECUTION_STATUS, wire.EXECUTION_FINISHED]
    assert not EventLogSink(log, uuid, "ws", "wf").close(PAIR)  # write() recorded the claim
