"""Every file of ``examples/`` as shipped: documented in ``examples/README.md``, accepted by the
real API (201: it validates) with its children, secrets stored but never shown back, and
created over HTTP by ``examples/load.py``. Running each example end to end: test_examples.py."""
from __future__ import annotations

import subprocess
import sys

import pytest

from athena.extensions import db
from tests.factories import token_for
from tests.nodes import clean_rq
from tests.support.examples import EXAMPLES, WORKFLOWS, create, load, world

# fixtures; clean_rq is autouse: no armed tick / timer outlives a test
__all__ = ["clean_rq", "world"]

FILES = sorted(path.name for path in EXAMPLES.glob("*.json"))


def test_there_are_at_least_five_examples_all_documented():
    assert len(FILES) >= 5, FILES
    readme = (EXAMPLES / "README.md").read_text()
    for name in FILES:
        assert f"`{name}`" in readme, f"{name} is not described in examples/README.md"


@pytest.mark.parametrize("name", FILES)
def test_example_is_a_valid_workflow_as_shipped(client, world, name):
    example = load(name)
    assert set(example) <= {"name", "description", "nodes", "edges", "variables", "children"}, set(example)
    assert example["name"] and example["description"] and example["nodes"]
    created = create(client, world, example)
    assert [n["id"] for n in created["nodes"]] == [n["id"] for n in example["nodes"]]
    assert created["is_active"] is True
    refs = [n["parameters"]["workflow_uuid"] for n in created["nodes"] if n["type"] == "sub_workflow"]
    children = {child["name"] for child in example.get("children", [])}
    assert len(refs) == len(children)
    for ref in refs:  # each points at a child created in the same workspace
        child = client.get(f"{WORKFLOWS}/{ref}", headers=world["headers"])
        assert child.status_code == 200 and child.json["data"]["name"] in children, child.json
    # secrets are stored, never shown back
    for key, value in example.get("variables", {}).items():
        if isinstance(value, dict) and value.get("secret"):
            assert created["variables"][key]["value"] != value["value"]


def test_load_script_creates_children_first_over_http(client, live_server, world):
    command = [sys.executable, str(EXAMPLES / "load.py"), str(EXAMPLES / "expense_approval.json"),
               "--url", live_server.url, "--token", token_for(world["owner"]), "--workspace", world["workspace_uuid"],
               "--set", "review_timeout_seconds=3600", "--set", "notify_url=https://chat.test/api/messages",
               "--set", "reimburse.payments_url=https://erp.test/api/payments", "--secret", "reimburse.erp_token=t0k"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (child_uuid, child_name), (parent_uuid, parent_name) = [line.split("  ", 1) for line in done.stdout.splitlines()]
    assert (child_name, parent_name) == ("Reimburse an expense", "Expense approval")
    db.session.rollback()  # the test client shares this test's session: see what the live server wrote
    parent = client.get(f"{WORKFLOWS}/{parent_uuid}", headers=world["headers"]).json["data"]
    child = client.get(f"{WORKFLOWS}/{child_uuid}", headers=world["headers"]).json["data"]
    [sub] = [n for n in parent["nodes"] if n["type"] == "sub_workflow"]
    assert sub["parameters"]["workflow_uuid"] == child_uuid
    assert parent["variables"]["review_timeout_seconds"] == 3600
    assert parent["variables"]["notify_url"] == "https://chat.test/api/messages"
    assert parent["variables"]["auto_approve_limit"] == 500  # the file's own value is kept
    assert child["variables"]["payments_url"] == "https://erp.test/api/payments"
    assert child["variables"]["erp_token"]["secret"] is True and child["variables"]["erp_token"]["value"] != "t0k"
