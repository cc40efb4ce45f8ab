"""``python -m athena.cli --help`` (and ``-h``, and no arguments): a usage listing the commands, exit 0."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ATHENA_TOKEN", "ATHENA_URL")}
    return subprocess.run([sys.executable, "-m", "athena.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["-h"], []], ids=["--help", "-h", "no arguments"])
def test_help_lists_the_commands_and_exits_0(args):
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m athena.cli <command>"), done.stdout
    for command in ("watch", "users create", "tokens create", "db upgrade"):
        assert f"\n  {command} " in done.stdout, f"{command!r} not listed:\n{done.stdout}"


def test_an_unknown_command_is_an_error_with_the_usage():
    done = _cli("frobnicate")
    assert done.returncode == 2
    assert "unknown command 'frobnicate'" in done.stderr and "usage: python -m athena.cli" in done.stderr


def test_a_command_group_runs_through_flask_with_its_own_help():
    done = _cli("users", "--help")
    assert done.returncode == 0, done.stderr
    assert "create" in done.stdout and "Create a user" in done.stdout
