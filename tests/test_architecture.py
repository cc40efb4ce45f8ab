"""The import contracts hold (.importlinter: a pure engine, services and jobs free of HTTP code,
the layers, no import cycles; CI runs them too), and services and jobs use nothing of the HTTP
request: what they cannot do is a domain error (athena/errors.py), answered by the API."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Bound to the request being answered: a job has none, and a service must not depend on one.
REQUEST_BOUND = frozenset({"request", "g", "session", "abort", "after_this_request", "has_request_context",
                           "copy_current_request_context", "make_response", "jsonify", "redirect"})


def test_import_contracts_are_kept():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint_imports, "import-linter is not installed: it is in requirements-dev.txt"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _request_bound_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "flask":
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}"
                      for alias in node.names if alias.name in REQUEST_BOUND]
        elif (isinstance(node, ast.Attribute) and node.attr in REQUEST_BOUND
              and isinstance(node.value, ast.Name) and node.value.id == "flask"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: flask.{node.attr}")
    return found


def test_services_and_jobs_use_no_request():
    files = sorted([*(ROOT / "athena" / "services").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")])
    assert len(files) > 20
    assert [use for path in files for use in _request_bound_uses(path)] == []
