"""``WS_DIRECT_WRITE`` (``ATHENA_WS_DIRECT_WRITE``, athena/websocket/writer.py) in both positions,
over real sockets and Redis: off, every message goes through simple-websocket's public
``send()`` from the socket's own thread, and the hub thread never writes to a socket; either
way many clients get every event, in order, exactly once."""
from __future__ import annotations

import threading

import pytest

from athena.runs.eventlog import workspace_stream_key
from athena.websocket.fanout import hub_for
from tests.realtime.support import (
    assert_same_workspace_feed,
    SAFETY_TIMEOUT, connect, execution_url, make_execution, make_scene, run_events, workspace_url,
)
from tests.support.servers import wait_for

CLIENTS = 30
EXECUTIONS = 6
EVENTS_PER_RUN = 12  # per execution: status running, 9 node events, status completed, finished


@pytest.mark.parametrize("direct_write", [False, True], ids=["off", "on"])
def test_every_event_in_order_to_many_clients_in_both_positions(app, live_server, log, readers, monkeypatch,
                                                                direct_write):
    monkeypatch.setitem(app.config, "WS_DIRECT_WRITE", direct_write)
    scene = make_scene()
    executions = [scene.execution] + [make_execution(scene.workflow, scene.user) for _ in range(EXECUTIONS - 1)]
    uuids = [e.uuid for e in executions]
    workspace = workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)
    clients = [connect(readers, workspace) for _ in range(CLIENTS)]
    followers = [connect(readers, execution_url(live_server.ws_url, uuid, token=scene.token)) for uuid in uuids]
    assert all(c.snapshot["last_seq"] == 0 for c in clients + followers)
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    assert wait_for(lambda: hub.subscriber_count(key) == CLIENTS, message="every workspace socket subscribed")
    before = hub.direct_deliveries

    writers = [threading.Thread(target=lambda u=u: [log.append(u, scene.workspace_uuid, name, **fields)
                                                    for name, fields in run_events(EVENTS_PER_RUN)])
               for u in uuids]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(SAFETY_TIMEOUT)

    assert len(uuids) == EXECUTIONS
    assert_same_workspace_feed(clients, uuids)
    for uuid, follower in zip(uuids, followers):
        follower.finish()  # an execution channel closes after execution.finished
        assert [e["seq"] for e in follower.events] == list(range(1, EVENTS_PER_RUN + 1))
        assert {e["execution_uuid"] for e in follower.events} == {uuid}
        assert follower.events[-1]["event"] == "execution.finished" and follower.close_code == 1000
    if not direct_write:
        assert hub.direct_deliveries == before  # the hub thread wrote to no socket
