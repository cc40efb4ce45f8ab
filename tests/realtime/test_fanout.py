"""The shared reader (``athena.fanout``) behind the WebSocket channels, over real sockets and Redis.

One hub per process reads each watched stream once and queues each event for every socket of
that stream; these tests show the hand-over from a socket's replay to the hub is exact, that a
socket too slow for its queue is closed (1013) without disturbing the others, and that the hub
stops reading a stream nobody watches."""
from __future__ import annotations

import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
from redis.exceptions import ConnectionError
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from athena.runs.eventlog import workspace_stream_key
from athena.websocket.channels import WorkflowVisibility
from athena.websocket.fanout import Hub, hub_for
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.realtime.support import (
    assert_same_workspace_feed,
    SAFETY_TIMEOUT, Reader, connect, emit, execution_url, make_execution, make_scene, run_events, workspace_url,
)
from tests.support.servers import wait_for

CLIENTS = 30


def statuses(log, scene, count: int) -> list[int]:
    """``count`` workspace events of ``scene``'s execution; their workspace seqs."""
    return [log.append(scene.uuid, scene.workspace_uuid, "execution.status", status=f"s{i}").workspace_seq
            for i in range(count)]


def seqs(events: Reader | list[dict]) -> list[int]:
    return [e["seq"] for e in (events.events if isinstance(events, Reader) else events)]


def test_many_clients_on_one_channel_receive_the_identical_complete_sequence(app, live_server, log, readers):
    scene = make_scene()
    url = workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)
    clients = [connect(readers, url) for _ in range(CLIENTS)]
    assert all(c.snapshot["last_seq"] == 0 for c in clients)
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    assert wait_for(lambda: hub.subscriber_count(key) == CLIENTS, message="every socket subscribed")
    executions = [scene.execution] + [make_execution(scene.workflow, scene.user) for _ in range(5)]
    uuids = [e.uuid for e in executions]
    writers = [threading.Thread(target=lambda u=u: [log.append(u, scene.workspace_uuid, name, **fields)
                                                    for name, fields in run_events(8)]) for u in uuids]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(SAFETY_TIMEOUT)
    assert_same_workspace_feed(clients, uuids)
    assert hub.subscriber_count(key) == CLIENTS  # one read of the stream feeds them all


def test_clients_joining_mid_stream_get_replay_then_live_without_gap_or_duplicate(live_server, log, readers):
    scene = make_scene()
    first = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token))
    first.snapshot
    marks = {n: threading.Event() for n in (20, 60, 100, 140)}
    writer = threading.Thread(target=emit, args=(log, scene, run_events(180),
                                                 lambda s: s in marks and marks[s].set()))
    writer.start()
    joined = []
    for n in marks:
        assert marks[n].wait(SAFETY_TIMEOUT)
        # while the writer goes on: a full replay, a resume from a seq, and a workspace watcher
        for query in ({}, {"after_seq": n - 10}):
            reader = connect(readers, execution_url(live_server.ws_url, scene.uuid, token=scene.token, **query))
            joined.append((reader, query.get("after_seq", 0)))
        joined.append((connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)),
                       None))
    writer.join(SAFETY_TIMEOUT)
    first.finish()
    assert seqs(first) == list(range(1, 181)) and first.close_code == 1000
    for reader, after in joined:
        if after is None:  # workspace channel: live from its snapshot on (status completed, finished)
            last = reader.snapshot["last_seq"]
            events = reader.wait_events(3 - last)
            assert [e["seq"] for e in events] == list(range(last + 1, 4))
            continue
        reader.finish()
        assert reader.close_code == 1000 and reader.error is None
        assert reader.events == first.events[after:]


def test_events_logged_during_the_hand_over_arrive_exactly_once(app, live_server, log, readers, monkeypatch):
    """Forces both hand-over windows: the hub moves past the socket's replay before it subscribes
    (the socket replays up to the subscription's start), and entries reach both its replay and
    its queue (the queue's copies are skipped)."""
    scene = make_scene()
    statuses(log, scene, 2)
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    url = workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)
    watcher = connect(readers, url)
    watcher.snapshot
    wait_for(lambda: hub.subscriber_count(key) == 1, message="the watcher's subscription")
    starts: list[tuple[int, int]] = []
    real_subscribe = Hub.subscribe

    def subscribe(self, k, position, *args, **kw):
        if k != key or starts:
            return real_subscribe(self, k, position, *args, **kw)
        statuses(log, scene, 3)  # 3..5, read by the hub before this socket subscribes
        watcher.wait_events(3)
        subscription = real_subscribe(self, k, position, *args, **kw)
        starts.append((position, subscription.start))
        statuses(log, scene, 3)  # 6..8, queued for this socket and also in its replay
        watcher.wait_events(6)
        return subscription

    monkeypatch.setattr(Hub, "subscribe", subscribe)
    late = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token, after_seq=0))
    assert late.snapshot["last_seq"] == 2
    late.wait_events(8)
    assert starts == [(2, 5)]  # the hub was ahead of the socket's replay when it subscribed
    statuses(log, scene, 2)
    assert seqs(late.wait_events(10)) == list(range(1, 11))
    assert seqs(watcher.wait_events(8)) == list(range(3, 11))
    late.close()
    assert seqs(late) == list(range(1, 11))  # nothing sent twice


