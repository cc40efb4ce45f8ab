"""Issue "Crash-proof execution and security hardening", item 12: a hypothesis state machine
over the real API (live HTTP server) and the real RQ worker.

Rules: create a workflow (a small random graph from a safe palette), run it, stop, retry,
approve/reject a pending approval, delete, let the worker catch up. After every step, for every
execution of the example: its event log has ``seq`` 1..n without gaps, its statuses follow only
the transitions of :data:`athena.runs.lifecycle.ALLOWED`, nothing follows ``execution.finished``
(and there is at most one), the API's ``is_finished`` matches its status, a terminal status
never changes, and each API answer agrees with what the model knows (a stop that returned 200
means ``cancelled``; a finished execution can be deleted and not stopped; and so on).

The conftest cleans tables after each *test*, so every example makes its own user and workspace
and checks only its own executions; at the end, every execution of every example is checked
once more, after the stragglers (late timers) ran. Waits are bounded safety nets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rq.job import Job
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule, run_state_machine_as_test,
)

from athena.runs.eventlog import event_log_for_app, stream_key
from athena.redis_client import get_queue
from athena.runs.lifecycle import ALLOWED
from tests.factories import headers_for, make_user, make_workspace
from tests.nodes import API, TERMINAL, clean_rq, edge, manual, node, set_node
from tests.support.servers import wait_for

__all__ = ["clean_rq"]  # the autouse fixture: no scheduled job outlives the test

SAFETY = 30.0  # seconds: a bound on waits, never an assertion about speed
ACTIVE = ("pending", "running")

# kind -> (node type, parameters, the handle its successor hangs on)
PALETTE: dict[str, tuple[str, dict[str, Any], str]] = {
    "set": ("set", {"fields": {"v": 1}}, "main"),
    "noop": ("noop", {}, "main"),
    "if_true": ("if", {"condition": "true"}, "true"),
    "if_false": ("if", {"condition": "false"}, "true"),  # its successor is skipped
    "stop_and_error": ("stop_and_error", {"message": "boom"}, "main"),
    "wait": ("wait", {"seconds": 1}, "main"),
    "approval": ("approval", {"message": "ok?"}, "approved"),
    "approval_timeout": ("approval", {"message": "ok?", "timeout_seconds": 1, "default_decision": "approved"},
                         "approved"),
}
graphs = st.lists(st.sampled_from(sorted(PALETTE)), min_size=1, max_size=4)


def build_graph(kinds: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """manual -> n0 -> n1 ...: a chain of the drawn kinds, each hanging on its predecessor's handle."""
    nodes, edges = [manual()], []
    previous, handle = "start", "main"
    for i, kind in enumerate(kinds):
        type_, parameters, next_handle = PALETTE[kind]
        node_id = f"n{i}"
        nodes.append(set_node(node_id, parameters["fields"]) if type_ == "set" else node(node_id, type_, parameters))
        edges.append(edge(previous, node_id, handle))
        previous, handle = node_id, next_handle
    return nodes, edges


def log_events(uuid: str) -> list[dict[str, Any]]:
    return event_log_for_app().read_after(stream_key(uuid), 0, count=100_000)


def check_log(uuid: str) -> dict[str, Any] | None:
    """The log's invariants; returns its execution.finished event, if any."""
    events = log_events(uuid)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), (uuid, "seq not consecutive", seqs)
    statuses = [e["status"] for e in events if e["event"] == "execution.status"]
    assert statuses[:1] == ["pending"], (uuid, statuses)
    for before, after in zip(statuses, statuses[1:]):
        assert after in ALLOWED[before], (uuid, f"illegal transition {before} -> {after}", statuses)
    finished = [i for i, e in enumerate(events) if e["event"] == "execution.finished"]
    assert len(finished) <= 1, (uuid, "execution.finished more than once", [e["event"] for e in events])
    if not finished:
        return None
    assert finished[0] == len(events) - 1, (uuid, "events after execution.finished",
                                            [(e["seq"], e["event"], e.get("status")) for e in events[finished[0]:]])
    final = events[-1]
    assert final["status"] in TERMINAL and final["status"] == statuses[-1], (uuid, statuses, final)
    return final


