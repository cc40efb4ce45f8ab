"""Scenario 6: the read path at scale.

``s6_executions`` executions across ``s6_workflows`` workflows of the bench workspace are seeded
with bulk inserts (SQLAlchemy core ``insert`` of many rows per statement; the workflows
themselves come from the API), created_at spread over 30 days, 1 % with an approval. PostgreSQL
gets a VACUUM ANALYZE afterwards (what autovacuum does after a bulk load: statistics, and the
visibility map that lets a count read the index alone); SQLite gets none (the app runs none).
Then, each with warm-up and repetitions: the documented list (workspace filter, sorted by
created_at, page 1 and page 500, with_count) and the count endpoint."""
from __future__ import annotations

import random
import time
import uuid as uuid_lib
from datetime import datetime, timedelta
from typing import Any

from bench.client import sequential, timed
from bench.report import across_reps, r3
from bench.scenarios.common import Ctx, loadavg
from bench.workflows import set_chain

CHUNK = 5_000


def seed(ctx: Ctx) -> dict[str, Any]:
    from sqlalchemy import create_engine, insert, select, text

    from athena.models import Workflow, WorkflowApproval, WorkflowExecution

    s, stack = ctx.settings, ctx.stack
    t0 = time.perf_counter()
    uuids = [stack.create_workflow(f"read-path {i}", *set_chain(1)) for i in range(s.s6_workflows)]
    engine = create_engine(stack.sqlalchemy_url())
    rng = random.Random(42)
    now = datetime.utcnow().replace(microsecond=0)
    executions, approvals = WorkflowExecution.__table__, WorkflowApproval.__table__
    with engine.begin() as conn:
        rows = conn.execute(select(Workflow.__table__.c.id, Workflow.__table__.c.workspace_id,
                                   Workflow.__table__.c.user_id)
                            .where(Workflow.__table__.c.uuid.in_(uuids))).all()
        first_id = (conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM workflow_executions")).scalar() or 0) + 1
        batch: list[dict[str, Any]] = []
        approval_rows: list[dict[str, Any]] = []
        for i in range(s.s6_executions):
            wf_id, ws_id, user_id = rows[i % len(rows)]
            created = now - timedelta(seconds=rng.randint(0, 30 * 24 * 3600))
            status = "failed" if i % 20 == 0 else ("paused" if i % 100 == 1 else "completed")
            batch.append({
                "id": first_id + i, "uuid": str(uuid_lib.UUID(int=rng.getrandbits(128), version=4)),
                "workflow_id": wf_id, "workspace_id": ws_id, "user_id": user_id, "status": status,
                "mode": "webhook", "is_finished": status != "paused", "input": {"body": {"n": i}},
                "output": {"set1": {"step": 1, "n": i}}, "error": "boom" if status == "failed" else None,
                "requires_human_review": status == "paused", "has_command_room_task": False, "crash_count": 0,
                "started_at": created, "stopped_at": created + timedelta(milliseconds=12),
                "created_at": created, "updated_at": created,
            })
            if status == "paused":
                approval_rows.append({"uuid": str(uuid_lib.uuid4()), "workflow_execution_id": first_id + i,
                                      "node_id": "review", "status": "pending", "created_at": created,
                                      "updated_at": created})
            if len(batch) >= CHUNK:
                conn.execute(insert(executions), batch)
                batch = []
        if batch:
            conn.execute(insert(executions), batch)
        if approval_rows:
            conn.execute(insert(approvals), approval_rows)
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('workflow_executions', 'id'), "
                              "(SELECT MAX(id) FROM workflow_executions))"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {"seed_seconds": r3(time.perf_counter() - t0), "workflow_uuids": uuids[:3]}


def run(ctx: Ctx) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    out: dict[str, Any] = {"executions": s.s6_executions, "workflows": s.s6_workflows, "load_before": loadavg()}
    out.update(seed(ctx))
    ws = stack.workspace_uuid
    today = datetime.utcnow().date()
    start = (today - timedelta(days=40)).isoformat()
    list_base = (f"/api/v1/workflow-executions?workspace_uuid={ws}&sort_by=created_at&sort_direction=desc"
                 f"&per_page=20&with_count=workflowApprovals,pendingWorkflowApprovals")
    queries = [
        ("list page 1 (workspace, created_at desc, with_count)", list_base + "&page=1"),
        ("list page 500 (workspace, created_at desc, with_count)", list_base + "&page=500"),
        ("count (workspace, 40 days)", f"/api/v1/workflow-executions/count?workspace_uuid={ws}"
                                       f"&start_date={start}&end_date={today.isoformat()}"),
        ("list page 1 of one workflow", f"/api/v1/workflow-executions?workflow_uuid={out['workflow_uuids'][0]}"
                                        f"&per_page=20&page=1"),
    ]
    api = stack.api(s.request_timeout)
    out["queries"] = []
    try:
        for name, path in queries:
            sequential(lambda: timed(lambda: api.get(path)), 5, 60)  # warm-up
            reps, errors, check = [], 0, None
            for _ in range(s.reps):
                samples = sequential(lambda: timed(lambda: api.get(path), keep_body=check is None), s.s6_requests, 120)
                for x in samples:
                    if x.ok and check is None:
                        check = x.body
                errors += sum(1 for x in samples if not x.ok)
                reps.append([x.seconds * 1000 for x in samples if x.ok])
            meta = (check or {}).get("meta") or {}
            data = (check or {}).get("data")
            out["queries"].append({"name": name, "path": path.replace(stack.token, "<token>"), "errors": errors,
                                   "latency": across_reps(reps), "total": meta.get("total"),
                                   "rows": len(data) if isinstance(data, list) else data})
            q = out["queries"][-1]
            ctx.log(f"  s6 {name}: p50 {q['latency']['p50_ms']} p95 {q['latency']['p95_ms']} ms "
                    f"(total {q['total']}, rows {q['rows']})")
    finally:
        api.close()
    out["load_after"] = loadavg()
    return out
