"""The workspace channel does not relay events of another member's private workflow."""
from __future__ import annotations

from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.realtime.support import connect, make_execution, workspace_url


def test_workspace_channel_hides_other_members_private_workflows(log, readers, live_server):
    owner, colleague = make_user(), make_user()
    workspace = make_workspace(owner, members={colleague: "editor"})
    private = make_workflow(workspace, owner, visibility="private")
    shared = make_workflow(workspace, owner, visibility="workspace")
    hidden, seen = make_execution(private, owner), make_execution(shared, owner)
    ids = {"ws": workspace.uuid, "hidden": hidden.uuid, "seen": seen.uuid,
           "private": private.uuid, "shared": shared.uuid}

    colleague_reader = connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(colleague)))
    owner_reader = connect(readers, workspace_url(live_server.ws_url, ids["ws"], token=token_for(owner)))
    colleague_reader.snapshot, owner_reader.snapshot
    log.append(ids["hidden"], ids["ws"], "execution.status", workflow_uuid=ids["private"], status="running")
    log.append(ids["seen"], ids["ws"], "execution.status", workflow_uuid=ids["shared"], status="running")
    log.append(ids["hidden"], ids["ws"], "execution.finished", workflow_uuid=ids["private"], status="completed")
    log.append(ids["seen"], ids["ws"], "execution.finished", workflow_uuid=ids["shared"], status="completed")

    owner_events = owner_reader.wait_events(4)
    assert [e["execution_uuid"] for e in owner_events] == [ids["hidden"], ids["seen"], ids["hidden"], ids["seen"]]
    colleague_reader.wait(lambda: len(colleague_reader.events) >= 2, "shared events")
    owner_reader.close(), colleague_reader.close()
    assert [e["execution_uuid"] for e in colleague_reader.events] == [ids["seen"], ids["seen"]]
    assert [e["seq"] for e in colleague_reader.events] == [2, 4]  # the workspace seq, gaps where hidden