def test_resume_cursor_past_the_end_does_not_make_the_hub_skip_entries(app, live_server, log, readers):
    scene = make_scene()
    statuses(log, scene, 2)
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    ahead = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token,
                                           after_seq=5))
    ahead.snapshot
    wait_for(lambda: hub.subscriber_count(key) == 1, message="the first subscription")
    live = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token))
    assert live.snapshot["last_seq"] == 2
    statuses(log, scene, 5)
    assert seqs(live.wait_events(5)) == [3, 4, 5, 6, 7]
    assert seqs(ahead.wait_events(2)) == [6, 7]


def test_a_slow_client_is_closed_without_affecting_the_others(app, live_server, log, readers, monkeypatch):
    owner, slow_user = make_user(), make_user()
    workspace = make_workspace(owner, members={slow_user: "viewer"})
    workflow = make_workflow(workspace, owner)
    execution = make_execution(workflow, owner)
    ids = {"ws": workspace.uuid, "exec": execution.uuid, "slow": slow_user.id}
    monkeypatch.setitem(app.config, "WS_QUEUE_LIMIT", 5)
    gate, stuck = threading.Event(), threading.Event()
    real_visible = WorkflowVisibility.__call__

    def visible(self, event):
        if self.user_id == ids["slow"]:  # this socket's thread stalls, as behind a slow network
            stuck.set()
            gate.wait(SAFETY_TIMEOUT)
        return real_visible(self, event)

    monkeypatch.setattr(WorkflowVisibility, "__call__", visible)
    hub, key = hub_for(app), workspace_stream_key(ids["ws"])
    fast = connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(owner)))
    slow = connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(slow_user)))
    fast.snapshot, slow.snapshot
    wait_for(lambda: hub.subscriber_count(key) == 2, message="both subscriptions")
    try:
        for n in range(1, 21):
            log.append(ids["exec"], ids["ws"], "execution.status", workflow_uuid=workflow.uuid, status=f"s{n}")
            fast.wait_events(n)  # the fast socket's queue never holds more than one event
            if n == 1:
                assert stuck.wait(SAFETY_TIMEOUT)
        wait_for(lambda: hub.subscriber_count(key) == 1, message="the slow subscription dropped")
    finally:
        gate.set()
    slow.finish()
    assert slow.close_code == 1013, (slow.close_code, slow.messages)
    assert seqs(slow) == [1]  # what it had taken before falling behind
    assert slow.messages[-1] == {"event": "error", "code": 1013, "message": slow.close_reason}
    assert "after_seq=1" in slow.close_reason
    # the others go on; the slow client resumes where it stopped
    assert fast.close_code is None and seqs(fast) == list(range(1, 21))
    log.append(ids["exec"], ids["ws"], "execution.finished", workflow_uuid=workflow.uuid, status="completed")
    assert seqs(fast.wait_events(21)) == list(range(1, 22))
    monkeypatch.setattr(WorkflowVisibility, "__call__", real_visible)
    resumed = connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(slow_user), after_seq=1))
    assert seqs(resumed.wait_events(20)) == list(range(2, 22))


def test_the_hub_thread_writes_to_parked_sockets_itself_and_nothing_changes_for_clients(app, live_server, log,
                                                                                       readers, monkeypatch):
    """Once a workspace socket has sent a live event (its framing is known) and its thread is
    parked, the hub writes the next events to it directly; the clients see the same stream."""
    monkeypatch.setitem(app.config, "WS_DIRECT_WRITE", True)  # the path under test (on by default)
    owner, member = make_user(), make_user()
    workspace = make_workspace(owner, members={member: "viewer"})
    shared, private = make_workflow(workspace, owner), make_workflow(workspace, owner, visibility="private")
    execution = make_execution(shared, owner)
    ids = {"ws": workspace.uuid, "exec": execution.uuid, "shared": shared.uuid, "private": private.uuid}
    hub, key = hub_for(app), workspace_stream_key(ids["ws"])
    clients = [connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(user)))
               for user in (owner, member, owner)]
    assert wait_for(lambda: hub.subscriber_count(key) == len(clients), message="subscribed")

    def append(n: int, workflow_uuid: str) -> None:
        log.append(ids["exec"], ids["ws"], "execution.status", workflow_uuid=workflow_uuid, status=f"s{n}")

    def all_parked() -> bool:
        with hub._lock:
            subscriptions = list(hub._channels[key].subscribers.values())
        return all(sub._parked and sub.direct is not None for sub in subscriptions)

    append(1, ids["shared"])
    append(2, ids["private"])  # visibility of both workflows now known to every socket
    for client in clients:
        client.wait_events(1)
    assert wait_for(lambda: clients[0].events and len(clients[2].events) == 2 and all_parked(),
                    message="every socket thread parked")
    before = hub.direct_deliveries
    for n in range(3, 13):
        append(n, ids["private"] if n % 3 == 0 else ids["shared"])
        assert wait_for(lambda: len(clients[0].events) == n and all_parked(), message=f"event {n} delivered")
    assert hub.direct_deliveries - before >= 10  # written by the hub thread, not by socket threads
    visible_to_member = [n for n in range(1, 13) if n == 1 or (n != 2 and n % 3 != 0)]  # no private ones
    for client, expected in zip(clients, (list(range(1, 13)), visible_to_member, list(range(1, 13)))):
        assert seqs(client.wait_events(len(expected))) == expected  # each reads at its own pace
    assert all(client.close_code is None and client.error is None for client in clients)