@dataclass
class Tracked:
    uuid: str
    terminal: str | None = None  # the first terminal status observed
    cancelled_by_stop: bool = False  # a stop returned 200
    deleted: bool = False


class ExecutionMachine(RuleBasedStateMachine):
    base_url: ClassVar[str] = ""
    every_uuid: ClassVar[list[str]] = []  # across examples, for the final check
    stats: ClassVar[dict[str, int]] = {}

    workflows = Bundle("workflows")
    executions = Bundle("executions")

    def __init__(self) -> None:
        super().__init__()
        user = make_user()  # a fresh world per example: tables are cleaned per test only
        self.workspace = make_workspace(user)
        self.headers = headers_for(user)
        self.http = requests.Session()
        self.tracked: dict[str, Tracked] = {}

    # -- HTTP --------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.base_url}{path}", headers=self.headers, timeout=SAFETY, **kw)

    def observe(self, item: Tracked) -> dict[str, Any] | None:
        """GET the execution (None once deleted) and check what can be checked from one answer."""
        response = self.call("GET", f"{API}/{item.uuid}")
        if item.deleted:
            assert response.status_code == 404, response.text
            return None
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        status = data["status"]
        assert data["is_finished"] is (status in TERMINAL), data
        if item.terminal is not None:
            assert status == item.terminal, (item.uuid, f"terminal {item.terminal} became {status}")
        elif status in TERMINAL:
            item.terminal = status
        if item.cancelled_by_stop:
            assert status == "cancelled", (item.uuid, status)
        return data

    def track(self, uuid: str) -> str:
        self.tracked[uuid] = Tracked(uuid)
        self.every_uuid.append(uuid)
        return uuid

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # -- rules -------------------------------------------------------------------------------
    @rule(target=workflows, kinds=graphs)
    def create_workflow(self, kinds: list[str]) -> str:
        nodes, edges = build_graph(kinds)
        response = self.call("POST", "/api/v1/workflows", json={
            "workspace_uuid": self.workspace.uuid, "name": "+".join(kinds), "nodes": nodes, "edges": edges})
        assert response.status_code == 201, response.text
        return response.json()["data"]["uuid"]

    @rule(target=executions, workflow=workflows)
    def run(self, workflow: str) -> str:
        response = self.call("POST", API, json={"workflow_uuid": workflow, "input": {"k": 1}})
        assert response.status_code == 201, response.text
        assert response.json()["data"]["status"] == "pending"
        self.count("run")
        return self.track(response.json()["data"]["uuid"])

    @rule(uuid=executions)
    def stop(self, uuid: str) -> None:
        item = self.tracked[uuid]
        known = item.terminal
        response = self.call("POST", f"{API}/{uuid}/stop")
        if item.deleted:
            assert response.status_code == 404, response.text
            return
        assert response.status_code in (200, 409), response.text
        if response.status_code == 200:
            assert known is None, (uuid, f"stopped a {known} execution")
            data = response.json()["data"]
            assert data["status"] == "cancelled" and data["is_finished"] is True, data
            item.cancelled_by_stop = True
            self.count("stop 200")
        else:
            self.count("stop 409")
            data = self.observe(item)
            assert data is not None and data["is_finished"], (uuid, "409 on an unfinished execution", data)

    @rule(target=executions, uuid=executions)
    def retry(self, uuid: str):
        item = self.tracked[uuid]
        known = item.terminal
        response = self.call("POST", f"{API}/{uuid}/retry")
        if item.deleted:
            assert response.status_code == 404, response.text
            return multiple()
        if known in ("failed", "cancelled"):
            assert response.status_code == 201, (uuid, known, response.text)
        elif known == "completed":
            assert response.status_code == 409, (uuid, known, response.text)
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            self.count("retry 409")
            return multiple()
        data = self.observe(item)
        assert data is not None and data["status"] in ("failed", "cancelled"), (uuid, "retried", data)
        new = response.json()["data"]
        assert new["mode"] == "retry" and new["retry_of"] == uuid and new["status"] == "pending", new
        self.count("retry 201")
        return self.track(new["uuid"])

    @rule(uuid=executions, verb=st.sampled_from(["approve", "reject"]))
    def decide(self, uuid: str, verb: str) -> None:
        item = self.tracked[uuid]
        listed = self.call("GET", f"{API}/{uuid}/approvals")
        if item.deleted:
            assert listed.status_code == 404, listed.text
            return
        assert listed.status_code == 200, listed.text
        approvals = listed.json()["data"]
        for approval in approvals:
            response = self.call("POST", f"{API}/{uuid}/approvals/{approval['id']}/{verb}", json={"comment": "hy"})
            if approval["status"] != "pending":  # decided, expired or cancelled: never again
                assert response.status_code == 409, (approval, response.text)
                continue
            # 409 only if a timeout or a stop decided it since the listing
            assert response.status_code in (200, 409), response.text
            self.count(f"{verb} {response.status_code}")
            if response.status_code == 200:
                assert response.json()["data"]["status"] == ("approved" if verb == "approve" else "rejected")

    @rule(uuid=executions)
    def delete(self, uuid: str) -> None:
        item = self.tracked[uuid]
        before = self.observe(item)
        response = self.call("DELETE", f"{API}/{uuid}")
        if item.deleted:
            assert response.status_code == 404, response.text
            return
        assert before is not None
        assert response.status_code in (204, 409), response.text
        if before["is_finished"]:
            assert response.status_code == 204, (uuid, before["status"], response.text)
        if response.status_code == 204:
            item.deleted = True  # from here on: 404 everywhere, and its log is still checked
            self.count("delete 204")
        else:
            self.count("delete 409")

    @precondition(lambda self: any(not t.deleted and t.terminal is None for t in self.tracked.values()))
    @rule()
    def let_the_worker_catch_up(self) -> None:
        """Until nothing is pending or running (waits, approvals and terminal states remain)."""
        def settled() -> bool:
            return all((data := self.observe(item)) is None or data["status"] not in ACTIVE
                       for item in self.tracked.values())

        wait_for(settled, timeout=SAFETY, interval=0.05, message="executions to settle")

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def logs_and_api_agree(self) -> None:
        for item in self.tracked.values():
            final = check_log(item.uuid)  # the log first: its finished event implies a terminal row
            data = self.observe(item)
            if final is not None:
                if data is not None:
                    assert data["status"] == final["status"], (item.uuid, data["status"], final)
                item.terminal = item.terminal or final["status"]
                assert item.terminal == final["status"], (item.uuid, item.terminal, final)

    def teardown(self) -> None:
        """Stop what is still in flight; wait (bounded) until every execution has finished."""
        for item in self.tracked.values():
            data = self.observe(item)
            if data is not None and not data["is_finished"]:
                code = self.call("POST", f"{API}/{item.uuid}/stop").status_code
                assert code in (200, 409), code
                item.cancelled_by_stop = code == 200

        def all_finished() -> bool:
            return all(check_log(item.uuid) is not None for item in self.tracked.values())

        wait_for(all_finished, timeout=SAFETY, interval=0.05, message="every execution's execution.finished")
        self.logs_and_api_agree()
        self.http.close()


@pytest.mark.slow
def test_execution_life_cycle_state_machine(live_server, worker, redis_conn):
    ExecutionMachine.base_url = live_server.url
    ExecutionMachine.every_uuid = []
    ExecutionMachine.stats = {}
    run_state_machine_as_test(ExecutionMachine, settings=settings(
        max_examples=15, stateful_step_count=8, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    ))
    # Late timers (waits, approval timeouts) of stopped executions fire against finished ones:
    # once they ran, every log of every example must still be sound, with exactly one finish.
    uuids = ExecutionMachine.every_uuid
    late = [job_id for job_id in get_queue().scheduled_job_registry.get_job_ids() if any(u in job_id for u in uuids)]
    for job_id in late:
        wait_for(lambda: Job.fetch(job_id, connection=redis_conn).get_status() in ("finished", "failed", "canceled"),
                 timeout=SAFETY, message=f"the late job {job_id}")
    for uuid in uuids:
        assert check_log(uuid) is not None, uuid
    counts = {k: v for k, v in sorted(ExecutionMachine.stats.items()) if v}
    print(f"\nstate machine: {len(uuids)} executions over 15 examples, {len(late)} late timers; {counts}")
