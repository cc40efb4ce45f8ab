"""``python -m athena.cli watch`` as a real subprocess against the live server."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.realtime.support import SAFETY_TIMEOUT, emit, make_scene, run_events
from tests.support.servers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATHENA_TOKEN", "ATHENA_URL")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "athena.cli", "watch", *args]


class Watch:
    """The CLI running in the background; its stdout collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(_command(*args), cwd=ROOT, env=env or _env(), text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, count: int) -> list[str]:
        wait_for(lambda: len(self.lines) >= count or self.process.poll() is not None, timeout=SAFETY_TIMEOUT,
                 message=f"{count} lines from watch")
        return self.lines

    def wait(self) -> int:
        code = self.process.wait(SAFETY_TIMEOUT)
        self._reader.join(SAFETY_TIMEOUT)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.wait()


def test_watch_follows_an_execution_until_it_finishes(live_server, log):
    scene = make_scene()
    watch = Watch(scene.uuid, "--url", live_server.url, "--token", scene.token)
    try:
        assert watch.wait_lines(1)[0].split()[1] == "snapshot", (watch.lines, watch.process.stderr)
        emit(log, scene, run_events(7))
        assert watch.wait() == 0, watch.process.stderr.read()
    finally:
        watch.stop()
    assert f"execution={scene.uuid} status=running last_seq=0" in watch.lines[0]
    assert [line.split()[:2] for line in watch.lines[1:]] == [
        ["1", "execution.status"], ["2", "node.started"], ["3", "node.finished"], ["4", "node.started"],
        ["5", "node.finished"], ["6", "execution.status"], ["7", "execution.finished"]]
    assert watch.lines[3] == "    3 node.finished node=n0 status=success"
    assert watch.lines[-1] == "    7 execution.finished status=completed"


def test_watch_token_from_environment_and_after_seq(live_server, log):
    scene = make_scene()
    emit(log, scene, run_events(5))
    done = subprocess.run(_command(scene.uuid, "--url", live_server.url, "--after-seq", "3"), cwd=ROOT,
                          env=_env(ATHENA_TOKEN=scene.token), capture_output=True, text=True, timeout=SAFETY_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["-", "4", "5"]


def test_watch_refused_exits_non_zero(live_server, log):
    scene = make_scene()
    done = subprocess.run(_command(scene.uuid, "--url", live_server.url, "--token", "aths_wrong"), cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=SAFETY_TIMEOUT)
    assert done.returncode == 2
    assert "4401" in done.stderr and "Unauthenticated." in done.stderr
    missing = subprocess.run(_command(scene.uuid, "--url", live_server.url), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=SAFETY_TIMEOUT)
    assert missing.returncode != 0 and "ATHENA_TOKEN" in missing.stderr


def test_watch_workspace_channel(live_server, log):
    scene = make_scene()
    watch = Watch("--workspace", scene.workspace_uuid, "--url", live_server.url, "--token", scene.token)
    try:
        assert f"workspace={scene.workspace_uuid} last_seq=0" in watch.wait_lines(1)[0]
        emit(log, scene, run_events(4))
        lines = watch.wait_lines(4)
    finally:
        watch.stop()
    assert lines[1:4] == [f"    1 execution.status execution={scene.uuid} status=running",
                          f"    2 execution.status execution={scene.uuid} status=completed",
                          f"    3 execution.finished execution={scene.uuid} status=completed"]
