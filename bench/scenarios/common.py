"""Helpers shared by the scenarios."""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from bench.client import Api, Sample
from bench.stack import Stack

BODY = {"hello": "world", "n": 1}  # the n8n peer's request body
BODY_BYTES = json.dumps(BODY).encode()
COMPLETED = re.compile(rb'"status"\s*:\s*"completed"')


@dataclass
class Settings:
    """Sizes of one run (``--quick`` shrinks them)."""

    reps: int = 5
    warmup: int = 30
    s1_requests: int = 100          # per repetition, HTTP ?wait=true (5 x 100 = 500 >= 300)
    s1_ws_requests: int = 40        # per repetition, via the WebSocket
    s2_requests: int = 30           # per repetition and workflow
    s2_engine_samples: int = 20     # executions per repetition whose node timestamps are read
    s3_seconds: float = 20.0
    s3_windows: int = 5             # the repetitions of a throughput level: equal time windows
    s3_clients: tuple[int, ...] = (1, 4, 16, 64)
    s3_workers: tuple[int, ...] = (1, 2)
    s3_workflows: tuple[str, ...] = ("bench1", "bench5")
    s4_clients: tuple[int, ...] = (1, 10, 100)
    s4_executions: int = 40         # per repetition
    s4_rate: float = 20.0           # executions started per second while the sockets listen
    s5_stops: int = 20              # per case
    s5_slow_header_stops: int = 5
    s6_executions: int = 100_000
    s6_workflows: int = 50
    s6_requests: int = 10           # per repetition and query
    s8_requests: int = 100          # per repetition and workflow, sequential ?wait=true
    s8_seconds: float = 20.0        # per closed-loop level
    s8_clients: tuple[int, ...] = (1, 8, 64)
    s8_workers: tuple[int, ...] = (1, 2)
    s8_peer_clients: tuple[int, ...] = (1, 8)
    s8_count_executions: int = 200  # sequential io1 executions whose Redis commands (and SQL) are counted
    request_timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(reps=2, warmup=5, s1_requests=20, s1_ws_requests=10, s2_requests=8, s2_engine_samples=4,
                   s3_seconds=2.0, s3_windows=2, s3_clients=(1, 4), s3_workers=(1, 2), s4_clients=(1, 10),
                   s4_executions=8, s5_stops=2, s5_slow_header_stops=1, s6_executions=2_000, s6_workflows=5,
                   s6_requests=5, s8_requests=20, s8_seconds=2.0, s8_clients=(1, 8), s8_count_executions=20)


@dataclass
class Ctx:
    stack: Stack
    settings: Settings
    db: str
    workflows: dict[str, str] = field(default_factory=dict)  # name -> uuid
    log: Callable[[str], None] = print


def parse_ts(value: str | None) -> float | None:
    """ISO-8601 (``...123456Z``) -> epoch seconds."""
    if not value:
        return None
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def webhook_path(workflow_uuid: str, wait: bool = True) -> str:
    return f"/api/v1/workflows/{workflow_uuid}/webhook" + ("?wait=true" if wait else "")


def wait_request(api: Api, workflow_uuid: str, keep_body: bool = False) -> Sample:
    """One ``?wait=true`` webhook; ok only if the answer is 200 with a completed execution (with
    ``keep_body``, the answer is decoded and kept; else only searched, to keep the client cheap)."""
    t0 = time.perf_counter()
    try:
        status, content = api.poster.post(webhook_path(workflow_uuid), BODY_BYTES)
        dt = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - transport errors, counted
        return Sample(time.perf_counter() - t0, False, type(exc).__name__, None, t0)
    if status != 200:
        return Sample(dt, False, f"HTTP {status}", None, t0)
    body = json.loads(content) if keep_body else None
    completed = ((body or {}).get("data", {}).get("status") == "completed" if keep_body
                 else COMPLETED.search(content) is not None)
    return Sample(dt, completed, None if completed else "execution not completed", body, t0)


def warmup(stack: Stack, workflow_uuid: str, count: int) -> int:
    api = stack.api()
    try:
        return sum(0 if wait_request(api, workflow_uuid).ok else 1 for _ in range(count))
    finally:
        api.close()


class CpuPerExec:
    """CPU seconds of the web, worker and embedded Redis processes over a phase, per execution:
    unlike latencies this hardly depends on what else the machine runs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def _now(self) -> dict[str, float]:
        from bench.procstats import cpu_seconds

        st = self.stack
        out = {"web": sum(cpu_seconds(p) for p in [st.web_master_pid(), *st.web_worker_pids()]),
               "workers": sum(cpu_seconds(p) for p in st.worker_pids())}
        if st.embedded is not None:
            out["redis"] = cpu_seconds(st.embedded.process.pid)
        return out

    def __enter__(self) -> "CpuPerExec":
        self.start = self._now()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end = self._now()

    def per_exec_ms(self, executions: int) -> dict[str, float | None]:
        if not executions:
            return {k: None for k in self.end}
        out = {k: round(1000.0 * (self.end[k] - self.start[k]) / executions, 3) for k in self.end}
        out["total"] = round(sum(out.values()), 3)
        return out


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def ms(samples: list[Sample]) -> list[float]:
    return [s.seconds * 1000.0 for s in samples if s.ok]
