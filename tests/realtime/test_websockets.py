"""The WebSocket channels against a real threaded server, real Redis and real rows.

The test plays the worker: it appends to the event log with ``EventLog.append``."""
from __future__ import annotations

import threading

import pytest

from athena.extensions import db
from athena.models import ApiToken
from athena.timeutil import utcnow
from athena.websocket.relay import registry_for
from tests.factories import token_for
from tests.realtime.support import (
    SAFETY_TIMEOUT, Reader, connect, emit, execution_url, make_execution, make_scene, run_events, workspace_url,
)
from tests.support.servers import wait_for


def assert_run(reader: Reader, seqs: list[int]) -> None:
    reader.finish()
    assert reader.error is None, reader.error
    assert [e["seq"] for e in reader.events] == seqs
    assert reader.events[-1]["event"] == "execution.finished"
    assert reader.close_code == 1000


def test_early_and_late_clients_get_the_same_ordered_log(client, live_server, log, readers):
    scene = make_scene()
    url = execution_url(live_server.ws_url, scene.uuid, token=scene.token)
    early = connect(readers, url)
    assert early.snapshot["last_seq"] == 0
    execution = early.snapshot["execution"]
    assert execution["uuid"] == scene.uuid and execution["status"] == "running" and execution["is_finished"] is False
    assert execution["workflow_uuid"] == scene.workflow.uuid and execution["mode"] == "manual"
    [data] = execution["workflow_execution_data"]
    assert data["workflow_data"] == [{"id": "start"}]
    assert data["metadata"] == {"trigger": "test", "workflow_execution_data_id": scene.execution.execution_data.id}
    rest = client.get(f"/api/v1/workflow-executions/{scene.uuid}?with=workflowExecutionData",
                      headers={"Authorization": f"Bearer {scene.token}"})
    assert execution == rest.json["data"]  # the snapshot is the REST resource

    seqs = emit(log, scene, run_events(9))
    late = connect(readers, url)
    assert late.snapshot["last_seq"] == 9
    assert seqs == list(range(1, 10))
    assert_run(early, seqs)
    assert_run(late, seqs)
    assert early.events == late.events
    assert [e["event"] for e in early.events][:3] == ["execution.status", "node.started", "node.finished"]


def test_after_seq_replays_only_later_events(live_server, log, readers):
    scene = make_scene()
    emit(log, scene, run_events(8))
    partial = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token, after_seq=5))
    assert_run(partial, [6, 7, 8])
    caught_up = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token, after_seq=8))
    assert caught_up.finish().close_code == 1000
    assert caught_up.snapshot["last_seq"] == 8 and caught_up.events == []


def test_concurrent_appends_arrive_exactly_once_in_order(live_server, log, readers):
    scene = make_scene()
    url = execution_url(live_server.ws_url, scene.uuid, token=scene.token)
    first = connect(readers, url)
    first.snapshot
    marks = {n: threading.Event() for n in (50, 120, 170)}
    writer = threading.Thread(target=emit, args=(log, scene, run_events(200), lambda s: s in marks and marks[s].set()))
    writer.start()
    others = []
    for n, query in ((50, {}), (120, {"after_seq": 100}), (170, {})):
        assert marks[n].wait(SAFETY_TIMEOUT)
        # The writer keeps going while these clients connect.
        others.append((connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token, **query)),
                       query.get("after_seq", 0)))
    writer.join(SAFETY_TIMEOUT)
    assert_run(first, list(range(1, 201)))
    for reader, after in others:
        assert_run(reader, list(range(after + 1, 201)))
        assert reader.events == first.events[after:]


@pytest.mark.parametrize("how", ["query", "subprotocol", "authorization", "app_header"])
def test_token_sources(live_server, log, readers, how):
    scene = make_scene()
    emit(log, scene, run_events(3))
    base = execution_url(live_server.ws_url, scene.uuid)
    if how == "query":
        reader = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token))
    elif how == "subprotocol":
        reader = connect(readers, base, subprotocols=["bearer", scene.token])
        assert reader.subprotocol == "bearer"
    elif how == "authorization":
        reader = connect(readers, base, headers=[f"Authorization: Bearer {scene.token}"])
    else:
        reader = connect(readers, base, headers=[f"X-Multiplai-Authorization: {token_for(scene.user, 'app')}"])
    assert_run(reader, [1, 2, 3])


def assert_refused(reader: Reader, code: int) -> None:
    reader.finish()
    assert reader.close_code == code, (reader.close_code, reader.messages)
    assert reader.messages == [{"event": "error", "code": code, "message": reader.close_reason}]


def test_refusals(live_server, log, readers):
    scene = make_scene()
    emit(log, scene, run_events(3))
    url = lambda **q: execution_url(live_server.ws_url, scene.uuid, **q)  # noqa: E731
    assert_refused(connect(readers, url()), 4401)
    assert_refused(connect(readers, url(token="aths_not-a-token")), 4401)
    revoked = token_for(scene.user)
    db.session.execute(db.update(ApiToken).values(revoked_at=utcnow()).where(ApiToken.user_id == scene.user.id,
                                                                             ApiToken.revoked_at.is_(None)))
    db.session.commit()
    assert_refused(connect(readers, url(token=revoked)), 4401)
    stranger = make_scene()
    assert_refused(connect(readers, url(token=stranger.token)), 4404)
    assert_refused(connect(readers, execution_url(live_server.ws_url, "no-such-execution", token=stranger.token)), 4404)
    assert_refused(connect(readers, workspace_url(live_server.ws_url, scene.workspace.uuid, token=stranger.token)), 4404)
    assert_refused(connect(readers, execution_url(live_server.ws_url, stranger.uuid, token=stranger.token,
                                                  after_seq="x")), 4400)


