"""/proc readings for the benchmarks: a process's CPU seconds, RSS and children, and the
system-wide CPU use over a phase (:class:`CpuShare`), so that a run can tell the CPU of its own
processes from what other processes on the machine used, and wait for a quiet machine
(:func:`wait_quiet`). Linux only."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.stack import Stack


# ---------------------------------------------------------------------------- /proc helpers
def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def rss_mb(pid: int) -> dict[str, float | None]:
    rss, hwm = proc_status_kb(pid, "VmRSS"), proc_status_kb(pid, "VmHWM")
    return {"rss_mb": round(rss / 1024, 1) if rss else None, "hwm_mb": round(hwm / 1024, 1) if hwm else None}


# ---------------------------------------------------------------------------- machine noise
def _system_busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


class CpuShare:
    """System-wide CPU busy vs the CPU of our own processes (bench client, web, workers,
    embedded Redis) over a phase: ``foreign_pct`` is what other processes on the machine used
    (PostgreSQL and a server Redis count as foreign: they are shared). 100 % = one core."""

    def __init__(self, stack: "Stack | None" = None) -> None:
        self.stack = stack

    def _ours(self) -> dict[int, float]:
        pids = [os.getpid()]
        if self.stack is not None and self.stack.web is not None:
            pids += self.stack.server_pids()
            if self.stack.embedded is not None:
                pids.append(self.stack.embedded.process.pid)
        return {pid: cpu_seconds(pid) for pid in pids}

    def __enter__(self) -> "CpuShare":
        self.busy0, self.total0 = _system_busy_jiffies()
        self.ours0, self.t0 = self._ours(), time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        busy1, total1 = _system_busy_jiffies()
        wall = max(time.monotonic() - self.t0, 1e-9)
        tick = os.sysconf("SC_CLK_TCK")
        system = (busy1 - self.busy0) / tick / wall * 100
        # processes started meanwhile count from zero; ones that ended are lost (a restarted web)
        ours = sum(cpu - self.ours0.get(pid, 0.0) for pid, cpu in self._ours().items()) / wall * 100
        self.result = {"system_busy_pct": round(system, 1), "ours_pct": round(ours, 1),
                       "foreign_pct": round(max(0.0, system - ours), 1), "cores": os.cpu_count()}


def wait_quiet(max_seconds: float, threshold: float, log=print) -> dict[str, Any]:
    """Wait (at most ``max_seconds``) until other processes leave the CPUs mostly idle: the
    system is busy less than ``threshold`` cores-% over 3 s."""
    t0 = time.monotonic()
    while True:
        with CpuShare() as share:
            time.sleep(3)
        busy = share.result["system_busy_pct"]
        waited = time.monotonic() - t0
        if busy <= threshold or waited >= max_seconds:
            if waited > 4:
                log(f"[bench] machine {'quiet' if busy <= threshold else 'still busy'} after {waited:.0f} s "
                    f"(busy {busy} %)")
            return {"waited_s": round(waited, 1), "busy_pct": busy, "quiet": busy <= threshold}
        if int(waited) % 30 < 3:
            log(f"[bench] waiting for a quiet machine: CPUs {busy} % busy (other processes)")
