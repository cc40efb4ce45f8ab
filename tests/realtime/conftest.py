"""Fixtures of the WebSocket tests: the event log (streams removed after each test) and readers."""
from __future__ import annotations

import pytest

from athena.runs.eventlog import event_log_for_app, seq_key, stream_key, workspace_seq_key, workspace_stream_key
from athena.extensions import db
from athena.models import WorkflowExecution, Workspace
from tests.realtime.support import Reader


@pytest.fixture
def log(app, redis_conn):
    yield event_log_for_app(app)
    # The streams of this test's rows (the tables are emptied after the test).
    keys = [f(u) for u in db.session.scalars(db.select(WorkflowExecution.uuid)) for f in (stream_key, seq_key)]
    keys += [f(u) for u in db.session.scalars(db.select(Workspace.uuid)) for f in (workspace_stream_key,
                                                                                   workspace_seq_key)]
    if keys:
        redis_conn.delete(*keys)


@pytest.fixture
def readers():
    opened: list[Reader] = []
    yield opened
    for reader in opened:
        reader.close(abrupt=True)