def test_the_hub_stops_reading_a_stream_nobody_watches(app, live_server, log, readers):
    scene = make_scene()
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    clients = [connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token))
               for _ in range(3)]
    for client in clients:
        client.snapshot
    wait_for(lambda: hub.subscriber_count(key) == 3, message="three subscriptions")
    statuses(log, scene, 2)
    for client in clients:
        client.wait_events(2)
    clients[0].close()
    clients[1].close(abrupt=True)
    wait_for(lambda: hub.subscriber_count(key) == 1, message="two unsubscribed")
    assert key in hub.keys()
    clients[2].close()
    wait_for(lambda: key not in hub.keys(), message="the key dropped")
    wait_for(lambda: not hub.running, message="the reader thread ended (nothing else is watched)")
    reads = hub.reads
    statuses(log, scene, 2)
    assert hub.reads == reads and not hub.running
    # a new watcher starts it again
    again = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token, after_seq=3))
    statuses(log, scene, 1)
    assert seqs(again.wait_events(2)) == [4, 5]
    assert hub.running and key in hub.keys()


def test_hub_read_failures_end_the_sockets_with_1011(app, live_server, log, readers, monkeypatch):
    scene = make_scene()
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    wait_for(lambda: not hub.running, message="an idle hub")

    def broken(conn, plan):
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(hub, "_xread", broken)
    monkeypatch.setattr(hub, "fail_after", 0.2)
    reader = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)).finish()
    assert reader.close_code == 1011 and reader.close_reason == "Internal server error"
    assert key not in hub.keys()


@pytest.mark.parametrize("failures", [1, 3])
def test_transient_hub_read_errors_lose_nothing(app, live_server, log, readers, monkeypatch, failures):
    scene = make_scene()
    hub, key = hub_for(app), workspace_stream_key(scene.workspace_uuid)
    reader = connect(readers, workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token))
    reader.snapshot
    wait_for(lambda: hub.subscriber_count(key) == 1, message="the subscription")
    real_xread, left = hub._xread, [failures]

    def flaky(conn, plan):
        if key in plan and left[0]:
            left[0] -= 1
            statuses(log, scene, 2)  # logged while the hub cannot read
            raise ConnectionError("connection reset")
        return real_xread(conn, plan)

    monkeypatch.setattr(hub, "_xread", flaky)
    total = 2 * failures
    assert seqs(reader.wait_events(total)) == list(range(1, total + 1))
    statuses(log, scene, 2)
    assert seqs(reader.wait_events(total + 2)) == list(range(1, total + 3))
    assert left == [0] and reader.close_code is None


def test_a_forked_process_gets_its_own_hub(app, monkeypatch):
    hub = hub_for(app)
    assert hub_for(app) is hub
    monkeypatch.setitem(app.extensions, "athena_fanout", hub)  # put back after the test
    monkeypatch.setattr(hub, "pid", -1)  # as seen from a child forked after the hub was made
    fresh = hub_for(app)
    assert fresh is not hub and fresh.keys() == [] and not fresh.running


class DeflateClient:
    """A client that negotiates permessage-deflate (as browsers do), built on wsproto."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=SAFETY_TIMEOUT)
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.messages: list[dict] = []
        self.deflate = PerMessageDeflate()
        self.sock.sendall(self.conn.send(Request(host=parts.netloc, target=f"{parts.path}?{parts.query}",
                                                 extensions=[self.deflate])))
        self.accepted = None
        while self.accepted is None:
            self._pump()

    def _pump(self) -> None:
        self.conn.receive_data(self.sock.recv(65536))
        for event in self.conn.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, TextMessage):
                self.messages.append(json.loads(event.data))
            elif isinstance(event, Ping):
                self.sock.sendall(self.conn.send(event.response()))

    def wait(self, count: int) -> list[dict]:
        while len(self.messages) < count:
            self._pump()
        return self.messages


def test_a_compressing_client_gets_the_same_messages(live_server, log, readers):
    scene = make_scene()
    url = workspace_url(live_server.ws_url, scene.workspace_uuid, token=scene.token)
    plain = connect(readers, url)
    compressed = DeflateClient(url)
    try:
        assert compressed.accepted.extensions and compressed.deflate.enabled()  # permessage-deflate in use
        assert compressed.wait(1)[0]["event"] == "snapshot"
        plain.snapshot
        statuses(log, scene, 5)
        assert compressed.wait(6)[1:] == plain.wait_events(5)
    finally:
        compressed.sock.close()
