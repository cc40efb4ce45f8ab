"""Test-only node types for the engine runner tests, registered in a private copy of the node
registry (``TEST_REGISTRY``) so that they never leak into the global one."""
from __future__ import annotations

from datetime import datetime, timezone

from athena.engine import NodeContext, NodeError, NodeResult, NodeType, StopRequested, Suspend, registry


class Flaky(NodeType):
    """Fails ``fail_times`` times (counted in services["calls"]) then succeeds."""

    type = "test_flaky"

    def run(self, ctx: NodeContext) -> NodeResult:
        calls = ctx.services.setdefault("calls", [])
        calls.append(ctx.attempt)
        if len(calls) <= ctx.services.get("fail_times", 0):
            raise NodeError(f"boom {len(calls)}")
        return NodeResult({"calls": len(calls)})


class Approval(NodeType):
    """Suspends until resumed; then outputs the resume payload."""

    type = "test_approval"

    def run(self, ctx: NodeContext) -> NodeResult | Suspend:
        if ctx.resume is None:
            return Suspend("waiting", datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                           {"question": "ok?"})
        return NodeResult({"approved": ctx.resume["approved"], "input": ctx.input})


class Buggy(NodeType):
    type = "test_buggy"

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.input["missing"])  # TypeError / KeyError on purpose


class Stopper(NodeType):
    type = "test_stopper"

    def run(self, ctx: NodeContext) -> NodeResult:
        if ctx.should_stop():
            raise StopRequested()
        return NodeResult(None)


class Recorder(NodeType):
    """Records the NodeContext it saw in services["seen"]."""

    type = "test_recorder"

    def run(self, ctx: NodeContext) -> NodeResult:
        ctx.services.setdefault("seen", {})[ctx.node_id] = ctx
        return NodeResult(ctx.input)


TEST_REGISTRY = registry.copy()
for _cls in (Flaky, Approval, Buggy, Stopper, Recorder):
    TEST_REGISTRY.register(_cls)