def test_workspace_channel_relays_only_its_executions(live_server, log, readers):
    scene = make_scene()
    sibling = make_execution(scene.workflow, scene.user)
    other = make_scene(user=scene.user)  # same user, another workspace
    url = workspace_url(live_server.ws_url, scene.workspace.uuid, token=scene.token)
    live = connect(readers, url)
    assert live.snapshot == {"event": "snapshot", "workspace_uuid": scene.workspace.uuid, "last_seq": 0}
    emit(log, scene, run_events(5))
    emit(log, other, run_events(5))
    log.append(sibling.uuid, scene.workspace.uuid, "node.started", node_id="x")  # not a workspace event
    log.append(sibling.uuid, scene.workspace.uuid, "execution.status", status="running")
    events = live.wait_events(4)
    assert [(e["seq"], e["event"], e["execution_uuid"]) for e in events] == [
        (1, "execution.status", scene.uuid), (2, "execution.status", scene.uuid),
        (3, "execution.finished", scene.uuid), (4, "execution.status", sibling.uuid)]
    assert [e["execution_seq"] for e in events] == [1, 4, 5, 2]
    replay = connect(readers, workspace_url(live_server.ws_url, scene.workspace.uuid, token=scene.token, after_seq=2))
    late = connect(readers, url)
    assert late.snapshot["last_seq"] == 4
    log.append(sibling.uuid, scene.workspace.uuid, "execution.finished", status="completed")
    assert [e["seq"] for e in replay.wait_events(3)] == [3, 4, 5]
    assert [e["seq"] for e in late.wait_events(1)] == [5]  # live only by default
    assert [e["seq"] for e in live.wait_events(5)] == [1, 2, 3, 4, 5]
    assert all(r.close_code is None for r in (live, replay, late))  # the channel stays open


def test_finished_execution_without_final_event_in_its_log(app, live_server, log, readers, monkeypatch):
    monkeypatch.setitem(app.config, "WS_FINISH_GRACE_SECONDS", 0.2)
    expired = make_scene(status="completed")  # its log expired: the snapshot is all there is
    reader = connect(readers, execution_url(live_server.ws_url, expired.uuid, token=expired.token)).finish()
    assert reader.close_code == 1000
    assert [m["event"] for m in reader.messages] == ["snapshot"]
    assert reader.snapshot["execution"]["status"] == "completed" and reader.snapshot["last_seq"] == 0

    cut_short = make_scene(status="failed")  # e.g. marked failed by a sweeper: the log has no finish
    emit(log, cut_short, run_events(5)[:3])
    reader = connect(readers, execution_url(live_server.ws_url, cut_short.uuid, token=cut_short.token)).finish()
    assert reader.close_code == 1000 and [e["seq"] for e in reader.events] == [1, 2, 3]


def test_finish_without_finished_event_and_revocation_end_the_socket(app, live_server, log, readers, monkeypatch):
    monkeypatch.setitem(app.config, "WS_RECHECK_SECONDS", 0.05)
    monkeypatch.setitem(app.config, "WS_FINISH_GRACE_SECONDS", 0.2)
    scene = make_scene()
    emit(log, scene, run_events(3)[:1])
    reader = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token))
    reader.wait_events(1)
    scene.execution.status, scene.execution.is_finished = "failed", True  # e.g. the crash sweeper
    db.session.commit()
    reader.finish()
    assert reader.close_code == 1000
    assert [m["event"] for m in reader.messages] == ["snapshot", "execution.status", "snapshot"]
    assert reader.messages[-1]["execution"]["status"] == "failed"

    running = make_scene()
    watcher = connect(readers, workspace_url(live_server.ws_url, running.workspace.uuid, token=running.token))
    watcher.snapshot
    db.session.execute(db.update(ApiToken).values(revoked_at=utcnow()).where(ApiToken.user_id == running.user.id))
    db.session.commit()
    watcher.finish()
    assert watcher.close_code == 4401 and watcher.messages[-1]["event"] == "error"


@pytest.mark.parametrize("channel", ["execution", "workspace"])
@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "dropped-tcp"])
def test_closed_client_frees_the_server_thread(app, live_server, log, readers, channel, abrupt):
    scene = make_scene()
    uuid = scene.uuid if channel == "execution" else scene.workspace.uuid
    make_url = execution_url if channel == "execution" else workspace_url
    reader = connect(readers, make_url(live_server.ws_url, uuid, token=scene.token))
    reader.snapshot
    registry = registry_for(app)
    threads = wait_for(lambda: registry.threads(f"{channel}:{uuid}"), message="the relay thread")
    assert len(threads) == 1 and threads[0].is_alive()
    reader.close(abrupt=abrupt)
    threads[0].join(SAFETY_TIMEOUT)
    assert not threads[0].is_alive()
    assert registry.count(f"{channel}:{uuid}") == 0
