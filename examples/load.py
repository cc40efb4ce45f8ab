"""Create an example workflow (and its child workflows) through the Athena API.

    python examples/load.py examples/expense_approval.json --url http://127.0.0.1:5000 \
        --token "$TOKEN" --workspace "$WS" \
        --set notify_url=https://chat.internal/api/messages \
        --set reimburse.payments_url=https://erp.internal/api/payments \
        --secret reimburse.erp_token=s3cr3t

Children (the file's ``children`` list) are created first; every ``sub_workflow`` node whose
``workflow_uuid`` is ``$child:<key>`` is pointed at the created child. ``--set NAME=VALUE``
overrides a variable of the workflow (``<child key>.NAME`` one of a child); VALUE is read as JSON
when it parses (``--set big_company_threshold=250``), else as a string. ``--secret NAME=VALUE``
stores a secret variable. Prints the created workflows' uuids, the main one last. Standard
library only."""
from __future__ import annotations

import argparse
import copy
import json
import sys
import urllib.error
import urllib.request
from typing import Any, Callable

CHILD_REF = "$child:"


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(pairs: list[str], secret: bool) -> dict[str, dict[str, Any]]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "": {"c": "x"}}`` (``""`` = the main workflow)."""
    found: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"expected NAME=VALUE, got {pair!r}")
        owner, _, variable = name.rpartition(".")
        found.setdefault(owner, {})[variable] = {"secret": True, "value": text} if secret else _value(text)
    return found


def plan(example: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None) -> tuple[list, dict]:
    """The request bodies to POST (without ``workspace_uuid``): ``([(key, child body)...], main body)``.
    The main body still holds ``$child:<key>`` references; :func:`link` replaces them."""
    overrides = overrides or {}
    doc = copy.deepcopy(example)
    children = doc.pop("children", [])
    unknown = set(overrides) - {""} - {child["key"] for child in children}
    if unknown:
        raise SystemExit(f"no child workflow named {', '.join(sorted(unknown))}")

    def body(workflow: dict[str, Any], key: str) -> dict[str, Any]:
        out = {name: workflow[name] for name in ("name", "description", "nodes", "edges") if name in workflow}
        out["variables"] = {**workflow.get("variables", {}), **overrides.get(key, {})}
        return out

    return [(child["key"], body(child, child["key"])) for child in children], body(doc, "")


def link(main: dict[str, Any], child_uuids: dict[str, str]) -> dict[str, Any]:
    """``main`` with every ``$child:<key>`` sub_workflow reference replaced by the child's uuid."""
    main = copy.deepcopy(main)
    for node in main["nodes"]:
        ref = (node.get("parameters") or {}).get("workflow_uuid")
        if node.get("type") == "sub_workflow" and isinstance(ref, str) and ref.startswith(CHILD_REF):
            key = ref[len(CHILD_REF):]
            if key not in child_uuids:
                raise SystemExit(f"node {node['id']!r} refers to unknown child {key!r}")
            node["parameters"]["workflow_uuid"] = child_uuids[key]
    return main


def create_all(example: dict[str, Any], workspace_uuid: str, post: Callable[[dict], dict],
               overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Create the children, then the main workflow, with ``post(body) -> created workflow``."""
    children, main = plan(example, overrides)
    created, uuids = [], {}
    for key, child in children:
        workflow = post({"workspace_uuid": workspace_uuid, **child})
        uuids[key] = workflow["uuid"]
        created.append(workflow)
    created.append(post({"workspace_uuid": workspace_uuid, **link(main, uuids)}))
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="Athena's base URL")
    parser.add_argument("--token", required=True, help="a session token (Authorization: Bearer)")
    parser.add_argument("--workspace", required=True, help="the workspace uuid")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    with open(args.file, encoding="utf-8") as handle:
        example = json.load(handle)
    overrides = _assignments(args.set, secret=False)
    for owner, values in _assignments(args.secret, secret=True).items():
        overrides.setdefault(owner, {}).update(values)

    def post(body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            args.url.rstrip("/") + "/api/v1/workflows", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["data"]
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{body['name']!r}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None

    for workflow in create_all(example, args.workspace, post, overrides):
        print(f"{workflow['uuid']}  {workflow['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
