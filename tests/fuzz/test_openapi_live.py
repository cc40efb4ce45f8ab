"""Schemathesis 4 against the live server, as ``st run --checks all`` would run it: the document
loaded from ``/api/v1/openapi.json`` over HTTP (``schemathesis.openapi.from_url``), requests sent
over real HTTP, authenticated, every check schemathesis has, and all its phases: examples,
coverage, fuzzing and the stateful phase (the engine's ``schema.as_state_machine()``: a Hypothesis
state machine that chains calls through the document's OpenAPI links - athena/api/base.py LINKS -
and the links schemathesis infers).

The run must end with 0 failures and 0 errors. What is excused, and why, is in the docstring of
tests/fuzz/harness.py (logout is not called; generation without a model; whole-graph rules; short
webhook waits; object key rules); the second test proves the excuses are no wider than they say.

``make fuzz`` runs it once in CI (marker ``fuzz``; ``make test`` skips it). The seed is printed;
ATHENA_FUZZ_SEED=<seed> replays a run."""
from __future__ import annotations

import logging
import os

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import ServerError
from schemathesis.engine import from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from tests.fuzz.harness import GENERATE, GRAPH_OPERATIONS, LOGOUT, NO_MODEL, Summary, World, excuse, install_hooks
from tests.nodes import clean_rq

__all__ = ["clean_rq"]  # the autouse fixture: the executions the run queues (no worker runs them) are dropped
pytestmark = pytest.mark.fuzz

# Sized for 1 to 2 minutes on a shared 2-core machine (~5,500 requests). Examples per operation in
# the fuzzing phase (and stateful scenarios); the coverage phase enumerates its own cases
# (boundaries, each constraint broken once).
MAX_EXAMPLES = 50
STATEFUL_STEPS = 20


def _config(token: str) -> SchemathesisConfig:
    settings = {
        "headers": {"Authorization": f"Bearer {token}"},
        "workers": 1,
        "checks": {"enabled": True},  # every check, as --checks all
        "phases": {name: {"enabled": True} for name in ("examples", "coverage", "fuzzing", "stateful")},
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "cache": {"enabled": False},  # no .schemathesis/ directory in the checkout
    }
    settings["phases"]["stateful"]["max-steps"] = STATEFUL_STEPS
    seed = os.environ.get("ATHENA_FUZZ_SEED")
    if seed:
        settings["seed"] = int(seed)
    return SchemathesisConfig.from_dict(settings)


@pytest.fixture
def world(app):
    return World.make()


@pytest.mark.timeout(900)
def test_the_live_api_conforms_to_its_openapi_document(app, live_server, world, caplog):
    caplog.set_level(logging.WARNING, logger="werkzeug")  # one line per request otherwise
    config = _config(world.token)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json", config=config)
    schema = schema.exclude(path=LOGOUT)
    excused = install_hooks(schema, world, app)
    summary = Summary().consume(from_schema(schema).execute())
    print(f"\nschemathesis (seed {config.seed}): {summary.line()}; excused {excused}")
    assert len(summary.statistic.tested_operations) >= 30, summary.report(schema.config.output)
    assert summary.scenarios.get("stateful", 0) > 0 and summary.links[0] > 0, summary.report(schema.config.output)
    assert summary.failures == 0 and not summary.errors, summary.report(schema.config.output)


def test_the_excuses_are_as_narrow_as_they_say(app, client, world):
    """A failure is excused only for its operation, its status and its reason."""
    headers = {"Authorization": f"Bearer {world.token}"}
    workflows = "/api/v1/workflows"
    bad_graph = {"workspace_uuid": world.workspace, "name": "x", "nodes": [{"id": "a", "type": "noop"}],
                 "edges": [{"source": "a", "target": "nowhere"}]}
    graph = client.post(workflows, json=bad_graph, headers=headers)
    nul = client.post(workflows, json={"workspace_uuid": world.workspace, "name": "\0"}, headers=headers)
    no_model = client.post("/api/v1/workflows/generate", json={"workspace_uuid": world.workspace, "prompt": "x"},
                           headers=headers)
    assert (graph.status_code, nul.status_code, no_model.status_code) == (422, 422, 503)
    assert NO_MODEL in no_model.json["message"]

    def rejected(label: str, status: int) -> RejectedPositiveData:
        return RejectedPositiveData(operation=label, message="", status_code=status, allowed_statuses=["2xx"])

    create, update = GRAPH_OPERATIONS
    assert excuse(rejected(create, 422), create, 422, graph.json, bad_graph) == "a whole-graph rule"
    assert excuse(rejected(update, 422), update, 422, graph.json, bad_graph) == "a whole-graph rule"
    assert excuse(rejected(create, 422), create, 422, nul.json, bad_graph) is None  # not about the graph
    assert excuse(rejected(create, 422), create, 422, graph.json, {"name": "x"}) is None  # no graph sent
    assert excuse(rejected("POST /api/v1/workspaces", 422), "POST /api/v1/workspaces", 422, graph.json,
                  bad_graph) is None  # another operation
    assert excuse(ServerError(operation=create, status_code=422), create, 422, graph.json, bad_graph) is None

    server_error = ServerError(operation=GENERATE, status_code=503)
    assert excuse(server_error, GENERATE, 503, no_model.json, None) == "generation without a model"
    assert excuse(server_error, GENERATE, 503, {"message": "The model provider is unreachable."}, None) is None
    assert excuse(ServerError(operation=GENERATE, status_code=500), GENERATE, 500, no_model.json, None) is None
    assert excuse(server_error, create, 503, no_model.json, None) is None  # another operation
    assert excuse(rejected(GENERATE, 503), GENERATE, 503, no_model.json, None) is None  # another check
